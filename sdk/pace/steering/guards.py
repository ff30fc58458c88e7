"""Leave attention-sink tokens unedited: a wrapper around any steering edit method.

Many decoder models park a *massive activation* on one or two tokens (an attention sink;
in SmolLM2-135M the first token's residual stream has norm ~25,000 at layer 16, against
~170 for ordinary tokens). Concept atoms are read from ordinary tokens, so a sparse code
of a sink is meaningless, and every method's removal scales with ``||z||``: editing the
sink by even a few percent shifts it by more than a whole ordinary activation, and the
attention of every later token with it. :class:`SinkGuard` passes rows whose norm is above
``ratio`` times the median norm of the rows of the same call through untouched and edits
the others with the wrapped method. Decode steps (one row per sequence) are edited as
usual: sinks appear only in the prefill, where the median is over the whole prompt.

Example::

    with steer(model, dictionary, method=SinkGuard(PaCE())):  # or sink_ratio=10.0
        ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from pace.steering.errors import SteeringError

__all__ = ["SinkGuard"]


@dataclass(frozen=True)
class SinkGuard:
    """Wrap an edit method; rows with norm > ``ratio`` x the median row norm stay as they are."""

    inner: Any
    ratio: float = 10.0

    def __post_init__(self) -> None:
        if not self.ratio > 1:
            raise SteeringError(f"the sink ratio must be > 1, got {self.ratio}")

    def prepare(self, atoms: Tensor, undesirable: Tensor) -> Any:
        edit = self.inner.prepare(atoms, undesirable)
        ratio = float(self.ratio)

        def guarded(z: Tensor) -> tuple[Tensor, Tensor | None]:
            if z.shape[0] < 3:
                return edit(z)
            norms = z.float().norm(dim=1)
            ordinary = norms <= ratio * norms.median()
            if bool(ordinary.all()):
                return edit(z)
            idx = ordinary.nonzero().squeeze(1)
            rows = z.index_select(0, idx)
            new_rows, coef = edit(rows)
            out = z
            if new_rows is not rows:
                out = z.clone()
                out.index_copy_(0, idx, new_rows.to(z.dtype))
            full = None
            if coef is not None:
                full = coef.new_zeros(z.shape[0], coef.shape[1]).index_copy_(0, idx, coef)
            return out, full

        # One token per call (decode steps) is never guarded: the wrapped edit's shortcut
        # for it (see hooks._apply) applies as it is.
        if hasattr(edit, "edit_token"):
            guarded.edit_token = edit.edit_token  # type: ignore[attr-defined]
        if hasattr(edit, "uncertified_rows"):  # the wrapped edit's count, for the handle
            guarded.uncertified_rows = edit.uncertified_rows  # type: ignore[attr-defined]
        return guarded
