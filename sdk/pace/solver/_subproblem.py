"""Exact elastic-net solves on small batched working sets (the k x k problems).

Each row ``i`` of a batch solves, over the valid slots of its working set,

    min_c 1/2 c^T H_i c - b_i^T c + l1 * ||c||_1,   H_i = G_i + l2 * I,

with a primal-dual active-set (PDAS) method: guess the support and signs from the
proximal fixed point, solve the linear system on that support, repeat. A step that
reproduces the previous signs is a fixed point and hence the exact optimum (see
``pdas``). PDAS converges in a handful of steps from a good start but can cycle, so
rows that do not settle fall back to a proximal-gradient run (which always converges)
followed by PDAS again, warm-started near the answer.
"""

from __future__ import annotations

import torch

from pace.solver._homotopy import homotopy

__all__ = ["pdas", "solve_working_set"]


def _masked_solve(h: torch.Tensor, rhs: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Solve ``H_AA x_A = rhs_A`` per row with ``x = 0`` off ``A``; all rows at once."""
    pair = active.unsqueeze(-1) & active.unsqueeze(-2)
    m = torch.where(pair, h, torch.zeros((), dtype=h.dtype, device=h.device))
    # Inactive slots get an identity row/column and a zero right-hand side: x = 0 there.
    m = m + torch.diag_embed((~active).to(h.dtype))
    x, info = torch.linalg.solve_ex(m, (rhs * active).unsqueeze(-1))
    x = x.squeeze(-1)
    if h.device.type == "cpu" and bool((info != 0).any()):
        # Singular support system (only possible with l2 = 0, i.e. the lasso, and dependent
        # atoms): any solution of the normal equations is optimal; take the least-norm one.
        bad = info != 0
        x[bad] = (torch.linalg.pinv(m[bad]) @ (rhs * active)[bad].unsqueeze(-1)).squeeze(-1)
    return x * active


def pdas(
    h: torch.Tensor,
    b: torch.Tensor,
    l1: float,
    c: torch.Tensor,
    valid: torch.Tensor,
    max_iter: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Primal-dual active-set steps from ``c``; returns ``(c, converged)`` per row.

    With ``d = b - H c`` and ``h_jj`` the diagonal, the proximal fixed point is
    ``c_j = S(c_j + d_j / h_jj, l1 / h_jj)``. One step takes the signs ``s`` of that
    prox and solves ``H_AA c_A = b_A - l1 s_A`` on ``A = supp(s)``. If the next step
    yields the same ``s``, then ``sign(c_A) = s_A`` and ``|d_j| <= l1`` off ``A``: the KKT
    conditions hold exactly (up to the linear solve's rounding).
    """
    diag = h.diagonal(dim1=-2, dim2=-1)
    thresh = l1 / diag
    s_prev: torch.Tensor | None = None
    converged = torch.zeros(b.shape[0], dtype=torch.bool, device=b.device)
    for _ in range(max_iter + 1):
        d = b - (h @ c.unsqueeze(-1)).squeeze(-1)
        u = c + d / diag
        active = (u.abs() > thresh) & valid
        s = torch.where(active, torch.sign(u), torch.zeros((), dtype=u.dtype, device=u.device))
        if s_prev is not None:
            converged = (s == s_prev).all(dim=-1)
            if bool(converged.all()):
                break
        c = _masked_solve(h, b - l1 * s, active)
        s_prev = s
    return c, converged


def _prox_gradient(
    h: torch.Tensor,
    b: torch.Tensor,
    l1: float,
    c: torch.Tensor,
    valid: torch.Tensor,
    max_iter: int,
    tol: float,
) -> torch.Tensor:
    """FISTA with adaptive restart on the small problem, until its KKT gap is below ``tol``."""
    lip = torch.linalg.matrix_norm(h, ord=2).clamp_min(1e-12).unsqueeze(-1)
    x = c.clone()
    z = c.clone()
    t = torch.ones_like(lip)
    zero = torch.zeros((), dtype=c.dtype, device=c.device)
    for it in range(max_iter):
        grad = (h @ z.unsqueeze(-1)).squeeze(-1) - b
        v = z - grad / lip
        x_new = torch.sign(v) * (v.abs() - l1 / lip).clamp_min(0.0)
        x_new = torch.where(valid, x_new, zero)
        t_new = (1.0 + (1.0 + 4.0 * t * t).sqrt()) / 2.0
        # Restart the momentum of a row when it points uphill (O'Donoghue & Candes).
        uphill = ((z - x_new) * (x_new - x)).sum(-1, keepdim=True) > 0
        z = torch.where(uphill, x_new, x_new + (t - 1.0) / t_new * (x_new - x))
        x, t = x_new, torch.where(uphill, torch.ones_like(t_new), t_new)
        if it % 100 == 99 and float(_gap(h, b, l1, x, valid).max()) <= tol:
            break
    return x


def _gap(
    h: torch.Tensor, b: torch.Tensor, l1: float, c: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """Largest KKT violation of the small problem, per row."""
    d = b - (h @ c.unsqueeze(-1)).squeeze(-1)
    on = c != 0
    err = torch.where(on, (d - l1 * torch.sign(c)).abs(), (d.abs() - l1).clamp_min(0.0))
    return torch.where(valid, err, torch.zeros((), dtype=err.dtype, device=err.device)).amax(-1)


def solve_working_set(
    h: torch.Tensor,
    b: torch.Tensor,
    l1: float,
    c0: torch.Tensor,
    valid: torch.Tensor,
    *,
    max_pdas_iter: int,
    fallback_iter: int,
    tol: float,
) -> torch.Tensor:
    """Solve every row's small problem exactly, warm-started at ``c0``.

    Args:
        h: (B, k, k) ``G + l2 I`` in the solve dtype.
        b: (B, k) ``D_W y``.
        l1: the soft threshold ``alpha * tau``.
        c0: (B, k) warm start, zero on invalid slots.
        valid: (B, k) bool, False on padding slots (their coefficient stays 0).
    """
    c, converged = pdas(h, b, l1, c0, valid, max_pdas_iter)
    if bool(converged.all()):
        return c
    bad = ~converged
    hb, bb, vb = h[bad], b[bad], valid[bad]
    path, finished = homotopy(hb, bb, l1, vb, max_steps=8 * b.shape[1] + 16)
    if not bool(finished.all()):
        # Degenerate paths (ties, rounding) are rare; proximal gradient always converges.
        slow = ~finished
        path[slow] = _prox_gradient(
            hb[slow], bb[slow], l1, path[slow] * 0, vb[slow], fallback_iter, tol
        )
    # PDAS from (near) the optimum settles in a step and certifies it; if it does not,
    # the path's own answer stands.
    polished, ok = pdas(hb, bb, l1, path, vb, 3)
    c[bad] = torch.where(ok.unsqueeze(-1), polished, path)
    return c
