"""The elastic-net homotopy (LARS-EN path) on small batched working sets.

For a fixed ridge weight the solution of ``min 1/2 c^T H c - b^T c + lam ||c||_1`` is
piecewise linear in ``lam``: on a stretch with active set ``A`` and signs ``s``,
``c_A(lam) = H_AA^{-1} (b_A - lam s_A) = u - lam v``. Starting at ``lam = max|b|``
(where ``c = 0``), the path is followed down to the target, stopping at each event: an
active coefficient reaching zero (it leaves ``A``) or an inactive correlation reaching
``lam`` (it joins ``A``). This always terminates at the exact optimum, unlike plain
primal-dual active-set steps, which can cycle on strongly correlated atoms; it is the
safe path of ``solve_working_set``.
"""

from __future__ import annotations

import torch

__all__ = ["homotopy"]


def homotopy(
    h: torch.Tensor, b: torch.Tensor, l1: float, valid: torch.Tensor, max_steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Follow the path of every row down to ``lam = l1``; returns ``(c, finished)``.

    Args:
        h: (B, k, k) ``G + l2 I``; b: (B, k); valid: (B, k) bool mask of real slots.
    """
    # Events are compared against each other: fp32 rounding can reorder near-ties and
    # leave a coefficient with the wrong sign, so the path runs in fp64 (k is small).
    out_dtype = b.dtype
    h, b = h.double(), b.double()
    bsz, k = b.shape
    dtype, dev = b.dtype, b.device
    zero = torch.zeros((), dtype=dtype, device=dev)
    ninf = torch.tensor(float("-inf"), dtype=dtype, device=dev)
    bv = torch.where(valid, b, zero)
    lam0, j0 = bv.abs().max(dim=1)
    lam = lam0.clone()
    # Rows whose largest correlation is already below l1 have c = 0.
    done = lam0 <= l1
    s = torch.zeros(bsz, k, dtype=dtype, device=dev)
    s.scatter_(1, j0.unsqueeze(1), torch.sign(bv.gather(1, j0.unsqueeze(1))))
    s = torch.where(done.unsqueeze(1), zero, s)
    rows = torch.arange(bsz, device=dev)
    eye = torch.eye(k, dtype=dtype, device=dev)
    # Events closer than this to the current lam are the one just taken (rounding noise).
    eps = 1e-6 * lam0.clamp_min(l1)
    c = torch.zeros_like(b)
    sync_every = 1 if dev.type == "cpu" else 4
    for step_no in range(max_steps):
        active = s != 0
        pair = active.unsqueeze(-1) & active.unsqueeze(-2)
        m = torch.where(pair, h, zero) + eye * (~active).unsqueeze(-1).to(dtype)
        rhs = torch.stack([torch.where(active, b, zero), s], dim=-1)
        uv = torch.linalg.solve_ex(m, rhs)[0]
        u, v = uv[..., 0], uv[..., 1]
        hu = (h @ u.unsqueeze(-1)).squeeze(-1)
        hv = (h @ v.unsqueeze(-1)).squeeze(-1)
        e, f = b - hu, hv  # inactive correlations: d(lam) = e + lam f
        # Leave: an active coefficient u - lam v reaches zero below the current lam.
        lam_leave = torch.where(active & (v != 0), u / v, ninf)
        # Join: e + lam f = +lam or -lam for an inactive valid slot.
        free = valid & ~active
        lam_pos = torch.where(free & (1 - f != 0), e / (1 - f), ninf)
        lam_neg = torch.where(free & (1 + f != 0), -e / (1 + f), ninf)
        cand = torch.stack([lam_leave, lam_pos, lam_neg], dim=-1)  # (B, k, 3)
        upper = (lam - eps).view(bsz, 1, 1)
        cand = torch.where((cand < upper) & (cand > l1), cand, ninf)
        # Near-ties skipped by eps show up as overdue events at the current lam: a free
        # correlation already above lam, or an active coefficient already past zero.
        lam_col = lam.unsqueeze(1)
        d_now = e + lam_col * f
        late_join = free & (d_now.abs() > lam_col + eps.unsqueeze(1))
        late_leave = active & (s * (u - lam_col * v) < -1e-12)
        late = torch.stack([late_leave, late_join & (d_now > 0), late_join & (d_now < 0)], -1)
        cand = torch.where(late, lam.view(bsz, 1, 1), cand)
        best, flat = cand.reshape(bsz, -1).max(dim=1)
        finish = ~done & (best == ninf)
        c = torch.where(finish.unsqueeze(1), u - l1 * v, c)
        done = done | finish
        # Each check is a host sync on CUDA; steps past a row's end leave it unchanged.
        if (step_no % sync_every == sync_every - 1 or step_no == max_steps - 1) and bool(
            done.all()
        ):
            return torch.where(valid, c, zero).to(out_dtype), done
        step = ~done
        j, kind = flat // 3, flat % 3
        new_sign = torch.where(kind == 0, zero, torch.where(kind == 1, 1.0, -1.0).to(dtype))
        cur = s[rows, j]
        s[rows, j] = torch.where(step, new_sign, cur)
        lam = torch.where(step, best, lam)
    # Out of steps: rows not done keep c = 0 and are reported unfinished.
    return torch.where(valid, c, zero).to(out_dtype), done
