"""Small batches outside the CPU row-wise path: rounds on the host, passes on the device.

This is what a decode step on a GPU runs (``pace.solver._host_rounds``); here the device
is the CPU (``cpu_rowwise=False``), with the half-precision passes of a GPU emulated by
pointing the solver's pass matrix at the stored fp16/bf16 atoms.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from test_solver import (
    SUPPORT_EPS,
    _assert_matches_sklearn,
    _atoms,
    _targets,
    half_precision_passes,
)

from pace.solver import ElasticNet, ElasticNetConfig, _compiled, _host_rounds, kkt_violation

pytestmark = pytest.mark.skipif(not _compiled.AVAILABLE, reason="numba is not installed")

HOST_ROUNDS = ElasticNetConfig(cpu_rowwise=False)


class _Spy:
    """Counts the calls of ``solve_host_rounds`` and how many of them gave an answer."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from pace.solver import _elastic_net

        self.calls = 0
        self.answered = 0
        real = _host_rounds.solve_host_rounds

        def spy(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            got = real(*args, **kwargs)
            self.answered += got is not None
            return got

        monkeypatch.setattr(_elastic_net, "solve_host_rounds", spy)


@pytest.mark.parametrize("screen", [None, 2])
def test_small_batches_take_the_host_rounds_and_match_sklearn(
    monkeypatch: pytest.MonkeyPatch, screen: int | None
) -> None:
    spy = _Spy(monkeypatch)
    atoms = _atoms(300, 64, correlated=True, seed=21)
    y = _targets(atoms, 4, k=12, noise=0.05, seed=21)
    solver = ElasticNet(atoms, config=ElasticNetConfig(cpu_rowwise=False, screen_size=screen))
    c = solver.solve(y)
    assert (spy.calls, spy.answered) == (1, 1)
    _assert_matches_sklearn(solver, y, c)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_passes_stay_exact(
    monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype
) -> None:
    # A GPU's passes: the screening and KKT products in the atoms' half precision, with
    # the rounding margin; the working-set rows in fp32.
    spy = _Spy(monkeypatch)
    solver, y = half_precision_passes(dtype, 3, 22)
    c = solver.solve(y)
    assert spy.answered == 1
    assert float(kkt_violation(solver.atoms, y, c, alpha=0.05, tau=0.95).max()) <= 1e-5
    _assert_matches_sklearn(solver, y, c)


def test_same_answers_as_the_device_rounds_and_as_single_rows() -> None:
    atoms = _atoms(600, 96, correlated=True, seed=23)
    y = _targets(atoms, 6, k=10, noise=0.05, seed=23)
    ours = ElasticNet(atoms, config=ElasticNetConfig(cpu_rowwise=False, screen_size=4))
    batch = ours.solve(y)
    general = ElasticNet(atoms, config=ElasticNetConfig(cpu_rowwise=False, host_rounds_max_rows=0))
    reference = general.solve(y)
    assert torch.equal(batch.abs() > SUPPORT_EPS, reference.abs() > SUPPORT_EPS)
    torch.testing.assert_close(batch, reference, atol=2e-5, rtol=1e-4)
    for i in range(y.shape[0]):  # rows in lockstep answer as they do alone
        torch.testing.assert_close(ours.solve(y[i]), batch[i], atol=1e-5, rtol=1e-4)


def test_sparse_codes_layout() -> None:
    atoms = _atoms(300, 64, correlated=True, seed=24)
    y = torch.cat([_targets(atoms, 2, k=6, noise=0.05, seed=24), torch.zeros(1, 64)])
    solver = ElasticNet(atoms, config=HOST_ROUNDS)
    idx, val = solver.solve_sparse(y)
    on_host = solver.solve_sparse(y, on_host=True)
    assert torch.equal(on_host.indices, idx) and torch.equal(on_host.values, val)
    assert idx.dtype == torch.int64 and val.dtype == torch.float32 and idx.shape == val.shape
    assert bool((val[2] == 0).all())  # y = 0: c = 0
    for i in range(2):
        on = val[i] != 0
        assert int(on.sum()) > 0 and len(set(idx[i, on].tolist())) == int(on.sum())
    dense = torch.zeros(3, 300).scatter_add_(1, idx, val)
    torch.testing.assert_close(dense, solver.solve(y))


def test_larger_batches_and_failed_paths_take_the_general_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy = _Spy(monkeypatch)
    atoms = _atoms(300, 64, correlated=True, seed=25)
    y = _targets(atoms, 5, k=12, noise=0.05, seed=25)
    small = ElasticNet(atoms, config=ElasticNetConfig(cpu_rowwise=False, host_rounds_max_rows=4))
    _assert_matches_sklearn(small, y, small.solve(y))
    assert spy.calls == 0  # 5 rows > 4
    # A path that fails on the host (status != OK) leaves the batch to the general path.
    real = _compiled.continue_round
    failures = []

    def fail_once(*args: Any) -> Any:
        status, *rest = real(*args)
        if not failures:
            failures.append(1)
            return (_compiled.OK + 1, *rest)
        return (status, *rest)

    monkeypatch.setattr(_host_rounds._compiled, "continue_round", fail_once)
    solver = ElasticNet(atoms, config=HOST_ROUNDS)
    c = solver.solve(y)
    assert failures and (spy.calls, spy.answered) == (1, 0)
    _assert_matches_sklearn(solver, y, c)


def test_round_limit_returns_none() -> None:
    atoms = _atoms(300, 64, correlated=True, seed=26)
    y = _targets(atoms, 2, k=12, noise=0.05, seed=26)
    unit = ElasticNet(atoms).atoms
    kwargs = {"solve_dtype": torch.float32, "l1": 0.0475, "l2": 0.0025, "tol": 1e-6}
    assert (
        _host_rounds.solve_host_rounds(unit, y, margin=0.0, screen=1, max_rounds=1, **kwargs)
        is None
    )
    got = _host_rounds.solve_host_rounds(unit, y, margin=0.0, screen=1, max_rounds=50, **kwargs)
    assert got is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_cuda_host_rounds_match_the_device_rounds(
    monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype
) -> None:
    spy = _Spy(monkeypatch)
    atoms = _atoms(2000, 256, correlated=True, seed=27).to("cuda", dtype)
    y = _targets(atoms.float().cpu(), 3, k=10, noise=0.05, seed=27).to("cuda", dtype)
    ours = ElasticNet(atoms)
    c = ours.solve(y)
    assert (spy.calls, spy.answered) == (1, 1)
    general = ElasticNet(atoms, config=ElasticNetConfig(host_rounds_max_rows=0))
    reference = general.solve(y)
    assert torch.equal(c.abs() > SUPPORT_EPS, reference.abs() > SUPPORT_EPS)
    torch.testing.assert_close(c, reference, atol=2e-5, rtol=1e-4)
    stored = ours.atoms.float().cpu()
    _assert_matches_sklearn(ElasticNet(stored), y.float().cpu(), c.cpu(), atoms=stored)
    idx, val = ours.solve_sparse(y)
    host_idx, host_val = ours.solve_sparse(y, on_host=True)  # never uploaded
    assert host_idx.device.type == "cpu" and host_val.device.type == "cpu"
    assert torch.equal(host_idx, idx.cpu()) and torch.equal(host_val, val.cpu())


@pytest.mark.parametrize(("bad", "message"), [(float("nan"), "NaN"), (float("inf"), "infinite")])
def test_non_finite_y_is_found_by_the_screening_pass(
    monkeypatch: pytest.MonkeyPatch, bad: float, message: str
) -> None:
    # On an accelerator the up-front check of y would cost a wait of its own; the host
    # rounds see a bad y in the screening pass they read back anyway, and raise the same.
    spy = _Spy(monkeypatch)
    atoms = _atoms(100, 16, correlated=True, seed=28)
    y = _targets(atoms, 3, k=4, noise=0.05, seed=28)
    y[1, 5] = bad
    solver = ElasticNet(atoms, config=HOST_ROUNDS)
    with pytest.raises(ValueError, match=message):
        solver.solve(y)
    with pytest.raises(ValueError, match=message):
        solver.solve_sparse(y[1])
    assert (spy.calls, spy.answered) == (2, 0)
