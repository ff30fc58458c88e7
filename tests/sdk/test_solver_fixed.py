"""The fixed-schedule solve (what CUDA runs first), its working-set kernel and its graphs.

On the CPU the schedule runs with the compiled host homotopy as its working-set solver
(``ElasticNetConfig(cpu_rowwise=False)``, or directly); the Triton kernel is checked
against it where Triton runs (CUDA, or its CPU interpreter with ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import os

import pytest
import torch
from test_solver import _assert_matches_sklearn, _atoms, _targets

from pace.solver import ElasticNet, ElasticNetConfig, _compiled, _triton_homotopy, kkt_violation
from pace.solver._elastic_net import _PASS_MARGIN
from pace.solver._fixed import GRAM_DTYPE, FixedSchedule
from pace.solver._host import solve_on_host
from pace.solver._kkt import unit_rows

pytestmark = pytest.mark.skipif(not _compiled.AVAILABLE, reason="needs numba")
FIXED = ElasticNetConfig(cpu_rowwise=False)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
triton_here = pytest.mark.skipif(
    not _triton_homotopy.AVAILABLE
    or not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"),
    reason="needs Triton on CUDA, or its interpreter (TRITON_INTERPRET=1)",
)


def _schedule(atoms: torch.Tensor, *, gram: bool, margin: float, **kw: int) -> FixedSchedule:
    a = atoms.float()
    return FixedSchedule(
        atoms=atoms,
        l1=0.05 * 0.95,
        l2=0.05 * 0.05,
        tol=1e-6,
        margin=margin,
        gram=(a @ a.T).to(GRAM_DTYPE) if gram else None,
        systems=solve_on_host,
        **kw,
    )


def _dense(idx: torch.Tensor, val: torch.Tensor, n: int) -> torch.Tensor:
    return torch.zeros(idx.shape[0], n).scatter_add_(1, idx.cpu(), val.cpu())


@pytest.mark.parametrize("gram", [True, False], ids=["gram", "pass"])
def test_certified_rows_are_the_optimum(gram: bool) -> None:
    atoms = unit_rows(_atoms(800, 96, correlated=True, seed=21))
    y = _targets(atoms, 6, k=10, noise=0.05, seed=21)
    idx, val, ok = _schedule(atoms, gram=gram, margin=0.0)(y)
    assert bool(ok.all())  # the default schedule certifies ordinary rows outright
    c = _dense(idx, val, 800)
    assert float(kkt_violation(atoms, y, c, alpha=0.05, tau=0.95).max()) <= 1e-5
    _assert_matches_sklearn(ElasticNet(atoms), y, c)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_passes_are_certified_exactly(dtype: torch.dtype) -> None:
    # As on CUDA: the screening pass over D and the Gram in half precision, with their
    # rounding margins; the working set in fp32 from the stored (half-precision) atoms.
    atoms = unit_rows(_atoms(500, 64, correlated=True, seed=22).to(dtype))
    y = _targets(atoms.float(), 5, k=8, noise=0.05, seed=22)
    stored = atoms.float()
    for gram in (True, False):
        sched = _schedule(atoms, gram=gram, margin=_PASS_MARGIN[dtype])
        idx, val, ok = sched(y)
        assert bool(ok.any())
        c = _dense(idx, val, 500)[ok]
        assert float(kkt_violation(stored, y[ok], c, alpha=0.05, tau=0.95).max()) <= 1e-5
        _assert_matches_sklearn(ElasticNet(stored), y[ok], c, atoms=stored)


def test_the_gram_is_built_only_for_calls_that_read_it() -> None:
    atoms = _atoms(300, 1024, correlated=True, seed=30)
    y = _targets(atoms, 20, k=8, noise=0.05, seed=30)
    solver = ElasticNet(atoms, config=FIXED)
    schedule = solver.device_schedule
    assert schedule is not None and schedule.make_gram
    solver.solve(y)  # 20 rows: the KKT check passes over D; no Gram
    assert schedule._built == {}
    codes, ok = solver.try_solve_sparse(y[:1])  # one row: |W| rows of the Gram instead
    assert set(schedule._built) == {"gram"}
    assert bool(ok.all())
    _assert_matches_sklearn(solver, y[:1], _dense(*codes, 300))


def test_uncertified_rows_come_back_zero_and_are_resolved_by_solve() -> None:
    atoms = _atoms(600, 64, correlated=True, seed=23)
    y = _targets(atoms, 8, k=16, noise=0.05, seed=23)
    short = ElasticNetConfig(cpu_rowwise=False, device_screen=2, device_rounds=0)
    solver = ElasticNet(atoms, config=short)
    codes, ok = solver.try_solve_sparse(y)
    assert not bool(ok.all())  # two atoms and no growth: too short for these rows...
    assert bool((codes.values[~ok] == 0).all())  # ...which are left to the caller
    c = solver.solve(y)  # solve re-solves them on the general path
    _assert_matches_sklearn(solver, y, c)
    torch.testing.assert_close(_dense(*codes, 600)[ok], c[ok], atol=1e-5, rtol=1e-4)


def test_solve_sends_large_batches_through_the_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    atoms = _atoms(400, 64, correlated=True, seed=28)
    y = _targets(atoms, 20, k=8, noise=0.05, seed=28)
    solver = ElasticNet(atoms, config=FIXED)  # fixed_schedule_min_rows = 16
    real = solver._graphed
    assert real is not None
    rows: list[int] = []

    def counted(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        rows.append(x.shape[0])
        return real(x)

    monkeypatch.setattr(solver, "_graphed", counted)
    _assert_matches_sklearn(solver, y, solver.solve(y))  # 20 rows: the schedule
    _assert_matches_sklearn(solver, y[:3], solver.solve(y[:3]))  # 3 rows: host rounds
    assert rows == [20]


def test_try_solve_flags_non_finite_rows_instead_of_raising() -> None:
    atoms = _atoms(300, 32, correlated=False, seed=24)
    solver = ElasticNet(atoms, config=FIXED)
    y = _targets(atoms, 3, k=4, noise=0.05, seed=24)
    y[1, 5] = float("nan")
    codes, ok = solver.try_solve_sparse(y)
    assert ok.tolist() == [True, False, True]
    assert bool(torch.isfinite(codes.values).all()) and bool((codes.values[1] == 0).all())
    with pytest.raises(ValueError, match="NaN"):
        solver.solve(y)


def test_config_rejects_bad_schedule() -> None:
    with pytest.raises(ValueError, match="device_grow"):
        ElasticNetConfig(device_grow=0)
    with pytest.raises(ValueError, match="device_rounds"):
        ElasticNetConfig(device_rounds=-1)


def _systems_problem(seed: int, k: int) -> tuple[torch.Tensor, ...]:
    atoms = unit_rows(_atoms(1500, 128, correlated=True, seed=seed))
    y = _targets(atoms, 5, k=10, noise=0.05, seed=seed)
    w = torch.topk((y @ atoms.T).abs(), k, dim=1).indices
    valid = torch.ones(5, k, dtype=torch.bool)
    valid[0, k // 2 :] = False  # a padded row
    dw = atoms[w]
    h = dw @ dw.transpose(1, 2) + 0.0025 * torch.eye(k)
    return h, (dw @ y.unsqueeze(-1)).squeeze(-1) * valid, valid


@triton_here
@pytest.mark.parametrize("k", [24, 64])
def test_triton_homotopy_matches_the_compiled_host_homotopy(k: int) -> None:
    h, b, valid = _systems_problem(27, k)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    c, ok = _triton_homotopy.homotopy_systems(
        h.to(device), b.to(device), valid.to(device), 0.0475, 1e-6
    )
    ref, ref_ok = solve_on_host(h, b, valid, 0.0475, 1e-6)
    assert bool(ok.all()) and bool(ref_ok.all())
    assert int((ref != 0).sum()) > 10  # real supports, not all-zero answers
    torch.testing.assert_close(c.cpu(), ref, atol=1e-5, rtol=1e-4)
    assert bool((c.cpu()[~valid] == 0).all())
    # Continuing from the answer on the first slots (new atoms joined) ends at the same point.
    first = valid.clone()
    first[:, k // 3 :] = False
    prev, _ = solve_on_host(h, b * first, first, 0.0475, 1e-6)
    warm, warm_ok = _triton_homotopy.homotopy_systems(
        h.to(device), b.to(device), valid.to(device), 0.0475, 1e-6, prev.to(device), k // 3
    )
    assert bool(warm_ok.all())
    torch.testing.assert_close(warm.cpu(), ref, atol=1e-5, rtol=1e-4)


@triton_here
def test_the_schedule_with_the_triton_kernel_is_exact() -> None:
    atoms = unit_rows(_atoms(600, 64, correlated=True, seed=29))
    y = _targets(atoms, 4, k=10, noise=0.05, seed=29)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sched = FixedSchedule(
        atoms=atoms.to(device),
        l1=0.0475,
        l2=0.0025,
        tol=1e-6,
        margin=0.0,
        gram=None,
        systems=_triton_homotopy.homotopy_systems,
    )
    idx, val, ok = sched(y.to(device))
    assert bool(ok.all())
    _assert_matches_sklearn(ElasticNet(atoms), y, _dense(idx, val, 600))


@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_cuda_graph_replays_give_each_inputs_answer(dtype: torch.dtype) -> None:
    atoms = _atoms(3000, 256, correlated=True, seed=25)
    solver = ElasticNet(atoms.to("cuda", dtype))
    stored = solver.atoms.float().cpu()
    certified = 0
    for seed in range(4):  # one shape: the first call captures, the others replay
        y = _targets(stored, 1, k=8, noise=0.05, seed=100 + seed)
        codes, ok = solver.try_solve_sparse(y.cuda())
        assert solver._graphed is not None and solver._graphed.capture_error is None
        certified += int(ok.sum())
        c = _dense(codes.indices, codes.values, 3000)
        if bool(ok.all()):
            assert float(kkt_violation(stored, y, c, alpha=0.05, tau=0.95).max()) <= 1e-4
            _assert_matches_sklearn(solver, y, c, atoms=stored)
        full = solver.solve(y.cuda()).cpu()  # with the general path for uncertified rows
        _assert_matches_sklearn(solver, y, full, atoms=stored)
    # bf16's pass margin (1.6e-2 against l1 = 0.0475) pulls in too many atoms to certify.
    assert certified >= (3 if dtype != torch.bfloat16 else 0)


@cuda
def test_cuda_solve_falls_back_for_uncertified_rows() -> None:
    atoms = _atoms(2000, 128, correlated=True, seed=26)
    solver = ElasticNet(atoms.cuda(), config=ElasticNetConfig(device_screen=2, device_rounds=0))
    y = _targets(atoms, 6, k=16, noise=0.05, seed=26)
    _, ok = solver.try_solve_sparse(y.cuda())
    assert not bool(ok.all())
    c = solver.solve(y.cuda()).cpu()
    _assert_matches_sklearn(solver, y, c, atoms=solver.atoms.float().cpu())
