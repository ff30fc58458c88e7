"""The steering error type (a ``PaceError``)."""

from __future__ import annotations

from pace.errors import PaceError

__all__ = ["SteeringError"]


class SteeringError(PaceError, ValueError):
    """Steering cannot be attached as asked: unknown layer, size mismatch, bad argument."""
