"""Generate stimuli for concepts with an LLM, PaCE style (short second-person scenarios).

Many concepts go into one request. Every answer is validated; what is malformed or
off-topic is listed in the report with a reason and never stored. Accepted results are
cached on disk by (concept, description, prompt, model, n), so a rerun costs nothing.

Off-topic check (cheap, deterministic, documented): an answer entry is matched to a
requested concept by the ``"concept"`` name the LLM echoes back (exact, then
case-insensitive); an entry naming a concept that was not asked is off-topic. A matched
entry is also off-topic when *none* of its stimuli mentions the concept: for every word of
the name with three or more letters we strip a common English suffix ("-ness", "-ity",
"-tion", "-ing", "-red", "-s", ...) and look for a word starting with that stem (so
"hatred" matches "hate", "kindness" matches "kind"). Names with no such word (numbers,
symbols) skip this test. Pass ``relevance_check=False`` to turn it off.

Example::

    with LLMClient(LLMConfig.from_env()) as llm:
        result = generate_stimuli(["hatred", "kindness"], llm, n=30)
    result.records[0].texts, result.report.failures
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import platformdirs

from pace.pipeline._cache import JsonCache, content_key
from pace.pipeline._parallel import map_ordered
from pace.pipeline.errors import LLMError
from pace.pipeline.llm import LLMClient
from pace.pipeline.records import ConceptRecord, Stimulus, normalize_text

__all__ = [
    "PROMPT_VERSION",
    "GenerationIssue",
    "GenerationReport",
    "GenerationResult",
    "build_prompt",
    "generate_stimuli",
    "mentions_concept",
]

PROMPT_VERSION = "pace-stimuli/1"
SYSTEM_PROMPT = (
    "You write stimuli for concept-based analysis of language models. "
    "You answer with one JSON object and nothing else."
)
USER_TEMPLATE = """\
For each concept below, write {n} short, varied texts (one or two sentences, at most 40 \
words each) in which the concept is clearly present. Write them as second-person \
scenarios, like: "You accidentally scratch someone's car while parking." Vary the \
settings, people and wording. Each text must be about its own concept and should use the \
concept's word (or a form of it) where natural. Do not number the texts.

Concepts:
{concepts}

Answer with one JSON object of this shape, one entry per concept, in the same order, \
copying each concept name exactly:
{{"concepts": [{{"concept": "<concept name>", "stimuli": ["<text>", ...]}}]}}"""

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["concepts"],
    "properties": {"concepts": {"type": "array", "items": {"type": "object"}}},
}
_SUFFIXES = (
    "fulness", "iveness", "ousness", "ness", "ment", "ation", "ition", "tion", "sion",
    "ity", "ful", "ous", "ive", "ing", "red", "ism", "ist", "ed", "er", "ly", "es", "s",
    "y", "e",
)  # fmt: skip
_WORD = re.compile(r"[^\W\d_]{3,}")


def _stem(word: str) -> str:
    w = word.casefold()
    for suffix in _SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)]
    return w


def mentions_concept(name: str, texts: Sequence[str]) -> bool | None:
    """Whether any text mentions a stem of a word of ``name``; None if untestable."""
    stems = {_stem(w) for w in _WORD.findall(name)}
    if not stems:
        return None
    needle = name.casefold()
    for text in texts:
        folded = text.casefold()
        if needle in folded:
            return True
        words = _WORD.findall(folded)
        if any(w.startswith(s) for s in stems for w in words):
            return True
    return False


def build_prompt(concepts: Sequence[ConceptRecord], n: int) -> list[dict[str, str]]:
    """The chat messages asking for ``n`` stimuli for each of ``concepts``."""
    lines = []
    for c in concepts:
        line = f"- {json.dumps(c.name, ensure_ascii=False)}"
        if c.description:
            line += f": {c.description}"
        lines.append(line)
    user = USER_TEMPLATE.format(n=n, concepts="\n".join(lines))
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


_PROMPT_SHA = hashlib.sha256((PROMPT_VERSION + SYSTEM_PROMPT + USER_TEMPLATE).encode()).hexdigest()


@dataclass(frozen=True)
class GenerationIssue:
    """Something rejected: ``kind`` is one of llm_error, malformed, off_topic,
    unexpected_concept, too_few, duplicate_entry; ``detail`` says why."""

    concept: str
    kind: str
    detail: str


@dataclass
class GenerationReport:
    """What happened: every rejection (``issues``) and the concepts left without stimuli."""

    requested: int = 0
    generated: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failures: list[GenerationIssue] = field(default_factory=list)
    """One entry per concept that got no stimuli, with the last reason."""
    issues: list[GenerationIssue] = field(default_factory=list)
    """Every rejected answer entry, including those later fixed by a retry."""
    dropped_stimuli: int = 0
    """Stimuli dropped as duplicates, empty or too long (not a failure by themselves)."""
    calls: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class GenerationResult:
    records: list[ConceptRecord]
    """Every requested concept, in input order; failed ones keep only their old stimuli."""
    report: GenerationReport


def _as_record(c: str | ConceptRecord) -> ConceptRecord:
    return c if isinstance(c, ConceptRecord) else ConceptRecord(c)


def generate_stimuli(
    concepts: Iterable[str | ConceptRecord],
    llm: LLMClient,
    *,
    n: int = 30,
    concepts_per_call: int = 10,
    min_stimuli: int | None = None,
    max_chars: int = 400,
    relevance_check: bool = True,
    max_rounds: int = 2,
    cache_dir: str | Path | None = None,
    max_workers: int = 1,
    on_progress: Callable[[int], None] | None = None,
) -> GenerationResult:
    """Generate ``n`` stimuli per concept; see the module docstring for the checks.

    ``min_stimuli`` (default ``ceil(n / 2)``) is how many valid, distinct stimuli an entry
    needs to be accepted. Concepts whose answer was rejected are asked again, in new
    batches, for up to ``max_rounds`` rounds (on top of the client's own retries).
    ``max_workers`` > 1 sends that many requests at once (local servers like vLLM batch
    them). ``on_progress(k)`` is called with the number of concepts finished after each
    answer (and once for the cache hits).
    """
    if n < 1 or concepts_per_call < 1 or max_rounds < 1:
        raise ValueError("n, concepts_per_call and max_rounds must be >= 1")
    need = math.ceil(n / 2) if min_stimuli is None else min_stimuli
    if not 1 <= need <= n:
        raise ValueError(f"min_stimuli must be in [1, n={n}], got {need}")
    cache = JsonCache(
        Path(cache_dir) if cache_dir else Path(platformdirs.user_cache_dir("pace")) / "stimuli"
    )
    records: dict[str, ConceptRecord] = {}
    for c in concepts:
        rec = _as_record(c)
        if rec.name in records:
            continue
        records[rec.name] = rec
    report = GenerationReport(requested=len(records))
    model = llm.config.model

    def key_of(rec: ConceptRecord) -> str:
        return content_key(
            {"concept": rec.name, "description": rec.description, "prompt": _PROMPT_SHA,
             "model": model, "n": n}
        )  # fmt: skip

    pending: list[ConceptRecord] = []
    for rec in records.values():
        hit = cache.get(key_of(rec))
        if isinstance(hit, dict) and isinstance(hit.get("stimuli"), list):
            stimuli = [Stimulus.from_obj(s, default_source="generated") for s in hit["stimuli"]]
            records[rec.name] = rec.with_stimuli(stimuli)
            report.cached.append(rec.name)
        else:
            pending.append(rec)
    if on_progress is not None and report.cached:
        on_progress(len(report.cached))

    last_reason: dict[str, GenerationIssue] = {}
    for _ in range(max_rounds):
        if not pending:
            break
        still: list[ConceptRecord] = []
        batches = [
            pending[i : i + concepts_per_call] for i in range(0, len(pending), concepts_per_call)
        ]

        def ask(batch: Sequence[ConceptRecord]) -> _Answer:
            return _ask(llm, batch, n, need, max_chars, relevance_check)

        for batch, (accepted, issues, dropped) in zip(
            batches, map_ordered(ask, batches, max_workers), strict=True
        ):
            report.calls += 1
            report.dropped_stimuli += dropped
            for issue in issues:
                report.issues.append(issue)
                last_reason[issue.concept] = issue
            for rec in batch:
                texts = accepted.get(rec.name)
                if texts is None:
                    still.append(rec)
                    continue
                prov = {
                    "generator": "llm",
                    "prompt_version": PROMPT_VERSION,
                    "prompt_sha256": _PROMPT_SHA,
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    **llm.config.provenance(),
                }
                stimuli = [Stimulus(t, "generated", prov) for t in texts]
                cache.put(key_of(rec), {"concept": rec.name, "model": model,
                                        "stimuli": [s.to_dict() for s in stimuli]})  # fmt: skip
                records[rec.name] = rec.with_stimuli(stimuli)
                report.generated.append(rec.name)
            if on_progress is not None:
                on_progress(sum(1 for rec in batch if rec.name in accepted))
        pending = still
    for rec in pending:
        report.failures.append(
            last_reason.get(rec.name, GenerationIssue(rec.name, "missing", "no answer entry"))
        )
    return GenerationResult(list(records.values()), report)


_Answer = tuple[dict[str, list[str]], list[GenerationIssue], int]


def _ask(
    llm: LLMClient,
    batch: Sequence[ConceptRecord],
    n: int,
    need: int,
    max_chars: int,
    relevance_check: bool,
) -> _Answer:
    """One request for ``batch``: accepted texts per name, the issues, stimuli dropped."""
    try:
        answer = llm.chat_json(build_prompt(batch, n), schema=ANSWER_SCHEMA)
    except LLMError as exc:
        return {}, [GenerationIssue(r.name, "llm_error", str(exc)) for r in batch], 0
    dropped = 0
    wanted = {r.name: r for r in batch}
    folded: dict[str, list[str]] = {}
    for wanted_name in wanted:
        folded.setdefault(wanted_name.casefold(), []).append(wanted_name)
    accepted: dict[str, list[str]] = {}
    issues: list[GenerationIssue] = []
    seen: set[str] = set()
    for i, entry in enumerate(answer.data["concepts"]):
        echo = entry.get("concept")
        if not isinstance(echo, str):
            issues.append(GenerationIssue(f"<entry {i}>", "malformed", "no 'concept' string"))
            continue
        name = echo if echo in wanted else None
        if name is None and len(folded.get(echo.casefold(), [])) == 1:
            name = folded[echo.casefold()][0]
        if name is None:
            issues.append(
                GenerationIssue(echo, "unexpected_concept", "the answer names a concept not asked")
            )
            continue
        if name in seen:
            issues.append(GenerationIssue(name, "duplicate_entry", f"entry {i} repeats it"))
            continue
        seen.add(name)
        raw = entry.get("stimuli")
        if not isinstance(raw, list):
            issues.append(GenerationIssue(name, "malformed", "'stimuli' is not a list"))
            continue
        existing = {normalize_text(t) for t in wanted[name].texts}
        texts: list[str] = []
        for item in raw:
            text = " ".join(item.split()) if isinstance(item, str) else ""
            key = normalize_text(text)
            if not text or len(text) > max_chars or key in existing:
                dropped += 1
                continue
            existing.add(key)
            texts.append(text)
        texts = texts[:n]
        if len(texts) < need:
            issues.append(
                GenerationIssue(
                    name, "too_few", f"{len(texts)} valid distinct stimuli, {need} needed"
                )
            )
            continue
        if relevance_check and mentions_concept(name, texts) is False:
            issues.append(
                GenerationIssue(name, "off_topic", "no stimulus mentions the concept or its stem")
            )
            continue
        accepted[name] = texts
    for wanted_name in wanted:
        if wanted_name not in accepted and wanted_name not in seen:
            issues.append(GenerationIssue(wanted_name, "missing", "the answer has no entry for it"))
    return accepted, issues, dropped
