"""Optimality measures of the elastic net: its objective and its KKT violation.

Both are computed in float64 on whatever device the inputs are on; they are meant for
tests and diagnostics, not for the hot path (which checks KKT inside ``ElasticNet``).
"""

from __future__ import annotations

import torch

__all__ = ["elastic_net_objective", "kkt_violation", "unit_rows"]


def unit_rows(atoms: torch.Tensor) -> torch.Tensor:
    """Scale each row to unit Euclidean norm, in float32 arithmetic, keeping the dtype."""
    norms = atoms.float().norm(dim=1, keepdim=True)
    return (atoms.float() / norms).to(atoms.dtype)


def elastic_net_objective(
    atoms: torch.Tensor, y: torch.Tensor, c: torch.Tensor, *, alpha: float, tau: float
) -> torch.Tensor:
    """Per-row ``1/2||y - D^T c||^2 + alpha (tau ||c||_1 + (1 - tau)/2 ||c||^2)`` in float64.

    ``atoms`` is used as given (pass unit rows, as ``ElasticNet`` uses them).
    """
    d, yy, cc = atoms.double(), _rows(y).double(), _rows(c).double()
    res = yy - cc @ d
    return 0.5 * res.square().sum(-1) + alpha * (
        tau * cc.abs().sum(-1) + 0.5 * (1.0 - tau) * cc.square().sum(-1)
    )


def kkt_violation(
    atoms: torch.Tensor, y: torch.Tensor, c: torch.Tensor, *, alpha: float, tau: float
) -> torch.Tensor:
    """Per-row largest violation of the elastic net's optimality conditions, in float64.

    With ``g = D (y - D^T c) - alpha (1 - tau) c``: on the support ``g_j`` must equal
    ``alpha tau sign(c_j)``; off it ``|g_j| <= alpha tau``. Returns the largest deviation.
    """
    d, yy, cc = atoms.double(), _rows(y).double(), _rows(c).double()
    l1, l2 = alpha * tau, alpha * (1.0 - tau)
    g = (yy - cc @ d) @ d.T - l2 * cc
    on = cc != 0
    err = torch.where(on, (g - l1 * torch.sign(cc)).abs(), (g.abs() - l1).clamp_min(0.0))
    return err.amax(-1)


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(0) if x.ndim == 1 else x
