"""Errors raised by the concept pipeline; all are ``pace.errors.PaceError`` subclasses."""

from __future__ import annotations

from pace.errors import PaceError

__all__ = [
    "ConceptFormatError",
    "JsonlFormatError",
    "LLMError",
    "LLMResponseError",
    "PipelineError",
    "UnsafePathError",
]


class PipelineError(PaceError):
    """Base of the concept pipeline's errors."""


class ConceptFormatError(PipelineError, ValueError):
    """A concept record, an index file or a stimuli file is not in the expected shape."""


class JsonlFormatError(ConceptFormatError):
    """A JSONL line is invalid; ``line`` is its 1-based number."""

    def __init__(self, message: str, *, line: int, path: str | None = None) -> None:
        where = f"{path}:{line}" if path else f"line {line}"
        super().__init__(f"{where}: {message}")
        self.line = line
        self.path = path


class UnsafePathError(PipelineError, ValueError):
    """A name would resolve to a path outside the folder it must stay in."""


class LLMError(PipelineError):
    """The LLM endpoint could not be reached or kept failing after all retries."""


class LLMResponseError(LLMError):
    """The LLM answered, but not with JSON that matches the expected schema."""
