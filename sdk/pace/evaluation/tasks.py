"""The shipped alignment tasks, their prompt sets, partitions and the knowledge set.

A task names its prompt set (``pace/data/eval/<task>_prompts.jsonl``), its starter
partition (``pace/data/partitions/<task>.json``, whose description is also the system
prompt of the *prompting* baseline) and its default offline judge.

Example::

    task = get_task("sentiment")
    prompts = load_prompts(task, limit=10)
    labels = load_partition_labels(task)        # {concept name: 1 undesirable / 0 benign}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pace.evaluation.errors import EvaluationError

__all__ = [
    "TASKS",
    "MCQuestion",
    "Prompt",
    "Task",
    "get_task",
    "load_knowledge",
    "load_partition_labels",
    "load_prompts",
]


@dataclass(frozen=True)
class Task:
    """One alignment task as shipped with the SDK."""

    name: str
    prompts_file: str
    """File name under ``pace.data.eval``."""
    default_judge: str
    """Name understood by :func:`pace.evaluation.judges.make_judge`."""

    @property
    def description(self) -> str:
        """The task statement, from its starter partition."""
        return str(_partition(self.name)["task"]["description"])

    @property
    def system_prompt(self) -> str:
        """The *prompting* baseline's system prompt: the task, stated."""
        return f"You are a helpful assistant. {self.description}"


TASKS: dict[str, Task] = {
    "sentiment": Task("sentiment", "sentiment_prompts.jsonl", "vader"),
    "detoxification": Task("detoxification", "detox_prompts.jsonl", "toxicity"),
    "faithfulness": Task("faithfulness", "faithfulness_prompts.jsonl", "llm"),
}


@dataclass(frozen=True)
class Prompt:
    id: str
    prompt: str


@dataclass(frozen=True)
class MCQuestion:
    """A multiple-choice question; ``answer`` indexes ``choices``."""

    id: str
    question: str
    choices: tuple[str, ...]
    answer: int


def get_task(name: str) -> Task:
    """The shipped task called ``name``; raises :class:`EvaluationError` if unknown."""
    try:
        return TASKS[name]
    except KeyError:
        raise EvaluationError(f"unknown task {name!r}; choose one of {sorted(TASKS)}") from None


def _partition(task: str) -> dict[str, Any]:
    text = resources.files("pace.data.partitions").joinpath(f"{task}.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def load_partition_labels(task: Task | str) -> dict[str, int]:
    """``{concept name: 1 (undesirable) or 0 (benign)}`` from the task's starter partition."""
    name = task.name if isinstance(task, Task) else get_task(task).name
    labels = _partition(name)["labels"]
    return {str(x["concept"]): int(x["label"] == "undesirable") for x in labels}


def _read_lines(source: str | os.PathLike[str] | None, default: str) -> tuple[list[str], str]:
    if source is None:
        text = resources.files("pace.data.eval").joinpath(default).read_text("utf-8")
        return text.splitlines(), default
    path = Path(source)
    try:
        return path.read_text("utf-8").splitlines(), str(path)
    except OSError as exc:
        raise EvaluationError(f"cannot read {path}: {exc}") from exc


def _objects(lines: list[str], where: str) -> list[tuple[int, dict[str, Any]]]:
    out: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvaluationError(f"{where}:{number}: invalid JSON: {exc.msg}") from exc
        if not isinstance(obj, dict):
            raise EvaluationError(f"{where}:{number}: expected a JSON object")
        out.append((number, obj))
    return out


def _limit(items: list[Any], limit: int | None, what: str) -> list[Any]:
    if limit is not None:
        if limit < 1:
            raise EvaluationError(f"{what} limit must be >= 1, got {limit}")
        items = items[:limit]
    if not items:
        raise EvaluationError(f"no {what} to evaluate")
    return items


def load_prompts(
    task: Task | str | None = None,
    *,
    path: str | os.PathLike[str] | None = None,
    limit: int | None = None,
) -> list[Prompt]:
    """A task's shipped prompts, or ``{"id", "prompt"}`` lines from ``path``; first ``limit``."""
    if path is None and task is None:
        raise EvaluationError("give a task or a prompt file")
    default = (task if isinstance(task, Task) else get_task(str(task))).prompts_file if task else ""
    lines, where = _read_lines(path, default)
    prompts: list[Prompt] = []
    for number, obj in _objects(lines, where):
        text = obj.get("prompt")
        if not isinstance(text, str) or not text.strip():
            raise EvaluationError(f"{where}:{number}: 'prompt' must be a non-empty string")
        prompts.append(Prompt(str(obj.get("id", f"{number}")), text))
    return _limit(prompts, limit, "prompts")


def load_knowledge(
    path: str | os.PathLike[str] | None = None, *, limit: int | None = None
) -> list[MCQuestion]:
    """The shipped multiple-choice set (or ``path``'s), first ``limit`` questions."""
    lines, where = _read_lines(path, "knowledge_mc.jsonl")
    out: list[MCQuestion] = []
    for number, obj in _objects(lines, where):
        q, choices, answer = obj.get("question"), obj.get("choices"), obj.get("answer")
        if not isinstance(q, str) or not q.strip():
            raise EvaluationError(f"{where}:{number}: 'question' must be a non-empty string")
        if (
            not isinstance(choices, list)
            or len(choices) < 2
            or not all(isinstance(c, str) and c.strip() for c in choices)
        ):
            raise EvaluationError(f"{where}:{number}: 'choices' must be >= 2 non-empty strings")
        if (
            not isinstance(answer, int)
            or isinstance(answer, bool)
            or not 0 <= answer < len(choices)
        ):
            raise EvaluationError(
                f"{where}:{number}: 'answer' must be an index into choices (0..{len(choices) - 1})"
            )
        out.append(MCQuestion(str(obj.get("id", number)), q, tuple(choices), answer))
    return _limit(out, limit, "questions")
