"""The concept pipeline: records, LLM stimuli, PaCE-1M/JSONL import, partitioning, extraction.

Modules, one concept each:

- ``records``: ``ConceptRecord`` and ``Stimulus`` (with source and provenance).
- ``llm``: ``LLMConfig`` (env: ``PACE_LLM_BASE_URL``/``OPENAI_BASE_URL``,
  ``PACE_LLM_API_KEY``/``OPENAI_API_KEY``, ``PACE_LLM_MODEL``) and ``LLMClient``
  (validated JSON answers, retries with backoff).
- ``stimuli``: ``generate_stimuli`` (batched, cached, off-topic/malformed report).
- ``pace1m``: ``import_pace1m`` / ``iter_pace1m`` (the authors' format, traversal-safe).
- ``jsonl``: ``read_jsonl`` / ``iter_jsonl`` / ``write_jsonl``.
- ``partitioner``: ``partition_with_llm``; ``offline``: ``partition_by_seeds`` with
  ``MiniLMEmbedder`` or ``AtomEmbedder``; ``partition``: the shared ``Partition`` result.
- ``extract``: ``Extractor`` and ``Recipe`` (streamed, padding-aware atoms).

The heavy names (torch, transformers, openai) load on first access, so importing
``pace.pipeline`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from pace.pipeline.errors import (
    ConceptFormatError,
    JsonlFormatError,
    LLMError,
    LLMResponseError,
    PipelineError,
    UnsafePathError,
)
from pace.pipeline.records import ConceptRecord, Stimulus

_LAZY = {
    "AtomEmbedder": "offline",
    "ConceptLabel": "partition",
    "ExtractedChunk": "extract",
    "ExtractionSummary": "extract",
    "Extractor": "extract",
    "GenerationReport": "stimuli",
    "LLMClient": "llm",
    "LLMConfig": "llm",
    "MiniLMEmbedder": "offline",
    "Partition": "partition",
    "Recipe": "extract",
    "generate_stimuli": "stimuli",
    "import_pace1m": "pace1m",
    "iter_jsonl": "jsonl",
    "iter_pace1m": "pace1m",
    "partition_by_seeds": "offline",
    "partition_with_llm": "partitioner",
    "read_jsonl": "jsonl",
    "write_jsonl": "jsonl",
}

__all__ = [
    "ConceptFormatError",
    "ConceptRecord",
    "JsonlFormatError",
    "LLMError",
    "LLMResponseError",
    "PipelineError",
    "Stimulus",
    "UnsafePathError",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pace.pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pace.pipeline.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
