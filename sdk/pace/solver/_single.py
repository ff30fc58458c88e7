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

from pace.solver._compiled import OK, homotopy_ws

__all__ = ["homotopy_np", "pdas_np", "solve_rows"]

F64 = npt.NDArray[np.float64]
_SIGNS = np.array([[1.0], [-1.0]])
I64 = npt.NDArray[np.int64]


def homotopy_np(
    h: npt.NDArray[np.floating],
    b: F64,
    l1: float,
    max_steps: int,
    l2: float = 0.0,
    tol: float = 1e-9,
) -> F64 | None:
    """The elastic-net path of ``min 1/2 c^T (h + l2 I) c - b^T c + l1 |c|_1`` for one row.

    Same events as ``pace.solver._homotopy.homotopy``, with the inverse of the active
    system updated in place (bordering on a join, a rank-one downdate on a leave) instead
    of solved at every event. The end point is re-solved from scratch and its optimality
    checked to ``tol``; returns ``None`` if that check fails, the system turns singular,
    or the path takes more than ``max_steps`` events (the caller then takes the batched
    safe path).
    """
    k = b.shape[0]
    absb = np.abs(b)
    lam0 = float(absb.max()) if k else 0.0
    if lam0 <= l1:
        return np.zeros(k)
    eps = 1e-10 * lam0
    j0 = int(absb.argmax())
    order = np.array([j0], dtype=np.int64)
    rows = h[order].astype(np.float64)  # rows of h for the active set, in order
    bs = np.array([[b[j0], np.sign(b[j0])]])  # per active atom: b and its sign
    inv = np.array([[1.0 / (float(rows[0, j0]) + l2)]])
    free = np.ones(k, dtype=bool)
    free[j0] = False
    lam = lam0
    ninf = -np.inf
    for _ in range(max_steps):
        # Active part: c_A(lam) = u - lam v. Free part: d(lam) = e + lam f; it joins
        # with sign +1 at lam = e / (1 - f) and with sign -1 at lam = -e / (1 + f).
        uv = inv @ bs
        ef = uv.T @ rows
        u, v = uv[:, 0], uv[:, 1]
        e, f = b - ef[0], ef[1]
        lim = lam - eps
        with np.errstate(divide="ignore", invalid="ignore"):
            leave = u / v
            join = (e * _SIGNS) / (1.0 - _SIGNS * f)  # (2, k): rows for sign +1, -1
        leave[~((leave < lim) & (leave > l1))] = ninf
        join[~((join < lim) & (join > l1) & free)] = ninf
        # Overdue events (near-ties skipped by eps) happen at the current lam.
        d_now = e + lam * f
        late = free & (np.abs(d_now) > lam + eps)
        if late.any():
            join[0, late & (d_now > 0)] = lam
            join[1, late & (d_now < 0)] = lam
        wrong = bs[:, 1] * (u - lam * v) < -1e-12
        if wrong.any():
            leave[wrong] = lam
        il, jflat = int(leave.argmax()), int(join.argmax())
        best_leave, best_join = leave[il], join.flat[jflat]
        if best_leave == ninf and best_join == ninf:
            return _end_point(rows, order, bs[:, 1], b, l1, l2, tol)
        if best_leave >= best_join:
            col = inv[:, il].copy()
            inv = np.delete(np.delete(inv - np.outer(col, col) / col[il], il, 0), il, 1)
            free[order[il]] = True
            order = np.delete(order, il)
            rows = np.delete(rows, il, 0)
            bs = np.delete(bs, il, 0)
            lam = float(best_leave)
            continue
        j = jflat % k
        p = rows[:, j]
        q = float(h[j, j]) + l2
        z = inv @ p
        sigma = q - float(p @ z)
        if not sigma > 1e-12 * q:
            return None  # the new atom is (numerically) in the span of the active ones
        m = order.size
        grown = np.empty((m + 1, m + 1))
        grown[:m, :m] = inv + np.outer(z, z) / sigma
        grown[:m, m] = grown[m, :m] = -z / sigma
        grown[m, m] = 1.0 / sigma
        inv = grown
        free[j] = False
        order = np.append(order, j)
        rows = np.vstack([rows, h[j : j + 1].astype(np.float64)])
        bs = np.vstack([bs, [[b[j], 1.0 if jflat < k else -1.0]]])
        lam = float(best_join)
    return None


def _end_point(
    rows: F64, order: I64, sgn: F64, b: F64, l1: float, l2: float, tol: float
) -> F64 | None:
    """Solve the final active system afresh and check its optimality on all of ``b``."""
    h_aa = rows[:, order]
    h_aa.flat[:: order.size + 1] += l2
    try:
        c_a = np.linalg.solve(h_aa, b[order] - l1 * sgn)
    except np.linalg.LinAlgError:
        return None
    c = np.zeros(b.shape[0])
    c[order] = c_a
    d = b - c_a @ rows
    d[order] = 0.0
    if not (np.all(np.sign(c_a) == sgn) and np.all(np.abs(d) <= l1 + tol)):
        return None
    return c


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


def solve_rows(
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
    warm: list[tuple[I64, F64]] | None = None,
    compiled: bool = False,
) -> list[tuple[I64, F64]] | None:
    """Solve each row of ``y`` on the CPU; ``None`` if a path fails (use the batched path).

    Rows go through the rounds in lockstep: each row's small problem is solved on its
    own (NumPy), while the passes over the dictionary (screening, and the KKT check when
    no Gram is cached) are one matrix product for all rows still open.

    Args:
        y: (b, d) targets on the CPU, any float dtype.
        compute: (n, d) unit atoms in the compute dtype (fp32 or fp64).
        gram: the cached ``compute @ compute.T`` as NumPy, or None.
        warm: per row, an earlier support and its values (distinct indices), or None.
        compiled: solve the working sets with the compiled homotopy
            (``pace.solver._compiled``); the NumPy steps remain its fallback.

    Returns:
        Per row ``(indices, values)`` over its final working set; values are exact zeros
        off the support.
    """
    n = compute.shape[0]
    yc = y.to(compute.dtype)
    r_all = (yc @ compute.T).double().numpy()
    y64 = yc.double().numpy()
    d_np = compute.numpy() if gram is None else None
    ws = [_top(np.abs(r), min(n, screen_size)) for r in r_all]
    start: list[F64 | None] = [None] * len(ws)
    if warm is not None:
        # An earlier support joins the screened set, its values seed the first PDAS.
        for i, (idx, val) in enumerate(warm):
            extra = np.setdiff1d(ws[i], idx, assume_unique=False)
            ws[i] = np.concatenate([idx, extra])
            start[i] = np.concatenate([val, np.zeros(extra.size)])
    out: list[tuple[I64, F64] | None] = [None] * len(ws)
    open_rows = list(range(len(ws)))
    for _ in range(max_rounds):
        solved: dict[int, F64] = {}
        for i in open_rows:
            w = ws[i]
            if gram is not None:
                h = gram[np.ix_(w, w)].astype(np.float64)
                b = r_all[i, w]
            else:
                assert d_np is not None
                dw = d_np[w].astype(np.float64)
                h = dw @ dw.T
                b = dw @ y64[i]
            h.flat[:: len(w) + 1] += l2
            # Later rounds start next to the answer, where PDAS settles in a step or two;
            # the first round (and any PDAS that cycles) follows the exact path instead.
            prev = start[i]
            c = None
            if compiled:
                c, status = homotopy_ws(h, b, l1, tol, 8 * len(w) + 16)
                if status != OK:
                    c = None
            if c is None and prev is not None:
                c = pdas_np(h, b, l1, prev, max_pdas_iter)
            if c is None:
                c = homotopy_np(h, b, l1, max_steps=8 * len(w) + 16, tol=tol)
                if c is None:
                    return None
            solved[i] = c
        grads = _kkt_gradients(open_rows, ws, solved, r_all, y64, compute, gram, d_np)
        still_open = []
        for i, g in zip(open_rows, grads, strict=True):
            w, c = ws[i], solved[i]
            if g is None:  # every atom is in the working set
                out[i] = (w, c)
                continue
            score = np.abs(g)
            score[w] = 0.0
            viol = np.flatnonzero(score > l1 + tol)
            if viol.size == 0:
                out[i] = (w, c)
                continue
            m = min(viol.size, max(len(w), screen_size))
            ws[i] = np.concatenate([w, viol[_top(score[viol], m)]])
            start[i] = np.concatenate([c, np.zeros(m)])
            still_open.append(i)
        open_rows = still_open
        if not open_rows:
            return [o for o in out if o is not None]
    return None


def _kkt_gradients(
    rows: list[int],
    ws: list[I64],
    solved: dict[int, F64],
    r_all: F64,
    y64: F64,
    compute: torch.Tensor,
    gram: npt.NDArray[np.floating] | None,
    d_np: npt.NDArray[np.floating] | None,
) -> list[F64 | None]:
    """``D (y - D^T c)`` per open row (None where W already holds every atom)."""
    n = compute.shape[0]
    if gram is not None:
        grads: list[F64 | None] = []
        for i in rows:
            w, c = ws[i], solved[i]
            on = c != 0
            grads.append(None if len(w) >= n else r_all[i] - c[on] @ gram[w[on]])
        return grads
    assert d_np is not None
    res = np.empty((len(rows), y64.shape[1]))
    for k, i in enumerate(rows):
        w, c = ws[i], solved[i]
        on = c != 0
        res[k] = y64[i] - c[on] @ d_np[w[on]].astype(np.float64)
    g = (torch.from_numpy(res).to(compute.dtype) @ compute.T).double().numpy()
    return [None if len(ws[i]) >= n else g[k] for k, i in enumerate(rows)]


def _top(x: F64, k: int) -> I64:
    """Indices of the k largest entries (unordered)."""
    if k >= x.shape[0]:
        return np.arange(x.shape[0])
    return np.argpartition(-x, k - 1)[:k].astype(np.int64)
