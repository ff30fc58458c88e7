"""Leave attention-sink tokens unedited: :class:`pace.steering.SinkGuard` for the harness.

The guard lives with the steering code (``steer(..., sink_ratio=10.0)`` applies it); this
subclass only reports a bad ratio as the harness's :class:`EvaluationError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pace.evaluation.errors import EvaluationError
from pace.steering.guards import SinkGuard as _SteeringSinkGuard

__all__ = ["SinkGuard"]


@dataclass(frozen=True)
class SinkGuard(_SteeringSinkGuard):
    """Wrap an edit method; rows with norm > ``ratio`` x the median row norm stay as they are."""

    def __post_init__(self) -> None:
        if not self.ratio > 1:
            raise EvaluationError(f"the sink ratio must be > 1, got {self.ratio}")
