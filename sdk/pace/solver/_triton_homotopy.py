"""The working-set homotopy as one Triton kernel: a whole elastic-net path per program.

The same path as the compiled CPU homotopy (``pace.solver._compiled``), for the small
k x k systems of an accelerator's solve, without leaving the device: one program per
row follows ``lam`` from ``max |b|`` down to ``l1`` one event at a time (an atom joins
or leaves the active set), keeping the inverse of the active block up to date by
bordering and downdating, in fp64. The end point is re-solved from that inverse and its
KKT conditions are checked on every slot; a row whose check fails, whose path is longer
than ``max_steps`` or whose active block turns singular gets a nonzero status and must
be solved another way. Being one kernel with no host reads, it can be captured in a CUDA
graph together with the passes over the dictionary (``pace.solver._fixed``).

Triton comes with PyTorch's CUDA builds; where it is missing ``AVAILABLE`` is False.
"""

from __future__ import annotations

import warnings

import torch

from pace.solver import _compiled
from pace.solver._host import solve_on_host

__all__ = ["AVAILABLE", "homotopy_systems"]

try:  # pragma: no cover - depends on the installation
    import triton
    import triton.language as tl

    AVAILABLE = True
except ImportError:  # pragma: no cover
    AVAILABLE = False

OK, FAIL, STEPS = 0, 1, 2
NUM_WARPS = 8
"""Warps per program (one program per row)."""

if AVAILABLE:

    @triton.jit
    def _border(inv, h, act, jj, offs, rows2, cols2, diag):  # no annotations: Triton
        """Grow the inverse of the active block by slot ``jj``; returns (inv, ok)."""
        hcol = tl.sum(tl.where(cols2 == jj, h, 0.0), axis=1).to(tl.float64)
        hcol_a = tl.where(act, hcol, 0.0)
        w = tl.sum(inv * hcol_a[None, :], axis=1)
        h_jj = tl.sum(tl.where(offs == jj, diag, 0.0), axis=0)
        sigma = h_jj - tl.sum(hcol_a * w, axis=0)
        ok = sigma > 1e-12 * h_jj
        safe = tl.where(ok, sigma, 1.0)
        grown = inv + w[:, None] * w[None, :] / safe
        border = -w / safe
        grown = tl.where(rows2 == jj, border[None, :], grown)
        grown = tl.where(cols2 == jj, border[:, None], grown)
        grown = tl.where((rows2 == jj) & (cols2 == jj), 1.0 / safe, grown)
        return tl.where(ok, grown, inv), ok

    @triton.jit
    def _homotopy_kernel(  # no annotations: Triton would evaluate them
        h_ptr,
        b_ptr,
        valid_ptr,
        c0_ptr,
        c_ptr,
        status_ptr,
        n_fixed,
        l1,
        tol,
        max_steps,
        K: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        row = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        inside = offs < K
        rows2 = offs[:, None]
        cols2 = offs[None, :]
        tile = (rows2 < K) & (cols2 < K)
        # H stays in fp32 (as given; products with fp64 vectors promote), the rest is fp64.
        h = tl.load(h_ptr + row * K * K + rows2 * K + cols2, mask=tile, other=0.0)
        b = tl.load(b_ptr + row * K + offs, mask=inside, other=0.0).to(tl.float64)
        valid = tl.load(valid_ptr + row * K + offs, mask=inside, other=0) != 0
        b = tl.where(valid, b, 0.0)
        diag = tl.sum(tl.where(rows2 == cols2, h, 0.0), axis=1).to(tl.float64)
        ninf = -1.0e30  # "no candidate" (lam is at most max |b|, far above this)
        moving = offs >= n_fixed  # slots whose L1 weight falls with lam; the others keep l1

        # Start from the earlier round's answer on the fixed slots (zero elsewhere): its
        # support is the active set, its inverse built by bordering one slot at a time.
        cur = tl.load(c0_ptr + row * K + offs, mask=inside & (offs < n_fixed), other=0.0)
        cur = tl.where(valid & (offs < n_fixed), cur.to(tl.float64), 0.0)
        act = cur != 0.0
        sg = tl.where(cur > 0.0, 1.0, tl.where(cur < 0.0, -1.0, 0.0)).to(tl.float64)
        inv = tl.zeros((BLOCK, BLOCK), dtype=tl.float64)
        built = offs < 0
        status = n_fixed * 0
        j = n_fixed * 0
        while j < n_fixed:
            if tl.sum(tl.where(offs == j, act.to(tl.int32), 0), axis=0) > 0:
                inv, ok_j = _border(inv, h, built, j, offs, rows2, cols2, diag)
                built = built | (offs == j)
                status = tl.where(ok_j, status, 1)
            j += 1
        d = b - tl.sum(h.to(tl.float64) * cur[None, :], axis=1)
        # lam starts at the largest correlation of a moving slot, which becomes active.
        cand0 = tl.where(valid & moving, tl.abs(d), -1.0)
        lam0 = tl.max(cand0, axis=0)
        j0 = tl.argmax(cand0, axis=0)
        d_j0 = tl.sum(tl.where(offs == j0, d, 0.0), axis=0)
        start = (lam0 > l1) & (status == 0)
        if start:
            inv, ok0 = _border(inv, h, act, j0, offs, rows2, cols2, diag)
            status = tl.where(ok0, status, 1)
            act = act | (offs == j0)
            sg = tl.where(offs == j0, tl.where(d_j0 > 0.0, 1.0, -1.0), sg)
        lam = tl.maximum(lam0, l1).to(tl.float64)
        eps = 1e-10 * lam
        done = tl.where(start & (status == 0), 0, 1)
        steps = done * 0
        while (done == 0) & (steps < max_steps):
            steps += 1
            u = tl.where(moving, sg, 0.0)
            v = tl.sum(inv * u[None, :], axis=1)  # dc_A/dlam = -v
            f = tl.sum(h.to(tl.float64) * v[None, :], axis=1)  # d moves by f per unit lam
            lim = lam - eps
            # Leave: an active coefficient reaches zero below the current lam.
            safe_v = tl.where(v != 0.0, v, 1.0)
            lv = lam + cur / safe_v
            lv = tl.where(act & (v != 0.0) & (lv < lim) & (lv > l1), lv, ninf)
            lv = tl.where(act & (sg * cur < -1e-12), lam, lv)  # overdue: already past zero
            best_leave = tl.max(lv, axis=0)
            il = tl.argmax(lv, axis=0)
            # Join: a free moving slot's correlation d_j + (lam' - lam) f_j reaches +-lam';
            # a free fixed slot's reaches +-l1 (l1 + tol if it starts between the two).
            free = valid & (act == 0)
            ej = d - lam * f
            lp = tl.where(f != 1.0, ej / tl.where(f != 1.0, 1.0 - f, 1.0), ninf)
            ln = tl.where(f != -1.0, -ej / tl.where(f != -1.0, 1.0 + f, 1.0), ninf)
            bnd = tl.where(tl.abs(d) > l1, l1 + tol, l1)
            safe_f = tl.where(f != 0.0, f, 1.0)
            fp = tl.where(f != 0.0, lam + (bnd - d) / safe_f, ninf)
            fn = tl.where(f != 0.0, lam - (bnd + d) / safe_f, ninf)
            lp = tl.where(moving, lp, fp)
            ln = tl.where(moving, ln, fn)
            lp = tl.where((lp < lim) & (lp > l1), lp, ninf)
            ln = tl.where((ln < lim) & (ln > l1), ln, ninf)
            level = tl.where(moving, lam + eps, l1 + tol)
            over = tl.abs(d) > level  # overdue: a near-tie skipped by eps
            lp = tl.where(over & (d > 0.0), lam, lp)
            ln = tl.where(over & (d < 0.0), lam, ln)
            cand = tl.where(free, tl.maximum(lp, ln), ninf)
            jsign_all = tl.where(lp >= ln, 1.0, -1.0)
            best_join = tl.max(cand, axis=0)
            jj = tl.argmax(cand, axis=0)
            jsign = tl.sum(tl.where(offs == jj, jsign_all, 0.0), axis=0)
            if (best_leave <= ninf) & (best_join <= ninf):
                done = done * 0 + 1
            else:
                mu = tl.maximum(best_leave, best_join)
                step = mu - lam
                cur = tl.where(act, cur - step * v, 0.0)
                d = d + step * f
                lam = mu
                if best_leave >= best_join:
                    # Downdate the inverse: drop slot il from the active block.
                    z = tl.sum(tl.where(cols2 == il, inv, 0.0), axis=1)
                    piv = tl.sum(tl.where(offs == il, z, 0.0), axis=0)
                    inv = inv - z[:, None] * z[None, :] / piv
                    inv = tl.where((rows2 == il) | (cols2 == il), 0.0, inv)
                    act = act & (offs != il)
                    sg = tl.where(offs == il, 0.0, sg)
                    cur = tl.where(offs == il, 0.0, cur)
                else:
                    inv, ok_j = _border(inv, h, act, jj, offs, rows2, cols2, diag)
                    if ok_j:
                        act = act | (offs == jj)
                        sg = tl.where(offs == jj, jsign, sg)
                        cur = tl.where(offs == jj, 0.0, cur)
                    else:
                        status = status * 0 + 1  # FAIL: the new atom is in the active span
                        done = done * 0 + 1
        status = tl.where((done == 0) & (status == 0), 2, status)  # STEPS
        # The end point, re-solved from the inverse: c_A = H_AA^-1 (b_A - l1 s_A).
        rhs = tl.where(act, b - l1 * sg, 0.0)
        c = tl.where(act, tl.sum(inv * rhs[None, :], axis=1), 0.0)
        # Its KKT conditions on every slot: signs on A, |b_j - (H c)_j| <= l1 + tol off A.
        grad = b - tl.sum(h.to(tl.float64) * c[None, :], axis=1)
        bad_on = act & ((c * sg <= 0.0) | (tl.abs(grad - l1 * sg) > tol))
        bad_off = valid & (act == 0) & (tl.abs(grad) > l1 + tol)
        bad = tl.max((bad_on | bad_off).to(tl.int32), axis=0) > 0
        status = tl.where(bad & (status == 0), 1, status)  # FAIL
        c = tl.where(status == 0, c, 0.0)
        tl.store(c_ptr + row * K + offs, c.to(tl.float32), mask=inside)
        tl.store(status_ptr + row, status)


def homotopy_systems(
    h: torch.Tensor,
    b: torch.Tensor,
    valid: torch.Tensor,
    l1: float,
    tol: float,
    c0: torch.Tensor | None = None,
    n_fixed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve every row's ``min 1/2 c^T H c - b^T c + l1 ||c||_1`` over its valid slots.

    Args:
        h: (B, k, k) fp32 ``G + l2 I``; b: (B, k) fp32; valid: (B, k) bool; on one device.
        c0, n_fixed: optionally, the answer of an earlier round on the first ``n_fixed``
            slots (the working set before new atoms joined it): the path then continues
            from it with only the new slots' weight moving, instead of starting at c = 0.

    Returns:
        ``(c, ok)``: (B, k) fp32 coefficients (zero on invalid slots and on rows that are
        not ok) and (B,) bool. Nothing is read back to the host.
    """
    global _BROKEN
    if _BROKEN is None:
        try:
            return _launch(h, b, valid, l1, tol, c0, n_fixed)
        except Exception as exc:  # an incompatible Triton: compile or launch errors
            if not _compiled.AVAILABLE:
                raise
            _BROKEN = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                f"the Triton working-set kernel failed ({_BROKEN[:200]}); the working-set "
                "systems are solved on the host from now on",
                RuntimeWarning,
                stacklevel=2,
            )
    return solve_on_host(h, b, valid, l1, tol)


_BROKEN: str | None = None
"""Why the kernel failed in this process, if it did (then the host solves the systems)."""


def _launch(
    h: torch.Tensor,
    b: torch.Tensor,
    valid: torch.Tensor,
    l1: float,
    tol: float,
    c0: torch.Tensor | None,
    n_fixed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    bsz, k = b.shape
    c = torch.empty(bsz, k, dtype=torch.float32, device=b.device)
    status = torch.empty(bsz, dtype=torch.int32, device=b.device)
    if c0 is None or n_fixed <= 0:
        c0, n_fixed = c, 0  # not read
    block = max(16, triton.next_power_of_2(k))
    _homotopy_kernel[(bsz,)](
        h.contiguous(),
        b.contiguous(),
        valid.to(torch.int8).contiguous(),
        c0.contiguous(),
        c,
        status,
        int(n_fixed),
        float(l1),
        float(tol),
        8 * k + 16,
        K=k,
        BLOCK=block,
        num_warps=NUM_WARPS,
    )
    return c, status == OK
