"""The results of an evaluation: one :class:`MethodResult` per method, and the settings.

Results name their judge: two evaluations are comparable only when ``judge`` is equal.
They round-trip through JSON (:meth:`EvalResults.save`, :meth:`EvalResults.load`).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pace.evaluation.errors import EvaluationError

__all__ = ["EvalResults", "MethodResult", "ResponseRecord"]

SCHEMA = "pace.evaluation/1"


@dataclass(frozen=True)
class ResponseRecord:
    id: str
    prompt: str
    response: str
    tokens: int
    aligned: bool
    score: float
    perplexity: float | None


@dataclass(frozen=True)
class MethodResult:
    """One method's numbers (``knowledge`` is None when it was not measured)."""

    label: str
    kind: str
    params: dict[str, float]
    layers: list[int] | None
    atoms: str
    sink_ratio: float | None
    alignment: float
    """Share of responses the judge found aligned (0..1)."""
    judge_score: float
    """Mean of the judge's raw score (see ``EvalResults.judge_score_name``)."""
    perplexity: float
    distinct2: float
    mean_length: float
    knowledge: float | None
    ms_per_token: float
    edit_norm: float | None
    """Mean ||z' - z|| / ||z|| over edited token activations (None: no edit)."""
    responses: list[ResponseRecord] = field(default_factory=list)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


@dataclass(frozen=True)
class EvalResults:
    task: str
    judge: str
    judge_score_name: str
    model: str
    dictionary: dict[str, Any]
    """content hash, size, undesirable count, layers, transform."""
    decoding: dict[str, Any]
    n_prompts: int
    n_questions: int
    methods: list[MethodResult]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _nan_to_none({"schema": SCHEMA, **asdict(self)})

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write JSON atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.to_dict(), f, indent=1, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResults:
        if data.get("schema") != SCHEMA:
            raise EvaluationError(f"not a {SCHEMA} results file (schema {data.get('schema')!r})")
        try:
            methods = []
            for m in data["methods"]:
                responses = [ResponseRecord(**r) for r in m.get("responses", [])]
                fields = {k: v for k, v in m.items() if k != "responses"}
                for key in ("perplexity", "ms_per_token"):
                    if fields.get(key) is None:
                        fields[key] = math.nan
                methods.append(MethodResult(**fields, responses=responses))
            body = {k: v for k, v in data.items() if k not in ("schema", "methods")}
            return cls(**body, methods=methods)
        except (KeyError, TypeError) as exc:
            raise EvaluationError(f"malformed results: {exc}") from exc

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EvalResults:
        try:
            data = json.loads(Path(path).read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise EvaluationError(f"cannot read results {path}: {exc}") from exc
        return cls.from_dict(data)

    def method(self, label: str) -> MethodResult:
        for m in self.methods:
            if m.label == label:
                return m
        raise KeyError(label)
