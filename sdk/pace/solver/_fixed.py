"""A fixed-schedule, host-sync-free elastic-net solve for accelerators.

The general solver (``ElasticNet._solve_general``) decides after every round whether to
go on, which reads a value back from the device: at batch 1 on a GPU each such read
stalls the host until the device has caught up, and a steered decoder layer would make
several. This runs the same method on a fixed schedule instead, a fixed sequence of
kernels with no host reads, which can be captured once as a CUDA graph and replayed:

1. one pass ``r = D y`` (the atoms in their storage dtype) screens the ``screen_size``
   atoms most correlated with ``y`` into the working set ``W``;
2. ``rounds`` times: the problem restricted to ``W`` is solved exactly (``systems``: the
   homotopy, one Triton kernel on CUDA, on ``H = D_W D_W^T + l2 I`` and ``b = D_W y`` in
   fp32 from the gathered rows), the KKT conditions are checked on every atom, and up to
   ``grow`` of the worst violators join ``W``;
3. a final solve on ``W`` and a final KKT check.

Each row reports ``ok``: its last working-set solve was certified and no atom outside
``W`` violates KKT. The KKT check is conservative: a low-precision pass over ``D`` (or a
half-precision Gram) can be off by a known margin, and atoms within that margin of the
threshold count as violators. So ``ok`` certifies the optimum of the whole problem, as
the general solver does; rows that are not ``ok`` (rare: a support that needs more
rounds or capacity than the schedule has) must be solved another way, or left alone.
Their coefficients are zeroed, so a caller that checks later never applies a half-solved
code. Padding slots of the working set repeat a valid index with value 0, as
``SparseCodes`` requires.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

__all__ = ["GRAM_DTYPE", "FixedSchedule", "half_gram"]

# How far ``(G_W^T c)_j`` can be off, per unit of ||c||_1, when the Gram is kept in fp16:
# each entry (at most 1 in magnitude) is rounded once, unit roundoff 2^-11; doubled.
GRAM_DTYPE = torch.float16
_GRAM_ERR = 2.0**-10


Systems = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, float, float, torch.Tensor | None, int],
    tuple[torch.Tensor, torch.Tensor],
]
"""``(h, b, valid, l1, tol, c0, n_fixed) -> (c, ok)``: every row's working-set problem,
exactly; ``c0`` (or None) is the previous round's answer on the first ``n_fixed`` slots,
which a solver may continue from."""


@dataclass(frozen=True)
class FixedSchedule:
    """The fixed-schedule solve bound to one dictionary (see the module docstring).

    Args:
        atoms: (n, d) unit-row atoms in their storage dtype, on the device.
        l1, l2: the elastic net's weights (``alpha * tau``, ``alpha * (1 - tau)``).
        tol: KKT tolerance.
        margin: relative error bound of a product from one pass over ``atoms`` (per unit
            of the norm of the vector multiplied: the residual, or ``y`` for the screening).
        gram: (n, n) Gram of ``atoms`` in ``GRAM_DTYPE``, or None. With it, the KKT check
            of a call with few rows reads ``|W|`` rows of it instead of all of ``D``.
        make_gram: with ``gram`` None, build it (:func:`half_gram`) at the first call that
            would read it, and keep it (n^2 half floats: 200 MB at n = 10,000, so only
            when some call can use it).
        systems: the working-set solver (``Systems``).
        screen_size, grow, rounds: the schedule.
    """

    atoms: torch.Tensor
    l1: float
    l2: float
    tol: float
    margin: float
    gram: torch.Tensor | None
    systems: Systems
    screen_size: int = 16
    grow: int = 8
    rounds: int = 6
    make_gram: bool = False
    _built: dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    @property
    def capacity(self) -> int:
        """Slots in the final working set."""
        n = self.atoms.shape[0]
        return min(n, self.screen_size) + self.rounds * min(n, self.grow)

    @torch.no_grad()
    def __call__(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Solve every row of ``y`` ((b, d) fp32); returns ``(indices, values, ok)``.

        ``indices`` (b, capacity) int64, ``values`` (b, capacity) fp32 (zero off the
        support, and everywhere on rows that are not ``ok``), ``ok`` (b,) bool.
        """
        d_mat = self.atoms
        n = d_mat.shape[0]
        bsz = y.shape[0]
        r = (y.to(d_mat.dtype) @ d_mat.T).float()  # the screening pass
        k0 = min(n, self.screen_size)
        w = torch.topk(r.abs(), k0, dim=1, sorted=False).indices
        valid = torch.ones(bsz, k0, dtype=torch.bool, device=y.device)
        # With few rows, |W| rows of the Gram (gathered and widened to fp32 per round) are
        # cheaper than a pass over all of D; a 32-row prefill already is not.
        gram = self._gram() if 8 * bsz * self.capacity <= d_mat.shape[1] else None
        c: torch.Tensor | None = None
        y_norm = y.norm(dim=1, keepdim=True)
        ok = torch.isfinite(y).all(dim=1)
        for round_ in range(self.rounds + 1):
            dw = d_mat[w].float()  # (b, k, d)
            h = torch.baddbmm(self._ridge(w.shape[1], y.device), dw, dw.transpose(1, 2))
            b = (dw @ y.unsqueeze(-1)).squeeze(-1) * valid
            n_fixed = 0 if c is None else c.shape[1]
            if c is not None:  # the previous answer, zero on the slots that just joined
                c = torch.cat([c, c.new_zeros(bsz, w.shape[1] - n_fixed)], dim=1)
            c, settled = self.systems(h, b, valid, self.l1, self.tol, c, n_fixed)
            if gram is not None:
                rows = gram[w].float()  # (b, k, n)
                g = r - (c.unsqueeze(1) @ rows).squeeze(1)
                slack = self.margin * y_norm + _GRAM_ERR * c.abs().sum(1, keepdim=True)
            else:
                res = y - (c.unsqueeze(1) @ dw).squeeze(1)
                g = (res.to(d_mat.dtype) @ d_mat.T).float()
                slack = self.margin * res.norm(dim=1, keepdim=True)
            in_w = torch.zeros_like(g, dtype=torch.bool).scatter_(1, w, True)
            score = torch.where(in_w, 0.0, g.abs())
            viol = (score > self.l1 + self.tol - slack) & ~in_w
            if round_ == self.rounds:
                ok = ok & settled & ~viol.any(dim=1)
                break
            m = min(n, self.grow)
            top = torch.topk(torch.where(viol, score, -1.0), m, dim=1)
            new_valid = top.values >= 0
            w = torch.cat([w, torch.where(new_valid, top.indices, w[:, :1])], dim=1)
            valid = torch.cat([valid, new_valid], dim=1)
        assert c is not None  # the loop runs at least once
        values = c * (valid & ok.unsqueeze(1))
        return w, values, ok

    def _gram(self) -> torch.Tensor | None:
        if self.gram is not None or not self.make_gram:
            return self.gram
        if "gram" not in self._built:
            self._built["gram"] = half_gram(self.atoms)
        return self._built["gram"]

    def _ridge(self, k: int, device: torch.device) -> torch.Tensor:
        return (self.l2 * torch.eye(k, device=device)).unsqueeze(0)


def half_gram(atoms: torch.Tensor) -> torch.Tensor:
    """The (n, n) Gram ``atoms @ atoms.T`` in ``GRAM_DTYPE`` (accumulated in fp32)."""
    a = atoms if atoms.dtype == torch.float16 else atoms.float()
    return (a @ a.T).to(GRAM_DTYPE)
