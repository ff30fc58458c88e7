"""The evaluation harness's exception."""

from __future__ import annotations

from pace.errors import PaceError

__all__ = ["EvaluationError"]


class EvaluationError(PaceError, ValueError):
    """Bad evaluation input: an unknown task or judge, a malformed prompt file, ..."""
