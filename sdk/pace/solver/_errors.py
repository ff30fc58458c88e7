"""The solver's own error, part of the SDK's ``PaceError`` tree."""

from __future__ import annotations

from pace.errors import PaceError

__all__ = ["ConvergenceError"]


class ConvergenceError(PaceError, RuntimeError):
    """The solver could not certify the optimum within its iteration limits."""
