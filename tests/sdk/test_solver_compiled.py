"""The compiled (numba) CPU kernels: their building blocks, and the fallback around them."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from pace.solver import (
    ElasticNet,
    ElasticNetConfig,
    _compiled,
    _elastic_net,
    _parallel,
    kkt_violation,
)
from pace.solver._single import homotopy_np

pytestmark = pytest.mark.skipif(not _compiled.AVAILABLE, reason="numba is not installed")


def _spy_kernel_statuses(
    monkeypatch: pytest.MonkeyPatch, kernel: str = "solve_gram_rows_threaded"
) -> list[int]:
    """Wrap the compiled row kernel the solver calls; the list gets each call's status.

    ``solve_gram_rows_threaded`` or ``solve_lowp_rows_threaded`` (the rows of a prefill,
    on one or more threads) as the solver imports it, or a kernel of ``_compiled`` such as
    ``solve_lowp_rows``.
    """
    calls: list[int] = []
    owner = _elastic_net if kernel.endswith("_threaded") else _compiled
    real = getattr(owner, kernel)

    def spy(*args: object) -> tuple[np.ndarray, np.ndarray, int]:
        out: tuple[np.ndarray, np.ndarray, int] = real(*args)
        calls.append(out[2])
        return out

    monkeypatch.setattr(owner, kernel, spy)
    return calls


def _problem(k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A working-set system ``H = A A^T + l2 I`` of correlated unit atoms, and ``b = A y``."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, 40)) + 2.0 * rng.standard_normal(40)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    y = a[:3].T @ rng.standard_normal(3) + 0.05 * rng.standard_normal(40)
    h = a @ a.T + 0.0025 * np.eye(k)
    return h, a @ (y / np.linalg.norm(y))


@pytest.mark.parametrize("seed", range(5))
def test_homotopy_ws_is_optimal_and_agrees_with_numpy(seed: int) -> None:
    h, b = _problem(60, seed)
    l1 = 0.0475
    c, status = _compiled.homotopy_ws(h, b, l1, 1e-9, 8 * 60 + 16)
    assert status == _compiled.OK
    d = b - h @ c
    on = c != 0
    assert on.any()
    np.testing.assert_allclose(d[on], l1 * np.sign(c[on]), atol=1e-9)
    assert np.abs(d[~on]).max() <= l1 + 1e-9
    ref = homotopy_np(h, b, l1, max_steps=8 * 60 + 16, tol=1e-9)
    assert ref is not None
    np.testing.assert_allclose(c, ref, atol=1e-10)


@pytest.mark.parametrize("drift", ["exact", "drifted", "garbage"])
def test_end_point_from_the_path_inverse_or_afresh(drift: str) -> None:
    """The end point comes from the path's inverse of the active block when that answer
    passes the optimality check, else from a fresh Cholesky solve: either way it is the
    exact solution, so a drifted (or useless) inverse costs time, never the answer."""
    h, b = _problem(60, 7)
    l1 = 0.0475
    want, status = _compiled.homotopy_ws(h, b, l1, 1e-9, 8 * 60 + 16)
    assert status == _compiled.OK
    order = np.flatnonzero(want)
    m = order.size
    assert m >= 3
    sg = np.sign(want[order])
    inv = np.zeros((60, 60))
    inv[:m, :m] = np.linalg.inv(h[np.ix_(order, order)])
    if drift == "drifted":
        inv[:m, :m] += 1e-3 * np.random.default_rng(0).standard_normal((m, m))
    elif drift == "garbage":
        inv[:m, :m] = np.eye(m)
    c = np.full(60, 7.0)  # stale values must not survive
    status = _compiled._end_point(h, b, l1, 1e-9, order.astype(np.int64), sg, m, inv, c)
    assert status == _compiled.OK
    np.testing.assert_allclose(c, want, atol=1e-10)
    assert np.all(c[np.setdiff1d(np.arange(60), order)] == 0.0)


# k <= 64 (below n) keeps the k largest in one pass; larger k, quickselect.
@pytest.mark.parametrize(
    ("n", "k"), [(1, 1), (7, 3), (2000, 16), (2000, 32), (65, 64), (500, 65), (500, 499), (50, 50)]
)
def test_top_selects_the_largest(n: int, k: int) -> None:
    rng = np.random.default_rng(n + k)
    score = np.round(rng.random(n) * 20) / 20  # many ties
    got = _compiled._top(score, k)
    assert got.shape == (k,) and len(set(got.tolist())) == k
    np.testing.assert_array_equal(np.sort(score[got]), np.sort(score)[n - k :])
    rising = np.arange(n, dtype=np.float64)  # every entry displaces a kept one
    np.testing.assert_array_equal(np.sort(_compiled._top(rising, k)), np.arange(n - k, n))


def _atoms(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 3.0 * torch.randn(d, generator=g) + 0.7 * torch.randn(n, d, generator=g)


def test_kernel_failure_falls_back_to_the_numpy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    atoms = _atoms(300, 48, seed=1)
    y = torch.randn(3, 48, generator=torch.Generator().manual_seed(2))
    y = y / y.norm(dim=1, keepdim=True)
    expected = ElasticNet(atoms, config=ElasticNetConfig(compiled=False)).solve(y)
    calls: list[int] = []
    real = _elastic_net.solve_gram_rows_threaded

    def failing(*args: object) -> tuple[np.ndarray, np.ndarray, int]:
        calls.append(1)
        idx, val, _ = real(*args)
        return idx, val, _compiled.OK + 1

    monkeypatch.setattr(_elastic_net, "solve_gram_rows_threaded", failing)
    got = ElasticNet(atoms).solve(y)
    assert calls, "the compiled kernel was not tried"
    torch.testing.assert_close(got, expected)


def test_compiled_kernel_runs_and_is_optimal(monkeypatch: pytest.MonkeyPatch) -> None:
    atoms = _atoms(500, 64, seed=3)
    y = torch.randn(4, 64, generator=torch.Generator().manual_seed(4))
    y = y / y.norm(dim=1, keepdim=True)
    calls = _spy_kernel_statuses(monkeypatch)
    solver = ElasticNet(atoms, config=ElasticNetConfig(screen_size=4))  # several rounds
    idx, val = solver.solve_sparse(y)
    # Solved by the kernel itself, not by the fallback (which would hide a kernel bug).
    assert calls == [_compiled.OK]
    assert bool((val != 0).all(dim=1).any())  # compact: supports, not working sets
    c = torch.zeros(4, 500).scatter_add_(1, idx, val)
    assert float(kkt_violation(solver.atoms, y, c, alpha=0.05, tau=0.95).max()) <= 1e-5
    reference = ElasticNet(atoms, config=ElasticNetConfig(compiled=False)).solve(y)
    torch.testing.assert_close(c, reference, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("screen_size", [1, 3, 8, 32])
def test_continued_paths_match_the_numpy_path(screen_size: int) -> None:
    # Small screens force several rounds, each continuing from the previous round's answer
    # with only the new atoms' weight moving; the answers must equal the NumPy path's
    # (fresh paths).
    atoms = _atoms(800, 96, seed=5)
    g = torch.Generator().manual_seed(6)
    idx = torch.randint(0, 800, (12, 10), generator=g)
    y = (torch.randn(12, 10, 1, generator=g) * atoms[idx]).sum(1)
    y = y + 0.1 * y.norm(dim=1, keepdim=True) * torch.randn(12, 96, generator=g) / 96**0.5
    y = y / y.norm(dim=1, keepdim=True)
    config = ElasticNetConfig(alpha=0.02, screen_size=screen_size)
    solver = ElasticNet(atoms, config=config)
    r = (y @ solver.atoms.T).numpy()
    gram = (solver.atoms @ solver.atoms.T).numpy()
    no_seeds = np.zeros((12, 0), np.int64), np.zeros((12, 0), np.bool_)
    cfg = solver.config
    status = _compiled.solve_gram_rows(
        r, gram, cfg.l1, cfg.l2, cfg.tol, screen_size, cfg.max_iter, *no_seeds
    )[2]
    assert status == _compiled.OK  # the kernel itself succeeds (no silent fallback)
    got = solver.solve(y)
    ref = ElasticNet(atoms, config=ElasticNetConfig(alpha=0.02, compiled=False)).solve(y)
    assert int((got != 0).sum(1).min()) >= 3  # real supports, not trivial answers
    assert torch.equal(got != 0, ref != 0)
    torch.testing.assert_close(got, ref, atol=2e-6, rtol=1e-5)
    assert float(kkt_violation(solver.atoms, y, got, alpha=0.02, tau=0.95).max()) <= 1e-5


def test_warm_started_rows_that_need_more_rounds() -> None:
    # The next token's activations, warm-started from this token's answers: PDAS may
    # settle the first round, and later rounds must then start their paths afresh.
    atoms = _atoms(2000, 96, seed=7)
    g = torch.Generator().manual_seed(8)
    idx = torch.randint(0, 2000, (24, 8), generator=g)
    y = (torch.randn(24, 8, 1, generator=g) * atoms[idx]).sum(1)
    y = y / y.norm(dim=1, keepdim=True)
    y_next = y + 0.3 * torch.randn(y.shape, generator=g) / 96**0.5
    y_next = y_next / y_next.norm(dim=1, keepdim=True)
    solver = ElasticNet(atoms, config=ElasticNetConfig(screen_size=4))
    warm = solver.solve(y_next, warm_start=solver.solve_sparse(y))
    cold = ElasticNet(atoms, config=ElasticNetConfig(compiled=False)).solve(y_next)
    assert torch.equal(warm != 0, cold != 0)
    torch.testing.assert_close(warm, cold, atol=2e-6, rtol=1e-5)


def test_rows_split_over_threads_match_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # A prefill's rows are shared by several threads, each making one call that claims
    # rows until none are left; the answer (row order, padding) must be the
    # single-threaded one.
    atoms = _atoms(400, 48, seed=5)
    y = torch.randn(7, 48, generator=torch.Generator().manual_seed(6))
    solver = ElasticNet(atoms, config=ElasticNetConfig(screen_size=4))
    real = _compiled.solve_gram_rows_shared
    callers: list[int] = []

    def spy(*args: object) -> None:
        callers.append(threading.get_ident())
        real(*args)

    monkeypatch.setattr(_compiled, "solve_gram_rows_shared", spy)
    # The product r = Y D^T comes from torch on its current threads, and BLAS may sum in
    # another order with another thread count (MKL on AMD EPYC does: 1e-4 apart here,
    # on correlated atoms). So the thread counts are compared on one r, as a prefill
    # passes it to the kernel.
    r = (y @ solver.atoms.T).numpy()
    assert solver._kernel_args is not None and solver._gram_np is not None
    args = (r, solver._gram_np, solver._kernel_args, np.zeros((7, 0), np.int64))
    no_seeds = np.zeros((7, 0), np.bool_)
    one = _parallel.solve_gram_rows_threaded(*args, no_seeds, 1)
    assert callers == []  # one thread: the plain kernel
    three = _parallel.solve_gram_rows_threaded(*args, no_seeds, 3)
    assert len(callers) == 3 and len(set(callers)) == 3  # one call on each thread
    assert one[2] == three[2] == _compiled.OK
    assert np.array_equal(one[0], three[0]) and np.array_equal(one[1], three[1])
    # Through the solver, at one thread count: the sparse and the dense answers agree.
    dense = solver.solve(y)
    idx, val = solver.solve_sparse(y)
    assert torch.equal(torch.zeros(7, 400).scatter_add_(1, idx, val), dense)


def _prefill_rows(solver: ElasticNet, rows: int, seed: int) -> np.ndarray:
    """``r = Y D^T`` (float32, as a prefill passes it) for ``rows`` random unit rows."""
    g = torch.Generator().manual_seed(seed)
    y = torch.nn.functional.normalize(torch.randn(rows, solver.d, generator=g))
    return np.ascontiguousarray((y @ solver.atoms.T).numpy(), dtype=np.float32)


class _SharedCall:
    """The output arrays and the arguments of ``solve_gram_rows_shared`` over ``r``."""

    def __init__(self, solver: ElasticNet, r: np.ndarray) -> None:
        assert solver._kernel_args is not None
        bsz, n = r.shape
        self.next_row = np.zeros(1, np.int64)
        self.idx = np.empty((bsz, n), np.int64)
        self.val = np.empty((bsz, n), np.float32)
        self.counts = np.zeros(bsz, np.int64)
        self.status = np.zeros(1, np.int64)
        self.seeds = np.zeros((bsz, 0), np.int64), np.zeros((bsz, 0), np.bool_)
        head = (r, solver._gram_np, *solver._kernel_args, *self.seeds)
        self.args = (*head, self.next_row, self.idx, self.val, self.counts, self.status)


def test_shared_rows_are_claimed_once_each_by_concurrent_calls() -> None:
    # Calls running at once (the kernel releases the GIL) take rows from one atomic
    # counter: every row is solved by exactly one of them, and the counter ends at one
    # claim past the rows for each call (a lost update would leave it short).
    solver = ElasticNet(_atoms(300, 32, seed=8))
    r = _prefill_rows(solver, 301, seed=9)
    call = _SharedCall(solver, r)
    assert solver._kernel_args is not None
    want = _compiled.solve_gram_rows(r, solver._gram_np, *solver._kernel_args, *call.seeds)
    threads = [threading.Thread(target=_compiled.solve_gram_rows_shared, args=call.args)
               for _ in range(4)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claims = _compiled.ROWS_PER_CLAIM
    assert call.status[0] == _compiled.OK
    assert call.next_row[0] == ((301 + claims - 1) // claims + 4) * claims
    got_idx, got_val, _ = _compiled._compact(call.idx, call.val, call.counts)
    assert np.array_equal(got_idx, want[0]) and np.array_equal(got_val, want[1])


def test_a_shared_call_starts_at_the_counter() -> None:
    # Rows before the counter's value belong to someone else: they are left untouched.
    solver = ElasticNet(_atoms(300, 32, seed=8))
    call = _SharedCall(solver, _prefill_rows(solver, 9, seed=9))
    call.next_row[0] = 4
    _compiled.solve_gram_rows_shared(*call.args)
    assert call.status[0] == _compiled.OK and call.counts[:4].tolist() == [0, 0, 0, 0]
    assert (call.counts[4:] > 0).all()


def test_a_failed_row_fails_the_threaded_solve() -> None:
    # One row the kernel cannot certify (here: it needs more rounds than allowed) fails
    # the whole call, whichever thread claimed it; the caller then takes the safe path.
    from pace.solver._parallel import solve_gram_rows_threaded

    solver = ElasticNet(_atoms(300, 32, seed=8))
    assert solver._gram_np is not None and solver._kernel_args is not None
    r = np.zeros((9, 300), np.float32)  # rows of zeros: c = 0 after one round
    r[4] = _prefill_rows(solver, 1, seed=9)[0]
    l1, l2, tol, _, _ = solver._kernel_args
    none = np.zeros((9, 0), np.int64)
    for rounds, want in ((50, _compiled.OK), (1, 3)):  # 3: the kernel's "too many rounds"
        kernel_args = (l1, l2, tol, 1, rounds)
        idx, val, status = solve_gram_rows_threaded(
            r, solver._gram_np, kernel_args, none, none.astype(np.bool_), 2
        )
        assert status == want
        if want == _compiled.OK:
            assert (val[4] != 0).sum() > 1 and (val[[0, 1, 2, 3, 5, 6, 7, 8]] == 0).all()
        else:
            assert idx.shape == (9, 0) and val.shape == (9, 0)
