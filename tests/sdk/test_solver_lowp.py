"""The int8 screening pass: its error bound, and answers equal to the exact pass's."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from test_solver_compiled import _spy_kernel_statuses

from pace.solver import ElasticNet, ElasticNetConfig, _compiled, _parallel, kkt_violation
from pace.solver._screen import LowpAtoms, quantize_rows

pytestmark = pytest.mark.skipif(not _compiled.AVAILABLE, reason="numba is not installed")

L1, L2 = 0.05 * 0.95, 0.05 * 0.05


def _unit_atoms(n: int, d: int, seed: int) -> np.ndarray:
    """Correlated unit rows with an outlier dimension, like residual-stream atoms."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d)) + 2.0 * rng.standard_normal(d)
    a[:, 3] *= 15.0
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    return a.astype(np.float32)


@pytest.mark.parametrize("n", [600, 605, 5])  # the pass takes rows eight at a time
def test_the_pass_stays_within_its_bound(n: int) -> None:
    atoms = _unit_atoms(n, 128, seed=0)
    rng = np.random.default_rng(1)
    for levels in (127, 7):
        screen = quantize_rows(atoms, levels=levels)
        for scale in (1.0, 1e-3, 40.0):
            y = (scale * rng.standard_normal(128)).astype(np.float32)
            got = np.empty(n)
            _compiled._pass_lowp(screen.q, screen.scale, screen.col, y, got)
            exact = atoms.astype(np.float64) @ y.astype(np.float64)
            bound = screen.err * np.linalg.norm(y.astype(np.float64))
            assert np.all(np.abs(got - exact) <= bound)
            assert np.abs(got - exact).max() > 0.01 * bound.max()  # a bound, not a guess


def _near_threshold_problem(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Atoms of which many have ``|D_j (y - D^T c*)|`` within 5e-5 of the threshold.

    Solve on a base dictionary, then add atoms whose correlation with the optimal residual
    is ``L1 +- delta`` (5e-6 <= delta <= 5e-5: far below a coarse pass's error, and clear
    of the KKT tolerance 1e-6): those above the threshold change the answer, those below
    must stay out, and only exact correlations tell them apart.
    """
    base = _unit_atoms(400, 96, seed)
    rng = np.random.default_rng(seed + 100)
    y = base[rng.integers(0, 400, 6)].T @ rng.standard_normal(6)
    y = (y + 0.2 * np.linalg.norm(y) * rng.standard_normal(96) / 96**0.5).astype(np.float32)
    y /= np.linalg.norm(y)
    solver = ElasticNet(torch.from_numpy(base))
    c = solver.solve(torch.from_numpy(y)).double().numpy()
    res = y.astype(np.float64) - c @ base.astype(np.float64)
    unit = res / np.linalg.norm(res)
    extra = []
    for sign in (1.0, -1.0):
        steps = np.linspace(5e-6, 5e-5, 20)
        for delta in np.concatenate([-steps, steps]):
            alpha = sign * (L1 + delta) / np.linalg.norm(res)
            u = rng.standard_normal(96)
            u -= (u @ unit) * unit
            extra.append(alpha * unit + np.sqrt(1.0 - alpha**2) * u / np.linalg.norm(u))
    atoms = np.concatenate([base, np.asarray(extra, np.float32)])
    return atoms / np.linalg.norm(atoms, axis=1, keepdims=True), y[None]


NO_GRAM = np.empty((0, 0), np.float32)


def _solve(
    screen: LowpAtoms | None,
    atoms: np.ndarray,
    y: np.ndarray,
    screen_size: int,
    with_gram: bool = True,
) -> np.ndarray:
    gram = atoms @ atoms.T
    gram = (gram + gram.T) / 2 if with_gram else NO_GRAM
    seeds = np.zeros((1, 0), np.int64), np.zeros((1, 0), np.bool_)
    args = (gram, L1, L2, 1e-6, screen_size, 50, *seeds)
    if screen is None:
        idx, val, status = _compiled.solve_gram_rows((y @ atoms.T).astype(np.float32), *args)
    else:
        idx, val, status = _compiled.solve_lowp_rows(
            y, screen.q, screen.scale, screen.col, screen.err, atoms, *args
        )
    assert status == _compiled.OK  # the kernel itself, not a fallback
    c = np.zeros(atoms.shape[0])
    np.add.at(c, idx[0], val[0].astype(np.float64))
    return c


def _objective(atoms: np.ndarray, y: np.ndarray, c: np.ndarray) -> float:
    res = y[0].astype(np.float64) - c @ atoms.astype(np.float64)
    return float(0.5 * res @ res + L1 * np.abs(c).sum() + 0.5 * L2 * c @ c)


def _supports_differ(got: Any, want: Any, tol: float = 1e-6) -> bool:
    """Whether the supports differ, beyond atoms within the KKT tolerance in both answers.

    Paths that grow different working sets (another screen, or the NumPy path's larger
    start) may end with an atom whose exact coefficient is below ``tol`` (its correlation
    then sits within ``tol`` of the threshold) in one support and not the other: both
    answers meet the KKT conditions to ``tol``. Anything larger must agree.
    """
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert np.count_nonzero(got) > 0
    differ = (got != 0) != (want != 0)
    tiny = np.maximum(np.abs(got), np.abs(want)) <= tol
    return bool(np.any(differ & ~tiny))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("levels", [127, 7])
@pytest.mark.parametrize("screen_size", [4, 32])
@pytest.mark.parametrize("with_gram", [True, False], ids=["gram", "no-gram"])
def test_low_precision_pass_gives_the_exact_answer(
    seed: int, levels: int, screen_size: int, with_gram: bool
) -> None:
    # Both passes leave every near-threshold atom (within 5e-5 of the threshold) undecided,
    # and levels=7 most of the others too: the exact correlations must settle every one.
    # Without a Gram, every KKT check is an int8 pass too (over D_W^T c_W), with its own
    # error: the same atoms must still be settled exactly.
    atoms, y = _near_threshold_problem(seed)
    exact = _solve(None, atoms, y, screen_size)
    screen = quantize_rows(atoms, levels=levels)
    got = _solve(screen, atoms, y, screen_size, with_gram)
    assert not _supports_differ(got, exact)
    assert int((got[400:] != 0).sum()) >= 5  # the near-threshold atoms matter here
    ref = _objective(atoms, y, exact)
    assert abs(_objective(atoms, y, got) - ref) <= 1e-9 * ref
    np.testing.assert_allclose(got, exact, atol=1e-5)  # r in float64 vs a float32 product
    c = torch.from_numpy(got).float()[None]
    viol = kkt_violation(torch.from_numpy(atoms), torch.from_numpy(y), c, alpha=0.05, tau=0.95)
    assert float(viol.max()) <= 1e-5


@pytest.mark.parametrize("with_gram", [True, False], ids=["gram", "no-gram"])
def test_a_bound_that_lies_changes_the_answer(with_gram: bool) -> None:
    # The same coarse pass claiming to be exact: undecided atoms are then decided by the
    # rounded correlations, and the support comes out wrong. (Shows the test above can fail.)
    atoms, y = _near_threshold_problem(0)
    exact = _solve(None, atoms, y, 32)
    coarse = quantize_rows(atoms, levels=127)
    lying = coarse._replace(err=np.full_like(coarse.err, 1e-300))
    got = _solve(lying, atoms, y, 32, with_gram)
    assert _supports_differ(got, exact)


def _three_rows(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(atoms, rows, reference)``: a near-threshold problem's row and two random unit
    rows, and the NumPy path's answers for them."""
    atoms, y = _near_threshold_problem(seed)
    t_atoms = torch.from_numpy(atoms)
    extra = torch.randn(2, 96, generator=torch.Generator().manual_seed(seed))
    rows = torch.cat([torch.from_numpy(y), extra])
    rows = rows / rows.norm(dim=1, keepdim=True)
    ref = ElasticNet(t_atoms, config=ElasticNetConfig(compiled=False)).solve(rows)
    return t_atoms, rows, ref


def _assert_matches(atoms: torch.Tensor, rows: torch.Tensor, got: Any, want: Any) -> None:
    assert not _supports_differ(got, want)
    assert float(kkt_violation(atoms, rows, got, alpha=0.05, tau=0.95).max()) <= 1e-5
    # The near-threshold atoms make the system ill-conditioned: r in float64 (int8 path)
    # against a float32 product moves coefficients by a few 1e-6.
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_without_a_gram_single_rows_take_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    # More atoms than gram_max_n: no Gram is cached. Rows still run in the compiled kernel,
    # one at a time (a decode step) or a batch's rows over threads, each KKT check an int8
    # pass. Both give the NumPy path's answers.
    t_atoms, rows, ref = _three_rows(1)
    statuses = _spy_kernel_statuses(monkeypatch, "solve_lowp_rows")
    batches = _spy_kernel_statuses(monkeypatch, "solve_lowp_rows_threaded")
    solver = ElasticNet(t_atoms, config=ElasticNetConfig(gram_max_n=len(t_atoms) - 1))
    assert solver.cpu_row_kernel_args is not None  # the steering edit's fused kernel too
    one = torch.stack([solver.solve(row) for row in rows])
    assert statuses == [_compiled.OK] * 3 and batches == []
    many = solver.solve(rows)  # on torch's threads (or one: then solve_lowp_rows itself)
    assert batches == [_compiled.OK]
    # However many threads claim the rows, each row's answer is the one-thread answer.
    lowp, y_np = solver.cpu_row_kernel_args, np.ascontiguousarray(rows.numpy())
    no_seeds = np.zeros((3, 0), np.int64), np.zeros((3, 0), np.bool_)
    alone = _parallel.solve_lowp_rows_threaded(y_np, lowp, *no_seeds, 1)
    shared = _parallel.solve_lowp_rows_threaded(y_np, lowp, *no_seeds, 3)
    assert alone[2] == shared[2] == _compiled.OK
    assert np.array_equal(alone[0], shared[0]) and np.array_equal(alone[1], shared[1])
    for got in (one, many):
        _assert_matches(t_atoms, rows, got, ref)


def test_solver_default_on_cpu_matches_the_numpy_path() -> None:
    atoms, y = _near_threshold_problem(1)
    t_atoms, t_y = torch.from_numpy(atoms), torch.from_numpy(y)
    got = ElasticNet(t_atoms).solve(t_y)
    ref = ElasticNet(t_atoms, config=ElasticNetConfig(compiled=False)).solve(t_y)
    assert not _supports_differ(got, ref)
    torch.testing.assert_close(got, ref, atol=2e-6, rtol=1e-5)


def test_a_single_row_takes_the_int8_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    # A decode step (one row) is screened by the int8 pass; a prefill (several rows) by
    # one fp32 product for all rows. Both give the NumPy path's answers.
    t_atoms, rows, ref = _three_rows(2)
    statuses = _spy_kernel_statuses(monkeypatch, "solve_lowp_rows")
    solver = ElasticNet(t_atoms)
    one = solver.solve(rows[0])
    assert statuses == [_compiled.OK]
    many = solver.solve(rows)
    assert statuses == [_compiled.OK]
    _assert_matches(t_atoms, rows[:1], one[None], ref[:1])
    _assert_matches(t_atoms, rows, many, ref)
