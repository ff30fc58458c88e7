"""A low-overhead path for one vector on the CPU: the steering hot path at batch 1.

Generation on a CPU edits one token per layer and step, so per-call overhead matters
more than batching. This path runs the same method as ``ElasticNet`` (screen, exact
solve on the working set, KKT check on all atoms, grow) but does the small-matrix work
in NumPy float64 on the active set itself, not on padded torch batches: a NumPy call on
a 30-element array costs about a microsecond, a torch call several.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

__all__ = ["homotopy_np", "pdas_np", "solve_single"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def homotopy_np(
    h: npt.NDArray[np.floating], b: F64, l1: float, max_steps: int, l2: float = 0.0
) -> F64 | None:
    """The elastic-net path of ``min 1/2 c^T (h + l2 I) c - b^T c + l1 |c|_1`` for one row.

    Same events as ``pace.solver._homotopy.homotopy``; returns ``None`` if the path takes
    more than ``max_steps`` events (the caller then uses the batched safe path). ``h`` may
    be larger than the active set needs: only its active rows are read at each step.
    """
    k = b.shape[0]
    lam0 = float(np.abs(b).max()) if k else 0.0
    c = np.zeros(k)
    if lam0 <= l1:
        return c
    eps = 1e-10 * lam0
    j0 = int(np.abs(b).argmax())
    active = np.zeros(k, dtype=bool)
    active[j0] = True
    s = np.zeros(k)
    s[j0] = np.sign(b[j0])
    lam = lam0
    ninf = -np.inf
    for _ in range(max_steps):
        ai = np.flatnonzero(active)
        # h is symmetric: gather rows (contiguous), not columns.
        h_rows = h[ai].astype(np.float64)
        h_aa = h_rows[:, ai]
        h_aa.flat[:: ai.size + 1] += l2
        rhs = np.empty((ai.size, 2))
        rhs[:, 0] = b[ai]
        rhs[:, 1] = s[ai]
        try:
            uv = np.linalg.solve(h_aa, rhs)
        except np.linalg.LinAlgError:
            uv = np.linalg.lstsq(h_aa, rhs, rcond=None)[0]
        u, v = uv[:, 0], uv[:, 1]
        e = b - u @ h_rows
        f = v @ h_rows
        free = ~active
        with np.errstate(divide="ignore", invalid="ignore"):
            leave = np.where(v != 0, u / v, ninf)
            join_pos = np.where(free, e / (1.0 - f), ninf)
            join_neg = np.where(free, -e / (1.0 + f), ninf)
        leave = np.where((leave < lam - eps) & (leave > l1), leave, ninf)
        join_pos = np.where((join_pos < lam - eps) & (join_pos > l1), join_pos, ninf)
        join_neg = np.where((join_neg < lam - eps) & (join_neg > l1), join_neg, ninf)
        # Overdue events (near-ties skipped by eps) happen at the current lam.
        d_now = e + lam * f
        late_join = free & (np.abs(d_now) > lam + eps)
        join_pos = np.where(late_join & (d_now > 0), lam, join_pos)
        join_neg = np.where(late_join & (d_now < 0), lam, join_neg)
        leave = np.where(s[ai] * (u - lam * v) < -1e-12, lam, leave)
        il, ip, ineg = int(leave.argmax()), int(join_pos.argmax()), int(join_neg.argmax())
        best = max(leave[il], join_pos[ip], join_neg[ineg])
        if best == ninf:
            c[ai] = u - l1 * v
            return c
        if best == leave[il]:
            j = int(ai[il])
            active[j] = False
            s[j] = 0.0
        elif best == join_pos[ip]:
            active[ip] = True
            s[ip] = 1.0
        else:
            active[ineg] = True
            s[ineg] = -1.0
        lam = float(best)
    return None


def pdas_np(h: F64, b: F64, l1: float, c: F64, max_iter: int) -> F64 | None:
    """Primal-dual active-set steps from a warm start; ``None`` unless a fixed point is hit.

    A fixed point (the same signs twice) satisfies the KKT conditions exactly; see
    ``pace.solver._subproblem.pdas``.
    """
    diag = np.diag(h)
    s_prev: F64 | None = None
    for _ in range(max_iter + 1):
        u = c + (b - h @ c) / diag
        active = np.abs(u) > l1 / diag
        s = np.where(active, np.sign(u), 0.0)
        if s_prev is not None and np.array_equal(s, s_prev):
            return c
        ai = np.flatnonzero(active)
        c = np.zeros_like(b)
        if ai.size:
            try:
                c[ai] = np.linalg.solve(h[np.ix_(ai, ai)], b[ai] - l1 * s[ai])
            except np.linalg.LinAlgError:
                return None
        s_prev = s
    return None


def solve_single(
    y: torch.Tensor,
    compute: torch.Tensor,
    gram: npt.NDArray[np.floating] | None,
    *,
    l1: float,
    l2: float,
    tol: float,
    screen_size: int,
    max_rounds: int,
    max_pdas_iter: int,
) -> tuple[I64, F64] | None:
    """Solve one row on the CPU; ``None`` if a path ran out of steps (use the batched path).

    Args:
        y: (d,) target on the CPU, any float dtype.
        compute: (n, d) unit atoms in the compute dtype (fp32 or fp64).
        gram: the cached ``compute @ compute.T`` as NumPy, or None.

    Returns:
        ``(indices, values)`` over the final working set; values are exact zeros off the
        support.
    """
    n = compute.shape[0]
    yc = y.to(compute.dtype)
    r = (compute @ yc).double().numpy()
    w = _top(np.abs(r), min(n, screen_size))
    y64 = yc.double().numpy()
    d_np = compute.numpy() if gram is None else None
    c_prev: F64 | None = None
    for _ in range(max_rounds):
        if gram is not None:
            h = gram[np.ix_(w, w)].astype(np.float64)
            b = r[w]
        else:
            assert d_np is not None
            dw = d_np[w].astype(np.float64)
            h = dw @ dw.T
            b = dw @ y64
        h.flat[:: len(w) + 1] += l2
        # Later rounds start next to the answer, where PDAS settles in a step or two; the
        # first round (and any PDAS that cycles) follows the exact path instead.
        c = None if c_prev is None else pdas_np(h, b, l1, c_prev, max_pdas_iter)
        if c is None:
            c = homotopy_np(h, b, l1, max_steps=8 * len(w) + 16)
            if c is None:
                return None
        on = c != 0
        if len(w) >= n:
            return w, c
        if gram is not None:
            g = r - c[on] @ gram[w[on]]
        else:
            assert d_np is not None
            res = y64 - c[on] @ d_np[w[on]].astype(np.float64)
            g = (compute @ torch.from_numpy(res).to(compute.dtype)).double().numpy()
        score = np.abs(g)
        score[w] = 0.0
        viol = np.flatnonzero(score > l1 + tol)
        if viol.size == 0:
            return w, c
        m = min(viol.size, max(len(w), screen_size))
        new = viol[_top(score[viol], m)]
        w = np.concatenate([w, new])
        c_prev = np.concatenate([c, np.zeros(m)])
    return None


def _top(x: F64, k: int) -> I64:
    """Indices of the k largest entries (unordered)."""
    if k >= x.shape[0]:
        return np.arange(x.shape[0])
    return np.argpartition(-x, k - 1)[:k].astype(np.int64)
