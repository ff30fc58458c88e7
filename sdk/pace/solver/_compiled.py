"""Compiled (numba) kernels for the CPU hot path: the whole solve for rows with a Gram.

At the steering size (n = 2,000 atoms, d = 576, one token per call) the work besides the
one screening product is tiny (a homotopy on a few dozen atoms and a KKT check costing
``|support| * n``), so interpreter overhead dominated the NumPy path. These kernels run
the same method without it:

- ``homotopy_ws``: the elastic-net path on one working-set system (float64), the inverse
  of the active block updated per event, the end point re-solved by Cholesky and its
  optimality checked on the whole working set;
- ``solve_gram_rows``: per row, screen the working set from ``r = D y``, solve it with
  the homotopy, check KKT on every atom with the cached Gram (``g = r - c_W G_W``),
  grow by the violators and continue the path from the previous answer, repeat; results
  come back compact (the support only);
- ``solve_lowp_rows``: the same, with the screening pass computed here over an int8 copy
  of the atoms (``pace.solver._screen``: a quarter of the bytes of the memory-bound pass,
  with a proven error bound); exact correlations replace the pass's wherever they matter.

A kernel never guesses: any numerical trouble (a singular system, a path that fails its
end-point check, too many steps or rounds) is reported, and the caller then takes the
NumPy/torch path. numba is optional: without it ``AVAILABLE`` is False and nothing here
is used. Kernels compile on first use and are cached on disk (``cache=True``), so the
JIT cost (about 40 seconds on 2 cores; ``pace.solver._jit_cache`` announces it) is paid
once per machine and version. Counters start as ``int(np.int64(0))``, not ``0``: numba types
a literal constant as its own type and compiled every callee it reaches once more for it
(118 compilations instead of 105, 60 seconds instead of 40: ``bench/solver_compile.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "AVAILABLE",
    "OK",
    "ROWS_PER_CLAIM",
    "continue_round",
    "homotopy_ws",
    "kkt_violators",
    "remove_row_lowp",
    "remove_token_lowp",
    "rows_result",
    "solve_gram_rows",
    "solve_gram_rows_shared",
    "solve_lowp_rows",
    "top_abs",
]

OK = 0
"""Status of a successful kernel call; anything else means: take the safe path."""
_FAIL = 1  # singular system or failed end-point check
_STEPS = 2  # the path took more than max_steps events
_ROUNDS = 3  # KKT still failed after max_rounds rounds
_NOGRAM = 5  # neither a Gram nor int8 codes to check KKT with (a caller's mistake)

try:
    import numba

    AVAILABLE = True
except ImportError:  # pragma: no cover - exercised where numba is not installed
    AVAILABLE = False


# Reassociation only: lets LLVM vectorise the dot products (the Cholesky and triangular
# solves, v = inv @ s, the end-point check). No "nnan"/"ninf": the branch-free candidate
# search relies on inf and nan comparing false. The end point is still re-solved and
# checked to ``tol``, so exactness does not depend on the order of the sums.
_FASTMATH = {"reassoc", "contract"}


def _jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    if not AVAILABLE:
        return fn
    jitted: Callable[..., Any] = numba.njit(
        cache=True, nogil=True, error_model="numpy", fastmath=_FASTMATH
    )(fn)
    return jitted


def _atomic_fetch_add() -> Any:
    """``_fetch_add(counter, step)``: ``counter[0] += step`` atomically; the old value.

    An LLVM ``atomicrmw add`` on an int64 array's first element, for threads sharing
    rows (``solve_gram_rows_shared``).
    """
    if not AVAILABLE:  # pragma: no cover - the kernels are not used without numba
        return None
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    def typer(typingctx: Any, counter: Any, step: Any) -> Any:
        if not (
            isinstance(counter, types.Array)
            and counter.dtype == types.int64
            and isinstance(step, types.Integer)
        ):
            return None
        sig = types.int64(counter, step)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            arr_t, step_t = signature.args
            ary = context.make_array(arr_t)(context, builder, args[0])
            zero = context.get_constant(types.intp, 0)
            ptr = cgutils.get_item_pointer(context, builder, arr_t, ary, [zero])
            add = context.cast(builder, args[1], step_t, types.int64)
            return builder.atomic_rmw("add", ptr, add, "seq_cst")

        return sig, codegen

    typer.__name__ = "_fetch_add"
    return intrinsic(typer)


_fetch_add: Any = _atomic_fetch_add()


_V_REFRESH = 16
"""Events between two fresh computations of the path direction ``v`` in ``_homotopy``."""


@_jit
def _homotopy(
    h: npt.NDArray[np.float64],
    b: npt.NDArray[np.float64],
    l1: float,
    tol: float,
    max_steps: int,
    c: npt.NDArray[np.float64],
    fixed: int,
    carry_order: npt.NDArray[np.int64],
    carry_inv: npt.NDArray[np.float64],
) -> tuple[int, int, npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """``c = argmin 1/2 c^T h c - b^T c + l1 |c|_1`` (h symmetric positive definite).

    Slots ``j >= fixed`` carry the L1 weight ``lam``, which falls from ``max |b_j - h_j c|``
    over those slots to ``l1``; slots ``j < fixed`` keep the weight ``l1`` throughout and
    start from ``c[:fixed]`` (the answer of an earlier round on those slots; the others
    start at 0). With ``fixed = 0`` this is the elastic-net path from ``c = 0``; with
    ``fixed > 0`` it continues from that answer after new atoms joined the working set,
    instead of walking the path again (a weighted homotopy: only the new atoms' weight
    moves). The event logic is that of ``pace.solver._single.homotopy_np``: on a stretch
    with active set ``A`` and signs ``s``, ``dc_A/dlam = -v`` with ``v = H_AA^-1 u_A``
    (``u = s`` on moving slots, 0 on fixed ones) and the correlations ``d = b - h c`` move
    by ``f = h_:A v``; a free moving slot joins when ``|d_j|`` reaches ``lam``, a free fixed
    one when it reaches ``l1``, an active coefficient leaves at 0. The end point is
    re-solved from scratch and checked, so exactness never depends on the path.

    ``carry_order``/``carry_inv`` hand over the previous round's path state: its active
    slots (all ``< fixed``, in its order) and the inverse of their block of ``h``. When
    they are exactly the slots ``j < fixed`` with ``c[j] != 0`` (as after an earlier
    round's certified end point), the path resumes from that inverse instead of factoring
    the block again (about m^3 / 2 operations: 0.34 ms at m = 96, per round). Pass empty
    arrays to start afresh.

    Returns ``(status, m, order, inv)``: the path's final active slots ``order[:m]`` and
    ``inv[:m, :m]``, their block's inverse (meaningful when the status is OK).
    """
    k = b.shape[0]
    order = np.empty(k, np.int64)
    sg = np.empty(k)
    inv = np.empty((k, k))
    free = np.ones(k, np.bool_)
    cur = np.empty(k)  # c on the active slots, in order
    cand_p = np.empty(k)
    cand_n = np.empty(k)
    d = np.empty(k)  # b - h c on every slot
    u = np.empty(k)  # the moving weights' signs on the active slots (0 on fixed ones)
    v = np.empty(k)
    f = np.empty(k)
    z = np.empty(k)
    m = int(np.int64(0))  # not the literal 0: one compiled version of each callee
    for j in range(fixed):
        if c[j] != 0.0:
            order[m] = j
            sg[m] = 1.0 if c[j] > 0.0 else -1.0
            cur[m] = c[j]
            free[j] = False
            m += 1
    carried = carry_order.shape[0] == m and m > 0
    for i in range(carry_order.shape[0] if carried else 0):
        j = carry_order[i]
        if j >= fixed or c[j] == 0.0:
            carried = False
            break
    if carried:  # same slots (counted and checked above), in the carried order
        for i in range(m):
            j = carry_order[i]
            order[i] = j
            sg[i] = 1.0 if c[j] > 0.0 else -1.0
            cur[i] = c[j]
            row = carry_inv[i]
            for a in range(m):
                inv[i, a] = row[a]
    for j in range(k):
        c[j] = 0.0
    if m > 0 and not carried and not _invert(h, order, m, inv):
        return _FAIL, 0, order, inv
    for j in range(k):
        d[j] = b[j]
    for i in range(m):
        row = h[order[i]]
        ci = cur[i]
        for j in range(k):
            d[j] -= ci * row[j]
    lam0 = 0.0
    j0 = fixed
    for j in range(fixed, k):
        if abs(d[j]) > lam0:
            lam0 = abs(d[j])
            j0 = j
    if lam0 <= l1:
        if m == 0:
            return OK, 0, order, inv  # c = 0
        return _end_point(h, b, l1, tol, order, sg, m, inv, c), m, order, inv
    # The moving slot with the largest correlation is active from the start.
    if not _border(h, inv, order, m, j0, z):
        return _FAIL, 0, order, inv
    order[m] = j0
    sg[m] = 1.0 if d[j0] > 0.0 else -1.0
    cur[m] = 0.0
    free[j0] = False
    m += 1
    lam = lam0
    eps = 1e-10 * lam0
    ninf = -np.inf
    for event in range(max_steps):
        if event % _V_REFRESH == 0:
            # Otherwise v follows each join and leave in O(m) (below); refreshed now and
            # then, as the updates add rounding (the end point is checked either way).
            for a in range(m):
                u[a] = sg[a] if order[a] >= fixed else 0.0
            for i in range(m):
                sv = 0.0
                for a in range(m):
                    sv += inv[i, a] * u[a]
                v[i] = sv
        for j in range(k):
            f[j] = 0.0
        i = 0
        while i + 4 <= m:  # four rows of h per pass over f: fewer loads and stores of f
            r0, r1, r2, r3 = h[order[i]], h[order[i + 1]], h[order[i + 2]], h[order[i + 3]]
            v0, v1, v2, v3 = v[i], v[i + 1], v[i + 2], v[i + 3]
            for j in range(k):
                f[j] += v0 * r0[j] + v1 * r1[j] + v2 * r2[j] + v3 * r3[j]
            i += 4
        while i < m:
            row = h[order[i]]
            vi = v[i]
            for j in range(k):
                f[j] += vi * row[j]
            i += 1
        lim = lam - eps
        best_leave = ninf
        il = int(np.int64(-1))
        for i in range(m):
            cand = ninf
            if sg[i] * cur[i] < -1e-12:
                cand = lam  # overdue: already past zero
            elif v[i] != 0.0:
                lv = (cur[i] + lam * v[i]) / v[i]
                if lv < lim and lv > l1:
                    cand = lv
            if cand > best_leave:
                best_leave = cand
                il = i
        # Join candidates of both signs for every slot, branch-free (so the loop can be
        # vectorised): a zero denominator gives inf or nan, which the range test drops.
        # A moving slot meets |d_j| = lam; a fixed one |d_j| = l1 (or l1 + tol where it
        # starts between the two, as the previous round's KKT test allows).
        for j in range(fixed, k):
            fj = f[j]
            dj = d[j]
            ej = dj - lam * fj
            lp = ej / (1.0 - fj)
            ln = -ej / (1.0 + fj)
            lp = lp if (lp < lim and lp > l1) else ninf
            ln = ln if (ln < lim and ln > l1) else ninf
            over = abs(dj) > lam + eps  # overdue: a near-tie skipped by eps
            lp = lam if (over and dj > 0.0) else lp
            ln = lam if (over and dj < 0.0) else ln
            cand_p[j] = lp if free[j] else ninf
            cand_n[j] = ln if free[j] else ninf
        for j in range(fixed):
            fj = f[j]
            dj = d[j]
            bnd = l1 + tol if abs(dj) > l1 else l1
            lp = lam + (bnd - dj) / fj
            ln = lam - (bnd + dj) / fj
            lp = lp if (lp < lim and lp > l1) else ninf
            ln = ln if (ln < lim and ln > l1) else ninf
            over = abs(dj) > l1 + tol
            lp = lam if (over and dj > 0.0) else lp
            ln = lam if (over and dj < 0.0) else ln
            cand_p[j] = lp if free[j] else ninf
            cand_n[j] = ln if free[j] else ninf
        best_join = ninf
        jj = int(np.int64(-1))
        jsign = 0.0
        for j in range(k):
            if cand_p[j] > best_join:
                best_join = cand_p[j]
                jj = j
                jsign = 1.0
        for j in range(k):
            if cand_n[j] > best_join:
                best_join = cand_n[j]
                jj = j
                jsign = -1.0
        if best_leave == ninf and best_join == ninf:
            return _end_point(h, b, l1, tol, order, sg, m, inv, c), m, order, inv
        mu = best_leave if best_leave >= best_join else best_join
        step = mu - lam
        for i in range(m):
            cur[i] -= step * v[i]
        for j in range(k):
            d[j] += step * f[j]
        lam = mu
        if best_leave >= best_join:
            piv = inv[il, il]
            for i in range(m):
                z[i] = inv[i, il]
            # v = inv u loses slot il: v - z (z^T u) / piv, and z^T u = v[il].
            vil = v[il] / piv
            for i in range(m):
                v[i] -= z[i] * vil
            for i in range(m):
                zi = z[i] / piv
                for a in range(m):
                    inv[i, a] -= zi * z[a]
            free[order[il]] = True
            last = m - 1
            if il != last:
                for a in range(m):
                    inv[il, a] = inv[last, a]
                for i in range(m):
                    inv[i, il] = inv[i, last]
                order[il] = order[last]
                sg[il] = sg[last]
                cur[il] = cur[last]
                u[il] = u[last]
                v[il] = v[last]
            m = last
        else:
            if not _border(h, inv, order, m, jj, z):
                return _FAIL, 0, order, inv  # the new atom is (numerically) in the span
            order[m] = jj
            sg[m] = jsign
            cur[m] = 0.0
            free[jj] = False
            # v = inv u gains slot jj: with z = inv_old h_A,jj (from _border), v += the
            # new column of the inverse times (u_jj - z^T u).
            u[m] = jsign if jj >= fixed else 0.0
            gamma = u[m]
            for i in range(m):
                gamma -= z[i] * u[i]
            v[m] = 0.0
            m += 1
            for i in range(m):
                v[i] += inv[i, m - 1] * gamma
    return _STEPS, 0, order, inv


@_jit
def _border(
    h: npt.NDArray[np.float64],
    inv: npt.NDArray[np.float64],
    order: npt.NDArray[np.int64],
    m: int,
    jj: int,
    z: npt.NDArray[np.float64],
) -> bool:
    """Grow ``inv[:m, :m] = h[order, order]^-1`` by slot ``jj`` (bordering); False if singular.

    The new column ``h[order, jj]`` is read once, from row ``jj`` (h is symmetric): read
    inside the product it cost m^2 loads from m different rows, the most expensive part
    of an event on a large working set.
    """
    q = h[jj, jj]
    sigma = q
    hj = h[jj]
    col = np.empty(m)
    for a in range(m):
        col[a] = hj[order[a]]
    for i in range(m):
        row = inv[i]
        acc = 0.0
        for a in range(m):
            acc += row[a] * col[a]
        z[i] = acc
        sigma -= col[i] * acc
    if not sigma > 1e-12 * q:
        return False
    for i in range(m):
        zi = z[i] / sigma
        for a in range(m):
            inv[i, a] += zi * z[a]
        inv[i, m] = -zi
        inv[m, i] = -zi
    inv[m, m] = 1.0 / sigma
    return True


@_jit
def _invert(
    h: npt.NDArray[np.float64], act: npt.NDArray[np.int64], m: int, inv: npt.NDArray[np.float64]
) -> bool:
    """``inv[:m, :m] = h[act, act]^-1`` by Cholesky; False if not positive definite.

    ``inv = L^-T L^-1``, both factors built row by row with contiguous inner loops (they
    vectorise; a column-by-column triangular solve does not): a resumed path inverts its
    active block, about 100 x 100 on correlated atoms, once per round.
    """
    chol = np.zeros((m, m))
    if not _cholesky(h, act, m, chol):
        return False
    li = np.zeros((m, m))  # L^-1, lower triangular
    for i in range(m):
        row = li[i]
        row[i] = 1.0
        for a in range(i):
            lia = chol[i, a]
            if lia != 0.0:
                ra = li[a]
                for j in range(a + 1):
                    row[j] -= lia * ra[j]
        dinv = 1.0 / chol[i, i]
        for j in range(i + 1):
            row[j] *= dinv
    for i in range(m):
        for j in range(m):
            inv[i, j] = 0.0
    for a in range(m):
        ra = li[a]
        for i in range(a + 1):
            x = ra[i]
            if x != 0.0:
                for j in range(a + 1):
                    inv[i, j] += x * ra[j]
    return True


@_jit
def _cholesky(
    h: npt.NDArray[np.float64],
    act: npt.NDArray[np.int64],
    m: int,
    chol: npt.NDArray[np.float64],
) -> bool:
    """Lower ``chol[:m, :m]`` with ``chol chol^T = h[act, act]``; False if not positive definite."""
    for i in range(m):
        hi = h[act[i]]
        for j in range(i + 1):
            s = hi[act[j]]
            for a in range(j):
                s -= chol[i, a] * chol[j, a]
            if i == j:
                if not s > 0.0:
                    return False
                chol[i, i] = np.sqrt(s)
            else:
                chol[i, j] = s / chol[j, j]
    return True


@_jit
def _chol_apply(
    chol: npt.NDArray[np.float64],
    m: int,
    rhs: npt.NDArray[np.float64],
    x: npt.NDArray[np.float64],
) -> None:
    """``x[:m] = (chol chol^T)^-1 rhs[:m]``."""
    for i in range(m):
        s = rhs[i]
        for a in range(i):
            s -= chol[i, a] * x[a]
        x[i] = s / chol[i, i]
    for i in range(m - 1, -1, -1):
        s = x[i]
        for a in range(i + 1, m):
            s -= chol[a, i] * x[a]
        x[i] = s / chol[i, i]


@_jit
def _cholesky_solve(
    h: npt.NDArray[np.float64],
    act: npt.NDArray[np.int64],
    m: int,
    rhs: npt.NDArray[np.float64],
    x: npt.NDArray[np.float64],
) -> bool:
    """``x[:m] = h[act, act]^-1 rhs[:m]`` by Cholesky; False if not positive definite."""
    chol = np.zeros((m, m))
    if not _cholesky(h, act, m, chol):
        return False
    _chol_apply(chol, m, rhs, x)
    return True


@_jit
def _end_point(
    h: npt.NDArray[np.float64],
    b: npt.NDArray[np.float64],
    l1: float,
    tol: float,
    order: npt.NDArray[np.int64],
    sg: npt.NDArray[np.float64],
    m: int,
    inv: npt.NDArray[np.float64],
    c: npt.NDArray[np.float64],
) -> int:
    """The final active system's solution, checked for optimality on all of b.

    First from the path's inverse ``inv[:m, :m]`` of the active block (two products and one
    step of refinement, about 3 m^2 operations); where that answer fails the check (the
    inverse, updated at every event, has drifted), solved afresh by Cholesky (m^3 / 6 and
    a gather of the block) and checked again. The check, not the method, certifies it.
    """
    rhs = np.empty(m)
    for i in range(m):
        rhs[i] = b[order[i]] - l1 * sg[i]
    x = _times(inv, rhs, m)
    res = rhs.copy()  # rhs - H_AA x, then one refinement step x += inv res
    for i in range(m):
        hi = h[order[i]]
        xi = x[i]
        for a in range(m):
            res[a] -= hi[order[a]] * xi
    x += _times(inv, res, m)
    if _optimal(h, b, l1, tol, order, sg, m, x, c, True):
        return OK
    if not _cholesky_solve(h, order, m, rhs, x):
        return _FAIL
    return OK if _optimal(h, b, l1, tol, order, sg, m, x, c, False) else _FAIL


@_jit
def _times(
    a: npt.NDArray[np.float64], v: npt.NDArray[np.float64], m: int
) -> npt.NDArray[np.float64]:
    """``a[:m, :m] @ v[:m]``, row by row (contiguous inner loops)."""
    out = np.empty(m)
    for i in range(m):
        row = a[i]
        acc = 0.0
        for j in range(m):
            acc += row[j] * v[j]
        out[i] = acc
    return out


@_jit
def _optimal(
    h: npt.NDArray[np.float64],
    b: npt.NDArray[np.float64],
    l1: float,
    tol: float,
    order: npt.NDArray[np.int64],
    sg: npt.NDArray[np.float64],
    m: int,
    x: npt.NDArray[np.float64],
    c: npt.NDArray[np.float64],
    stationary: bool,
) -> bool:
    """Whether ``c[order[:m]] = x`` (signs ``sg``, 0 elsewhere) is optimal to ``tol``; sets c.

    Every active coefficient must have its sign and every inactive one ``|(b - h c)_j| <=
    l1 + tol``; with ``stationary`` also ``|(b - h c)_j - l1 sg_j| <= tol`` on the active
    ones (an answer from the path's inverse; a Cholesky solve satisfies it by construction).
    """
    k = b.shape[0]
    for j in range(k):
        c[j] = 0.0
    for i in range(m):
        if not x[i] * sg[i] > 0.0:
            return False
        c[order[i]] = x[i]
    d = b.copy()  # b - h c, by rows of h (contiguous)
    for i in range(m):
        row = h[order[i]]
        xi = x[i]
        for j in range(k):
            d[j] -= xi * row[j]
    for i in range(m if stationary else 0):
        if abs(d[order[i]] - l1 * sg[i]) > tol:
            return False
    worst = 0.0  # the largest inactive correlation
    for j in range(k):
        if c[j] == 0.0:
            worst = max(worst, abs(d[j]))
    return worst <= l1 + tol


@_jit
def homotopy_ws(
    h: npt.NDArray[np.float64], b: npt.NDArray[np.float64], l1: float, tol: float, max_steps: int
) -> tuple[npt.NDArray[np.float64], int]:
    """Exact solution of one working-set system ``h`` (with the ridge on its diagonal).

    Returns ``(c, status)``; ``status != OK`` means no certified answer (use another path).
    """
    c = np.zeros(b.shape[0])
    status, _, _, _ = _homotopy(
        h, b, l1, tol, max_steps, c, 0, np.empty(0, np.int64), np.empty((0, 0))
    )
    return c, status


@_jit
def continue_round(
    h_old: npt.NDArray[np.float64],
    b_old: npt.NDArray[np.float64],
    c_old: npt.NDArray[np.float64],
    cross: npt.NDArray[Any],
    k: int,
    l1: float,
    l2: float,
    tol: float,
    carry_order: npt.NDArray[np.int64],
    carry_inv: npt.NDArray[np.float64],
) -> tuple[
    int,
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.int64],
    npt.NDArray[np.float64],
]:
    """One round of ``pace.solver._host_rounds`` for one row: grow the system, continue.

    ``h_old``/``b_old``/``c_old`` are the working-set system (ridge on the diagonal) and
    answer on the first ``k_old`` slots; ``cross`` (k - k_old, at least k + 1) holds the
    new slots' rows ``D_new [D_W; y]^T`` from the device: the first ``k`` columns against
    the working set, the last against ``y``. Returns ``(status, h, b, c, order, inv)``: the
    grown system, its answer (the path continued from ``c_old``, see ``_homotopy``) and
    the path state for the next round.
    """
    k_old = b_old.shape[0]
    m_new = k - k_old
    last = cross.shape[1] - 1
    h = np.empty((k, k))
    h[:k_old, :k_old] = h_old
    for i in range(m_new):
        row = cross[i]
        for a in range(k_old):
            x = float(row[a])
            h[k_old + i, a] = x
            h[a, k_old + i] = x
        for a in range(i + 1):  # the two products of a pair may round apart: average
            x = 0.5 * (float(row[k_old + a]) + float(cross[a, k_old + i]))
            h[k_old + i, k_old + a] = x
            h[k_old + a, k_old + i] = x
        h[k_old + i, k_old + i] += l2
    b = np.empty(k)
    c = np.zeros(k)
    b[:k_old] = b_old
    c[:k_old] = c_old
    for i in range(m_new):
        b[k_old + i] = float(cross[i, last])
    status, m, order, inv = _homotopy(h, b, l1, tol, 8 * k + 16, c, k_old, carry_order, carry_inv)
    return status, h, b, c, order[:m].copy(), inv


@_jit
def top_abs(r: npt.NDArray[Any], k: int) -> npt.NDArray[np.int64]:
    """Indices of the ``k`` entries of ``r`` largest in magnitude (unordered): a screen."""
    return _top(np.abs(r).astype(np.float64), min(k, r.shape[0]))


@_jit
def kkt_violators(
    g: npt.NDArray[Any], w: npt.NDArray[np.int64], bound: float, screen: int
) -> npt.NDArray[np.int64]:
    """The atoms that join ``w`` after a KKT pass ``g`` (n,): those outside it with
    ``|g_j| > bound``, the worst first when there are more than ``max(|w|, screen)`` (the
    working set at most doubles). Empty when the answer is optimal."""
    n = g.shape[0]
    score = np.empty(n)
    for j in range(n):
        score[j] = abs(float(g[j]))
    for a in range(w.shape[0]):
        score[w[a]] = 0.0
    viol = np.empty(n, np.int64)
    nv = 0
    for j in range(n):
        if score[j] > bound:
            viol[nv] = j
            nv += 1
    return _worst(viol[:nv].copy(), score, w.shape[0], screen)


@_jit
def _worst(
    viol: npt.NDArray[np.int64], score: npt.NDArray[np.float64], k: int, screen: int
) -> npt.NDArray[np.int64]:
    """The violators that join a working set of ``k`` atoms: all of ``viol``, or its
    ``max(k, screen)`` worst by ``score`` where there are more (the set at most doubles
    per round, or grows to the first screen's size)."""
    grow = min(viol.shape[0], max(k, screen))
    if grow == viol.shape[0]:
        return viol
    return viol[_top(score[viol], grow)]


@_jit
def _top(score: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.int64]:
    """Indices of the ``k`` largest entries of ``score`` (unordered).

    Hand-written: numba's ``np.argpartition`` alone takes half a minute to compile. A
    few (the screen: 16 of 2,000) are kept in one pass (``_top_few``); more by quickselect.
    """
    n = score.shape[0]
    if k <= 64 and k < n:
        return _top_few(score, k)
    idx = np.arange(n)
    if k >= n:
        return idx
    lo = 0
    hi = n - 1
    target = k - 1
    while lo < hi:
        pivot = score[idx[(lo + hi) // 2]]
        i = lo
        j = hi
        while i <= j:
            while score[idx[i]] > pivot:
                i += 1
            while score[idx[j]] < pivot:
                j -= 1
            if i <= j:
                t = idx[i]
                idx[i] = idx[j]
                idx[j] = t
                i += 1
                j -= 1
        # Now idx[lo..j] >= pivot >= idx[i..hi], and anything between equals the pivot.
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            break
    return idx[:k]


@_jit
def _top_few(score: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.int64]:
    """``_top`` for ``0 < k < n``, in one pass that keeps the ``k`` largest seen so far.

    Almost every entry only fails one comparison with the smallest kept value, a branch
    the CPU predicts; quickselect's partitioning branches on every entry and mispredicts
    about half of them (30 against 9 us on the same 2,000 scores, fresh ones each call).
    """
    n = score.shape[0]
    keep = np.empty(k, np.int64)
    kept = np.empty(k)
    lo = 0  # the slot of the smallest kept value
    for a in range(k):
        keep[a] = a
        kept[a] = score[a]
        if kept[a] < kept[lo]:
            lo = a
    thr = kept[lo]
    for j in range(k, n):
        x = score[j]
        if x > thr:
            keep[lo] = j
            kept[lo] = x
            lo = 0
            thr = kept[0]
            for a in range(1, k):
                if kept[a] < thr:
                    thr = kept[a]
                    lo = a
    return keep


@_jit
def _dot_row(atoms: npt.NDArray[np.float32], j: int, y64: npt.NDArray[np.float64]) -> float:
    """``atoms[j] . y`` accumulated in float64 (an exact correlation, on demand)."""
    row = atoms[j]
    s = 0.0
    for i in range(row.shape[0]):
        s += float(row[i]) * y64[i]
    return s


@_jit
def _exact_dots(
    atoms: npt.NDArray[np.float32],
    y64: npt.NDArray[np.float64],
    js: npt.NDArray[np.int64],
    r64: npt.NDArray[np.float64],
    known: npt.NDArray[np.bool_],
) -> None:
    """``r64[j] = _dot_row(atoms, j, y64)`` for each ``j`` in ``js``, marked known.

    Four rows at a time: the rows are scattered over the atoms and cold, and four
    streams keep more of their loads in flight than one.
    """
    d = atoms.shape[1]
    nj = js.shape[0]
    p = 0
    while p + 4 <= nj:
        j0, j1, j2, j3 = js[p], js[p + 1], js[p + 2], js[p + 3]
        a0, a1, a2, a3 = atoms[j0], atoms[j1], atoms[j2], atoms[j3]
        s0 = s1 = s2 = s3 = 0.0
        for i in range(d):
            yi = y64[i]
            s0 += float(a0[i]) * yi
            s1 += float(a1[i]) * yi
            s2 += float(a2[i]) * yi
            s3 += float(a3[i]) * yi
        r64[j0], r64[j1], r64[j2], r64[j3] = s0, s1, s2, s3
        p += 4
    while p < nj:
        r64[js[p]] = _dot_row(atoms, js[p], y64)
        p += 1
    for p in range(nj):
        known[js[p]] = True


@_jit
def _row_dots(
    atoms: npt.NDArray[np.float32], w: npt.NDArray[np.int64], i: int, h: npt.NDArray[np.float64]
) -> None:
    """Row and column ``i`` of the working-set Gram ``h`` up to the diagonal: the exact
    products of atom ``w[i]`` with atoms ``w[0..i]`` (where no Gram is cached)."""
    ai = atoms[w[i]].astype(np.float64)
    for a in range(i + 1):
        s = _dot_row(atoms, w[a], ai)
        h[i, a] = s
        h[a, i] = s


@_jit
def _combine(
    atoms: npt.NDArray[np.float32],
    w: npt.NDArray[np.int64],
    c: npt.NDArray[np.float64],
    act: npt.NDArray[np.int64],
    na: int,
    u64: npt.NDArray[np.float64],
    u32: npt.NDArray[np.float32],
) -> float:
    """``u = sum_a c[act[a]] atoms[w[act[a]]]`` into ``u64`` and, rounded, ``u32`` (what
    the int8 pass reads); returns a bound on both norms."""
    u64[:] = 0.0
    for a in range(na):
        ca = c[act[a]]
        row = atoms[w[act[a]]]
        for t in range(u64.shape[0]):
            u64[t] += ca * float(row[t])
    nrm2 = 0.0
    for t in range(u64.shape[0]):
        u32[t] = np.float32(u64[t])
        nrm2 += u64[t] * u64[t]
    return np.sqrt(nrm2) * (1.0 + 2.0**-23)


@_jit
def _solve_row(
    r64: npt.NDArray[np.float64],
    radius: float,
    pass_err: npt.NDArray[np.float64],
    q: npt.NDArray[np.int8],
    scale: npt.NDArray[np.float32],
    col: npt.NDArray[np.float32],
    y64: npt.NDArray[np.float64],
    atoms: npt.NDArray[np.float32],
    gram: npt.NDArray[Any],
    l1: float,
    l2: float,
    tol: float,
    screen: int,
    max_rounds: int,
    seed: npt.NDArray[np.int64],
    seed_on: npt.NDArray[np.bool_],
    out_idx: npt.NDArray[np.int64],
    out_val: npt.NDArray[np.float32],
) -> tuple[int, int]:
    """One row: returns ``(status, support size)``; the support goes into ``out_*``.

    ``r64`` is the screening pass ``D y``. Exact when ``pass_err`` is empty; otherwise a
    low-precision pass with ``|r64[j] - D_j y| <= pass_err[j] * radius``: then the exact
    ``D_j y`` (on the fp32 ``atoms``) replaces ``r64[j]`` for every atom that joins the
    working set (it enters the solution) and, once no other atom would join, for every
    atom whose KKT test the bound cannot decide: the answer is the one the exact pass gives.

    Without a Gram (``gram`` empty: too many atoms to cache one), the working-set system
    is built from exact dot products of the atoms' rows, and each KKT check is one more
    int8 pass (``q``, ``scale``, ``col``, the screening pass's codes) over
    ``u = D_W^T c_W``: ``g = r64 - pass(u)``, within ``pass_err[j] * ||u||`` more. Atoms
    that bound leaves undecided get ``g_j = D_j (y - u)`` exactly, as above.
    """
    n = r64.shape[0]
    approx = pass_err.shape[0] > 0
    nogram = gram.shape[0] == 0
    if nogram and not approx:
        return _NOGRAM, 0
    d = y64.shape[0]
    u64 = np.zeros(d if nogram else 0)
    u32 = np.empty(d if nogram else 0, np.float32)
    res64 = np.empty(d if nogram else 0)
    upass = np.empty(n if nogram else 0)
    scratch = np.zeros(n if nogram else 0, np.bool_)
    unorm = 0.0  # ||u|| of the last KKT pass (no Gram)
    u_ulp = 0.0
    max_err = 0.0
    for j in range(pass_err.shape[0]):
        max_err = max(max_err, pass_err[j])
    known = np.ones(n, np.bool_) if not approx else np.zeros(n, np.bool_)
    slack = max_err * radius  # the largest pass error: candidates are collected within it
    score = np.abs(r64)
    in_w = np.zeros(n, np.bool_)
    w = np.empty(n, np.int64)
    k = int(np.int64(0))
    for a in range(seed.shape[0]):
        j = seed[a]
        if seed_on[a] and not in_w[j]:
            in_w[j] = True
            w[k] = j
            k += 1
    for j in _top(score, min(n, screen)):
        if not in_w[j]:
            in_w[j] = True
            w[k] = j
            k += 1
    g = np.empty(n)
    viol = np.empty(n, np.int64)
    fresh = np.empty(n, np.int64)  # atoms joining the working set without an exact r64
    act = np.empty(n, np.int64)
    h = np.empty((0, 0))
    c = np.zeros(n)  # the working set's answer, by slot
    k_old = int(np.int64(0))
    carry_order = np.empty(0, np.int64)  # the path's active slots and their inverse
    carry_inv = np.empty((0, 0))
    for _ in range(max_rounds):
        # The working-set system, grown from the previous round's (the Gram is
        # symmetric: one triangle is read).
        nu = 0
        for i in range(k_old, k):
            if not known[w[i]]:
                fresh[nu] = w[i]
                nu += 1
        _exact_dots(atoms, y64, fresh[:nu], r64, known)
        h_new = np.empty((k, k))
        h_new[:k_old, :k_old] = h
        for i in range(k_old, k):
            if nogram:
                _row_dots(atoms, w, i, h_new)
            else:
                gi = gram[w[i]]
                for a in range(i + 1):
                    x = float(gi[w[a]])
                    h_new[i, a] = x
                    h_new[a, i] = x
            h_new[i, i] += l2
        h = h_new
        bw = r64[w[:k]]
        # (Primal-dual active-set steps from an earlier token's answer were tried here: on
        # these correlated atoms they mostly cycle; seeding the working set is what helps.)
        # Later rounds continue from the previous answer: only the new atoms' weight moves
        # (see _homotopy), so the path is not walked again from the top.
        status, m, order, inv = _homotopy(
            h, bw, l1, tol, 8 * k + 16, c[:k], k_old, carry_order, carry_inv
        )
        if status != OK:
            return status, 0
        carry_order = order[:m]
        carry_inv = inv
        k_old = k
        done = k >= n
        if not done:
            # KKT on every atom: g = D (y - D_W^T c_W) = r - c_W G_W.
            na = 0
            for i in range(k):
                if c[i] != 0.0:
                    act[na] = i
                    na += 1
            for j in range(n):
                g[j] = r64[j]
            a = na if nogram else 0
            if nogram:
                # g = r - D u with u = D_W^T c_W, the product by one more int8 pass.
                unorm = _combine(atoms, w, c, act, na, u64, u32)
                u_ulp = unorm * 2.0**-24  # |D_j (u - u32)|: u rounded to float32
                _pass_lowp(q, scale, col, u32, upass)
                for j in range(n):
                    g[j] -= upass[j]
                slack = max_err * (radius + unorm) + u_ulp
            while a + 8 <= na:  # eight Gram rows per pass over g
                c0, c1, c2, c3 = c[act[a]], c[act[a + 1]], c[act[a + 2]], c[act[a + 3]]
                c4, c5, c6, c7 = c[act[a + 4]], c[act[a + 5]], c[act[a + 6]], c[act[a + 7]]
                g0, g1 = gram[w[act[a]]], gram[w[act[a + 1]]]
                g2, g3 = gram[w[act[a + 2]]], gram[w[act[a + 3]]]
                g4, g5 = gram[w[act[a + 4]]], gram[w[act[a + 5]]]
                g6, g7 = gram[w[act[a + 6]]], gram[w[act[a + 7]]]
                for j in range(n):
                    g[j] -= (
                        c0 * float(g0[j])
                        + c1 * float(g1[j])
                        + c2 * float(g2[j])
                        + c3 * float(g3[j])
                        + c4 * float(g4[j])
                        + c5 * float(g5[j])
                        + c6 * float(g6[j])
                        + c7 * float(g7[j])
                    )
                a += 8
            while a + 4 <= na:  # four Gram rows per pass over g
                c0, c1, c2, c3 = c[act[a]], c[act[a + 1]], c[act[a + 2]], c[act[a + 3]]
                g0, g1 = gram[w[act[a]]], gram[w[act[a + 1]]]
                g2, g3 = gram[w[act[a + 2]]], gram[w[act[a + 3]]]
                for j in range(n):
                    g[j] -= (
                        c0 * float(g0[j])
                        + c1 * float(g1[j])
                        + c2 * float(g2[j])
                        + c3 * float(g3[j])
                    )
                a += 4
            while a < na:
                ci = c[act[a]]
                gi = gram[w[act[a]]]
                for j in range(n):
                    g[j] -= ci * float(gi[j])
                a += 1
            nviol = 0
            thr = l1 + tol
            for j in range(n):
                sj = 0.0 if in_w[j] else abs(g[j])
                score[j] = sj
                if sj > thr - slack:
                    viol[nviol] = j
                    nviol += 1
            if approx:
                # The pass's error bound decides most atoms. Of the others, those the pass
                # puts above the threshold join the working set anyway (joining, an atom
                # gets its exact correlation; if it is no violator it only costs a slot).
                # Those it puts below need their exact correlation, but only once nothing
                # else joins: until then they are looked at again next round.
                cand = nviol
                nviol = 0
                nund = 0
                for p in range(cand):
                    j = viol[p]
                    if in_w[j]:
                        continue  # a candidate only because the slack exceeds thr
                    if score[j] > thr:
                        viol[nviol] = j
                        nviol += 1
                    elif nogram:
                        # Here every atom's g has the error of the pass over u.
                        bound = pass_err[j] * ((0.0 if known[j] else radius) + unorm) + u_ulp
                        if score[j] + bound > thr:
                            fresh[nund] = j
                            nund += 1
                    elif not known[j] and score[j] + pass_err[j] * radius > thr:
                        fresh[nund] = j  # free until the next round starts
                        nund += 1
                if nviol == 0 and nund > 0 and nogram:
                    # g_j = D_j (y - u), exactly, for the atoms the bound leaves open.
                    for i in range(d):
                        res64[i] = y64[i] - u64[i]
                    _exact_dots(atoms, res64, fresh[:nund], g, scratch)
                    for p in range(nund):
                        j = fresh[p]
                        score[j] = abs(g[j])
                        if score[j] > thr:
                            viol[nviol] = j
                            nviol += 1
                elif nviol == 0 and nund > 0:
                    for p in range(nund):
                        g[fresh[p]] -= r64[fresh[p]]  # keep the Gram part of g
                    _exact_dots(atoms, y64, fresh[:nund], r64, known)
                    for p in range(nund):
                        j = fresh[p]
                        g[j] += r64[j]
                        score[j] = abs(g[j])
                        if score[j] > thr:
                            viol[nviol] = j
                            nviol += 1
            done = nviol == 0
        if done:
            nnz = 0
            for i in range(k):
                if c[i] != 0.0:
                    out_idx[nnz] = w[i]
                    out_val[nnz] = c[i]
                    nnz += 1
            return OK, nnz
        chosen = _worst(viol[:nviol], score, k, screen)
        for p in range(chosen.shape[0]):
            j = chosen[p]
            in_w[j] = True
            w[k] = j
            k += 1
    return _ROUNDS, 0


@_jit
def solve_gram_rows(
    r: npt.NDArray[Any],
    gram: npt.NDArray[Any],
    l1: float,
    l2: float,
    tol: float,
    screen: int,
    max_rounds: int,
    seed_idx: npt.NDArray[np.int64],
    seed_on: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], int]:
    """Solve every row of ``r = Y D^T`` (b, n) exactly with the cached Gram (n, n).

    Row ``i`` starts from the working set ``seed_idx[i][seed_on[i]]`` (an earlier
    support; ``seed_*`` may have no columns) plus the ``screen`` atoms most correlated
    with ``y``.

    Returns ``(indices, values, status)``: (b, k) arrays holding each row's support,
    padded with the row's first index (or 0) and value 0; ``status != OK`` if any row
    failed (then the arrays are meaningless).
    """
    bsz, n = r.shape
    idx = np.empty((bsz, n), np.int64)
    val = np.empty((bsz, n), np.float32)
    counts = np.zeros(bsz, np.int64)
    status = np.zeros(1, np.int64)
    solve_gram_rows_shared(
        r, gram, l1, l2, tol, screen, max_rounds, seed_idx, seed_on,
        np.zeros(1, np.int64), idx, val, counts, status,
    )  # fmt: skip
    return rows_result(idx, val, counts, status)


@_jit
def rows_result(
    idx: npt.NDArray[np.int64],
    val: npt.NDArray[np.float32],
    counts: npt.NDArray[np.int64],
    status: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], int]:
    """``solve_gram_rows``' result from ``solve_gram_rows_shared``'s outputs: the compact
    supports, or empty arrays and the failed status."""
    if status[0] != OK:
        return idx[:, :0], val[:, :0], int(status[0])
    return _compact(idx, val, counts)


ROWS_PER_CLAIM = 2
"""Rows a thread of ``solve_gram_rows_shared`` claims at a time: rows cost very differently
(a few path events or a hundred), so they are not dealt out in advance."""


@_jit
def solve_gram_rows_shared(
    r: npt.NDArray[Any],
    gram: npt.NDArray[Any],
    l1: float,
    l2: float,
    tol: float,
    screen: int,
    max_rounds: int,
    seed_idx: npt.NDArray[np.int64],
    seed_on: npt.NDArray[np.bool_],
    next_row: npt.NDArray[np.int64],
    idx: npt.NDArray[np.int64],
    val: npt.NDArray[np.float32],
    counts: npt.NDArray[np.int64],
    status: npt.NDArray[np.int64],
) -> None:
    """``solve_gram_rows``' work, shared by every thread that calls this at once.

    Each call claims ``ROWS_PER_CLAIM`` rows at a time from the counter ``next_row[0]``
    (an atomic add) until none are left, and writes row ``i``'s support into ``idx[i]``,
    ``val[i]`` (both (b, n)) and its size into ``counts[i]``. A failed row sets
    ``status[0]`` (zero on entry) and the others stop claiming. No thread needs the
    interpreter meanwhile: a waiting thread would sleep, and on a shared machine a
    sleeping CPU may not come back soon (``pace.solver._parallel``).
    """
    bsz = r.shape[0]
    no_err = np.empty(0)
    no_y = np.empty(0)
    no_atoms = np.empty((0, 0), np.float32)
    no_q = np.empty((0, 0), np.int8)
    no_f32 = np.empty(0, np.float32)
    while status[0] == OK:
        start = _fetch_add(next_row, ROWS_PER_CLAIM)
        if start >= bsz:
            break
        for i in range(start, min(start + ROWS_PER_CLAIM, bsz)):
            st, nnz = _solve_row(
                r[i].astype(np.float64), 0.0, no_err, no_q, no_f32, no_f32, no_y, no_atoms,
                gram, l1, l2, tol, screen, max_rounds, seed_idx[i], seed_on[i], idx[i], val[i],
            )  # fmt: skip
            if st != OK:
                status[0] = st
                break
            counts[i] = nnz


@_jit
def _pass_lowp(
    q: npt.NDArray[np.int8],
    scale: npt.NDArray[np.float32],
    col: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    out: npt.NDArray[np.float64],
) -> None:
    """``out[j] = scale[j] * (q[j] . (col * y))``: the screening pass over int8 atoms.

    A quarter of the fp32 atoms' bytes (``pace.solver._screen``). Eight rows a step, one
    from each eighth of ``q``: eight sequential streams keep more loads in flight than
    one, and a cold pass (the case in generation, where the model's weights evict the
    atoms between two calls) is bound by memory, not arithmetic (``bench/solver_pass.py``).
    """
    n, d = q.shape
    yc = np.empty(d, np.float32)
    for i in range(d):
        yc[i] = col[i] * y[i]
    h = n // 8
    for t in range(h):
        r0, r1, r2, r3 = q[t], q[t + h], q[t + 2 * h], q[t + 3 * h]
        r4, r5, r6, r7 = q[t + 4 * h], q[t + 5 * h], q[t + 6 * h], q[t + 7 * h]
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.float32(0.0)
        for i in range(d):
            yi = yc[i]
            s0 += np.float32(r0[i]) * yi
            s1 += np.float32(r1[i]) * yi
            s2 += np.float32(r2[i]) * yi
            s3 += np.float32(r3[i]) * yi
            s4 += np.float32(r4[i]) * yi
            s5 += np.float32(r5[i]) * yi
            s6 += np.float32(r6[i]) * yi
            s7 += np.float32(r7[i]) * yi
        for a, s in enumerate((s0, s1, s2, s3, s4, s5, s6, s7)):
            out[t + a * h] = float(s * scale[t + a * h])
    for j in range(8 * h, n):
        row = q[j]
        s = np.float32(0.0)
        for i in range(d):
            s += np.float32(row[i]) * yc[i]
        out[j] = float(s * scale[j])


@_jit
def _solve_lowp_row(
    y32: npt.NDArray[np.float32],
    q: npt.NDArray[np.int8],
    scale: npt.NDArray[np.float32],
    col: npt.NDArray[np.float32],
    pass_err: npt.NDArray[np.float64],
    atoms: npt.NDArray[np.float32],
    gram: npt.NDArray[Any],
    l1: float,
    l2: float,
    tol: float,
    screen: int,
    max_rounds: int,
    seed: npt.NDArray[np.int64],
    seed_on: npt.NDArray[np.bool_],
    out_idx: npt.NDArray[np.int64],
    out_val: npt.NDArray[np.float32],
) -> tuple[int, int]:
    """``_solve_row`` for one row ``y32`` (d,), screened by its int8 pass."""
    y64 = y32.astype(np.float64)
    radius = np.sqrt(np.sum(y64 * y64))
    r64 = np.empty(q.shape[0])
    _pass_lowp(q, scale, col, y32, r64)
    status, nnz = _solve_row(
        r64, radius, pass_err, q, scale, col, y64, atoms, gram, l1, l2, tol, screen,
        max_rounds, seed, seed_on, out_idx, out_val,
    )  # fmt: skip
    return status, nnz


@_jit
def solve_lowp_rows(
    y: npt.NDArray[np.float32],
    q: npt.NDArray[np.int8],
    scale: npt.NDArray[np.float32],
    col: npt.NDArray[np.float32],
    pass_err: npt.NDArray[np.float64],
    atoms: npt.NDArray[np.float32],
    gram: npt.NDArray[Any],
    l1: float,
    l2: float,
    tol: float,
    screen: int,
    max_rounds: int,
    seed_idx: npt.NDArray[np.int64],
    seed_on: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], int]:
    """``solve_gram_rows`` for rows ``y`` (b, d), screened by an int8 pass.

    ``scale[:, None] * q * col`` approximates the fp32 ``atoms`` with ``|D_j y - pass_j| <=
    pass_err[j] * ||y||`` (``pace.solver._screen``); every value that enters the answer or
    decides a KKT test is exact (see ``_solve_row``). Same results layout and status.
    """
    bsz = y.shape[0]
    n = q.shape[0]
    idx = np.empty((bsz, n), np.int64)
    val = np.empty((bsz, n), np.float32)
    counts = np.zeros(bsz, np.int64)
    status = np.zeros(1, np.int64)
    solve_lowp_rows_shared(
        y, q, scale, col, pass_err, atoms, gram, l1, l2, tol, screen, max_rounds, seed_idx,
        seed_on, np.zeros(1, np.int64), idx, val, counts, status,
    )  # fmt: skip
    return rows_result(idx, val, counts, status)


@_jit
def solve_lowp_rows_shared(
    y: npt.NDArray[np.float32],
    q: npt.NDArray[np.int8],
    scale: npt.NDArray[np.float32],
    col: npt.NDArray[np.float32],
    pass_err: npt.NDArray[np.float64],
    atoms: npt.NDArray[np.float32],
    gram: npt.NDArray[Any],
    l1: float,
    l2: float,
    tol: float,
    screen: int,
    max_rounds: int,
    seed_idx: npt.NDArray[np.int64],
    seed_on: npt.NDArray[np.bool_],
    next_row: npt.NDArray[np.int64],
    idx: npt.NDArray[np.int64],
    val: npt.NDArray[np.float32],
    counts: npt.NDArray[np.int64],
    status: npt.NDArray[np.int64],
) -> None:
    """``solve_lowp_rows``' work shared by every thread that calls this at once, rows
    claimed as in ``solve_gram_rows_shared`` (a batch of rows where no Gram is cached)."""
    bsz = y.shape[0]
    while status[0] == OK:
        start = _fetch_add(next_row, ROWS_PER_CLAIM)
        if start >= bsz:
            break
        for i in range(start, min(start + ROWS_PER_CLAIM, bsz)):
            st, nnz = _solve_lowp_row(
                np.ascontiguousarray(y[i]), q, scale, col, pass_err, atoms, gram, l1, l2, tol,
                screen, max_rounds, seed_idx[i], seed_on[i], idx[i], val[i],
            )  # fmt: skip
            if st != OK:
                status[0] = st
                break
            counts[i] = nnz


@_jit
def _compact(
    idx: npt.NDArray[np.int64], val: npt.NDArray[np.float32], counts: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], int]:
    """Rows' supports (``counts[i]`` leading entries) as (b, k), padded (see above)."""
    bsz = idx.shape[0]
    kmax = max(1, counts.max())
    out_idx = np.empty((bsz, kmax), np.int64)
    out_val = np.zeros((bsz, kmax), np.float32)
    for i in range(bsz):
        nnz = counts[i]
        pad = idx[i, 0] if nnz > 0 else 0
        for a in range(kmax):
            if a < nnz:
                out_idx[i, a] = idx[i, a]
                out_val[i, a] = val[i, a]
            else:
                out_idx[i, a] = pad
    return out_idx, out_val, OK


_NONFINITE = 4  # the input row has a NaN or an infinity


@_jit
def remove_row_lowp(
    z: npt.NDArray[np.float32],
    q: npt.NDArray[np.int8],
    scale: npt.NDArray[np.float32],
    col: npt.NDArray[np.float32],
    pass_err: npt.NDArray[np.float64],
    atoms: npt.NDArray[np.float32],
    gram: npt.NDArray[Any],
    l1: float,
    l2: float,
    tol: float,
    screen: int,
    max_rounds: int,
    pos: npt.NDArray[np.int64],
    d_u: npt.NDArray[np.float32],
    c_u: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
) -> tuple[int, bool]:
    """PaCE's removal for one activation ``z`` (d,), fused: normalise, solve, remove.

    ``y = z / ||z||`` is solved as in ``solve_lowp_rows``; ``c_u[pos[j]]`` gets the
    coefficient of every undesirable atom ``j`` (``pos[j] >= 0``) of the support, and
    ``out = z - ||z|| c_u @ d_u``. One compiled call per decode step and layer: in
    generation the model's forward leaves every cache cold, and each separate NumPy or
    torch call on the way costs tens of microseconds of misses.

    Returns ``(status, changed)``: ``status`` is OK, ``_NONFINITE`` (``z`` has a NaN or an
    infinity) or a kernel failure (take the general path); ``changed`` is False when no
    undesirable atom is active (then ``out`` is not written and ``z`` stands).
    """
    d = z.shape[0]
    nrm2 = 0.0
    for i in range(d):
        nrm2 += float(z[i]) * float(z[i])
    if not np.isfinite(nrm2):
        return _NONFINITE, False
    norm = np.float32(np.sqrt(nrm2))
    y32 = z / max(norm, np.float32(1e-12))
    n = q.shape[0]
    idx = np.empty(n, np.int64)
    val = np.empty(n, np.float32)
    status, nnz = _solve_lowp_row(
        y32, q, scale, col, pass_err, atoms, gram, l1, l2, tol, screen, max_rounds,
        np.empty(0, np.int64), np.empty(0, np.bool_), idx, val,
    )  # fmt: skip
    if status != OK:
        return status, False
    changed = False
    for a in range(nnz):
        p = pos[idx[a]]
        if p >= 0 and val[a] != 0.0:
            c_u[p] += val[a]
            changed = True
    if changed:
        for i in range(d):
            out[i] = z[i]
        for p in range(c_u.shape[0]):
            if c_u[p] != 0.0:
                w = norm * c_u[p]
                row = d_u[p]
                for i in range(d):
                    out[i] -= w * row[i]
    return OK, changed


@_jit
def remove_token_lowp(
    z: npt.NDArray[np.float32],
    q: npt.NDArray[np.int8],
    scale: npt.NDArray[np.float32],
    col: npt.NDArray[np.float32],
    pass_err: npt.NDArray[np.float64],
    atoms: npt.NDArray[np.float32],
    gram: npt.NDArray[Any],
    l1: float,
    l2: float,
    tol: float,
    screen: int,
    max_rounds: int,
    pos: npt.NDArray[np.int64],
    d_u: npt.NDArray[np.float32],
    c_u: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
) -> tuple[int, bool]:
    """``remove_row_lowp`` on a decode step's (1, 1, d) hidden state as the model made it.

    ``out`` is (1, 1, d) and ``c_u`` (1, 1, n_u), zeroed here, or empty when the caller
    wants no coefficients: the hook hands the layer's output over without a reshape or a
    copy on the way in or out. Each of those is a separate torch or NumPy call, and in
    generation, where the model's forward leaves the interpreter's and the libraries'
    caches cold, each costs 10-25 us (about 145 us of a decode edit went there).
    """
    coef = c_u[0, 0] if c_u.size > 0 else np.empty(d_u.shape[0], np.float32)
    coef[:] = 0.0
    return remove_row_lowp(
        z[0, 0], q, scale, col, pass_err, atoms, gram, l1, l2, tol, screen, max_rounds,
        pos, d_u, coef, out[0, 0],
    )  # fmt: skip
