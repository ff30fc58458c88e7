"""The concept pipeline: records, LLM stimuli, PaCE-1M/JSONL import, partitioning, extraction.

Submodules are imported lazily by the user (``from pace.pipeline.extract import ...``) so
that importing ``pace.pipeline`` stays cheap; the names below are the stable surface.
"""

from pace.pipeline.errors import (
    ConceptFormatError,
    JsonlFormatError,
    LLMError,
    LLMResponseError,
    PipelineError,
    UnsafePathError,
)
from pace.pipeline.records import ConceptRecord, Stimulus

__all__ = [
    "ConceptFormatError",
    "ConceptRecord",
    "JsonlFormatError",
    "LLMError",
    "LLMResponseError",
    "PipelineError",
    "Stimulus",
    "UnsafePathError",
]
