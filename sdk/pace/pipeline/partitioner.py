"""The LLM concept partitioner: label concepts benign or undesirable for a task.

Many concepts go into each prompt; each returned item is validated against
``LABEL_SCHEMA``. Concepts whose label is missing or invalid are asked again in later,
smaller batches; those still unlabelled after ``max_rounds`` are listed in
``Partition.unlabelled``, never dropped. The provenance names the endpoint's host, the
model, the prompt's hash, the temperature and the time.

Example::

    with LLMClient(LLMConfig.from_env()) as llm:
        part = partition_with_llm(names, "Detoxification: no insults, hate or threats.", llm)
    part.undesirable, part.unlabelled
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pace.pipeline._parallel import map_ordered
from pace.pipeline._schema import schema_errors
from pace.pipeline.errors import LLMError
from pace.pipeline.llm import JsonAnswer, LLMClient
from pace.pipeline.partition import ConceptLabel, Partition
from pace.pipeline.records import ConceptRecord

__all__ = ["LABEL_SCHEMA", "PROMPT_VERSION", "build_prompt", "partition_with_llm"]

PROMPT_VERSION = "pace-partition/1"
SYSTEM_PROMPT = (
    "You are the concept partitioner of PaCE, a method that aligns a language model by "
    "removing undesirable concepts from its activations. You answer with one JSON object "
    "and nothing else."
)
USER_TEMPLATE = """\
Alignment task: {task}

For each concept below, decide whether its presence in the model's answer is \
"undesirable" for this task (it should be removed from the answer) or "benign" (it is \
harmless or needed for fluent, helpful answers). Most everyday concepts are benign. Give a \
score from 0 (clearly benign) to 1 (clearly undesirable) and a one-sentence rationale.

Concepts:
{concepts}

Answer with one JSON object of this shape, one entry per concept, copying each concept \
name exactly:
{{"labels": [{{"concept": "<concept name>", "label": "benign" or "undesirable", \
"score": <number 0..1>, "rationale": "<one sentence>"}}]}}"""

LABEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["concept", "label", "score", "rationale"],
    "properties": {
        "concept": {"type": "string"},
        "label": {"type": "string", "enum": ["benign", "undesirable"]},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "rationale": {"type": "string", "maxLength": 2000},
    },
}
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["labels"],
    "properties": {"labels": {"type": "array", "items": {"type": "object"}}},
}
_PROMPT_SHA = hashlib.sha256((PROMPT_VERSION + SYSTEM_PROMPT + USER_TEMPLATE).encode()).hexdigest()


def build_prompt(task: str, concepts: Sequence[ConceptRecord]) -> list[dict[str, str]]:
    lines = []
    for c in concepts:
        line = f"- {json.dumps(c.name, ensure_ascii=False)}"
        if c.description:
            line += f": {c.description}"
        lines.append(line)
    user = USER_TEMPLATE.format(task=task.strip(), concepts="\n".join(lines))
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def partition_with_llm(
    concepts: Sequence[str | ConceptRecord],
    task: str,
    llm: LLMClient,
    *,
    batch_size: int = 40,
    max_rounds: int = 3,
    temperature: float = 0.0,
    max_workers: int = 1,
    on_progress: Callable[[int], None] | None = None,
) -> Partition:
    """Label every concept for ``task``; see the module docstring.

    Each retry round halves the batch size (a long list is the usual reason an LLM skips
    items). ``llm``'s own retries cover transport errors and invalid JSON. ``max_workers``
    > 1 sends that many requests at once; ``on_progress(k)`` reports newly labelled ones.
    """
    if not task.strip():
        raise ValueError("the task description is empty")
    if batch_size < 1 or max_rounds < 1:
        raise ValueError("batch_size and max_rounds must be >= 1")
    records: dict[str, ConceptRecord] = {}
    for c in concepts:
        rec = c if isinstance(c, ConceptRecord) else ConceptRecord(c)
        records.setdefault(rec.name, rec)
    labeler = llm.config.model
    got: dict[str, ConceptLabel] = {}
    issues: list[str] = []
    pending = list(records.values())
    size, requests = batch_size, 0
    started = datetime.now(UTC)
    for _ in range(max_rounds):
        if not pending:
            break
        batches = [pending[i : i + size] for i in range(0, len(pending), size)]

        def ask(batch: Sequence[ConceptRecord]) -> JsonAnswer | LLMError:
            try:
                return llm.chat_json(
                    build_prompt(task, batch), schema=ANSWER_SCHEMA, temperature=temperature
                )
            except LLMError as exc:
                return exc

        for batch, answer in zip(batches, map_ordered(ask, batches, max_workers), strict=True):
            requests += 1
            if isinstance(answer, LLMError):
                issues.append(f"batch of {len(batch)} ({batch[0].name!r}...): {answer}")
                continue
            wanted = {r.name for r in batch}
            before = len(got)
            for i, item in enumerate(answer.data["labels"]):
                errs = schema_errors(item, LABEL_SCHEMA, f"labels[{i}]")
                if errs:
                    issues.append("; ".join(errs))
                    continue
                name = item["concept"]
                if name not in wanted:
                    issues.append(f"labels[{i}]: concept {name!r} was not asked")
                    continue
                if name in got:
                    issues.append(f"labels[{i}]: concept {name!r} labelled twice; first kept")
                    continue
                got[name] = ConceptLabel(
                    name, item["label"], float(item["score"]),
                    item["rationale"].strip(), "llm", labeler,
                )  # fmt: skip
            if on_progress is not None:
                on_progress(len(got) - before)
        pending = [r for r in pending if r.name not in got]
        size = max(1, size // 2)
    provenance = {
        "method": "llm",
        **llm.config.provenance(),
        "temperature": temperature,
        "prompt_version": PROMPT_VERSION,
        "prompt_sha256": _PROMPT_SHA,
        "task": task,
        "batch_size": batch_size,
        "requests": requests,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return Partition(
        task=task,
        labels=[got[n] for n in records if n in got],
        unlabelled=[r.name for r in pending],
        issues=issues,
        provenance=provenance,
    )
