"""The elastic-net solver against scikit-learn's ElasticNet, with the parameters mapped.

sklearn minimises 1/(2 n_samples)||y - X w||^2 + a l1_ratio ||w||_1 + a (1 - l1_ratio)/2 ||w||^2.
With X = D^T (d x n, so n_samples = d), l1_ratio = tau and a = alpha / d this is our
objective divided by d, so both have the same minimiser.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet as SkElasticNet

from pace.solver import (
    ElasticNet,
    ElasticNetConfig,
    SparseCodes,
    elastic_net,
    elastic_net_objective,
    fista_elastic_net,
    kkt_violation,
)

SUPPORT_EPS = 1e-4  # coefficients this small may sit on either side of the support edge


def _atoms(n: int, d: int, *, correlated: bool, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    if correlated:
        # Like real activation atoms: a strong shared direction plus a few shared factors.
        common = torch.randn(d, generator=g, dtype=torch.float64)
        factors = torch.randn(8, d, generator=g, dtype=torch.float64)
        mix = torch.randn(n, 8, generator=g, dtype=torch.float64)
        a = 3.0 * common + mix @ factors + 0.7 * a
    return a.float()


def _targets(atoms: torch.Tensor, b: int, *, k: int, noise: float, seed: int) -> torch.Tensor:
    """Unit-norm sparse combinations of atoms plus noise."""
    g = torch.Generator().manual_seed(seed + 1)
    unit = atoms.double() / atoms.double().norm(dim=1, keepdim=True)
    idx = torch.randint(0, atoms.shape[0], (b, k), generator=g)
    w = torch.randn(b, k, 1, generator=g, dtype=torch.float64)
    y = (w * unit[idx]).sum(1) + noise * torch.randn(b, atoms.shape[1], generator=g).double()
    return (y / y.norm(dim=1, keepdim=True)).float()


def _sklearn(atoms_unit: torch.Tensor, y: torch.Tensor, alpha: float, tau: float) -> torch.Tensor:
    x = atoms_unit.double().T.numpy()
    d = x.shape[0]
    out = []
    for row in y.double().numpy():
        model = SkElasticNet(
            alpha=alpha / d, l1_ratio=tau, fit_intercept=False, tol=1e-12, max_iter=200_000
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x, row)
        out.append(torch.from_numpy(model.coef_.copy()))
    return torch.stack(out)


def _assert_matches_sklearn(
    solver: ElasticNet, y: torch.Tensor, c: torch.Tensor, atoms: torch.Tensor | None = None
) -> None:
    """``c`` solves the problem on ``atoms`` (default: the solver's unit atoms) like sklearn."""
    alpha, tau = solver.config.alpha, solver.config.tau
    atoms = solver.atoms if atoms is None else atoms
    ref = _sklearn(atoms, y, alpha, tau)
    ours_obj = elastic_net_objective(atoms, y, c, alpha=alpha, tau=tau)
    ref_obj = elastic_net_objective(atoms, y, ref, alpha=alpha, tau=tau)
    rel = (ours_obj - ref_obj).abs() / ref_obj.abs().clamp_min(1e-12)
    assert float(rel.max()) <= 1e-4, (ours_obj, ref_obj)
    ours_on, ref_on = c.double().abs(), ref.abs()
    # Same support: a coefficient of any real size on one side is nonzero on the other.
    assert not bool(((ours_on > SUPPORT_EPS) & (ref_on == 0)).any()), "extra support vs sklearn"
    assert not bool(((ref_on > SUPPORT_EPS) & (ours_on == 0)).any()), "missing support vs sklearn"
    assert int((ours_on > SUPPORT_EPS).sum()) > 0 or int((ref_on > SUPPORT_EPS).sum()) == 0


@pytest.mark.parametrize(
    ("n", "d", "alpha", "tau", "correlated"),
    [
        (300, 64, 0.05, 0.95, False),
        (300, 64, 0.05, 0.95, True),
        (500, 128, 0.01, 0.95, True),
        (200, 48, 0.2, 0.5, False),
        (400, 96, 0.02, 1.0, False),  # the lasso: no ridge term at all
        (2000, 576, 0.05, 0.95, True),  # SmolLM2's hidden size, a 2,000-atom dictionary
    ],
)
def test_matches_sklearn(n: int, d: int, alpha: float, tau: float, correlated: bool) -> None:
    atoms = _atoms(n, d, correlated=correlated, seed=n + d)
    y = _targets(atoms, 3, k=8, noise=0.05, seed=n)
    solver = ElasticNet(atoms, alpha=alpha, tau=tau)
    c = solver.solve(y)
    assert c.shape == (3, n) and c.dtype == torch.float32
    _assert_matches_sklearn(solver, y, c)


def test_fp16_atoms_match_sklearn_on_the_stored_atoms() -> None:
    atoms = _atoms(400, 96, correlated=True, seed=7).half()
    y = _targets(atoms.float(), 3, k=6, noise=0.1, seed=7)
    solver = ElasticNet(atoms)
    assert solver.dtype == torch.float16 and solver.atoms.dtype == torch.float16
    _assert_matches_sklearn(solver, y, solver.solve(y))


BATCHED = ElasticNetConfig(cpu_rowwise=False)  # the batched path that CUDA runs
ON_DEVICE = ElasticNetConfig(cpu_rowwise=False, host_subproblem=False)  # systems in torch


@pytest.mark.parametrize(
    "config",
    [
        ElasticNetConfig(screen_size=2),  # several rounds of working-set growth
        ElasticNetConfig(gram_max_n=0),  # no Gram cache: KKT by a pass over D
        ElasticNetConfig(compiled=False),  # the NumPy path (what runs without numba)
        ElasticNetConfig(compiled=False, screen_size=2),
        ElasticNetConfig(compiled=False, gram_max_n=0),
        BATCHED,
        ElasticNetConfig(cpu_rowwise=False, screen_size=2),
        ElasticNetConfig(cpu_rowwise=False, gram_max_n=0),  # as on GPU
        # Rounds decided by the device's batched steps (what batches of 9+ rows take).
        ElasticNetConfig(cpu_rowwise=False, host_rounds_max_rows=0),
        ElasticNetConfig(cpu_rowwise=False, host_rounds_max_rows=0, screen_size=2),
        ON_DEVICE,
        ElasticNetConfig(cpu_rowwise=False, host_subproblem=False, gram_max_n=0),
        # PDAS cut short: the torch homotopy takes over.
        ElasticNetConfig(cpu_rowwise=False, host_subproblem=False, max_pdas_iter=1),
    ],
    ids=[
        "grow",
        "no-gram",
        "numpy",
        "numpy-grow",
        "numpy-no-gram",
        "batched",
        "batched-grow",
        "batched-no-gram",
        "device-rounds",
        "device-rounds-grow",
        "torch-systems",
        "torch-systems-no-gram",
        "torch-systems-homotopy",
    ],
)
def test_solver_paths_agree_with_sklearn(config: ElasticNetConfig) -> None:
    atoms = _atoms(300, 64, correlated=True, seed=11)
    y = _targets(atoms, 4, k=12, noise=0.05, seed=11)
    solver = ElasticNet(atoms, config=config)
    _assert_matches_sklearn(solver, y, solver.solve(y))


def test_host_systems_fall_back_to_torch_where_the_compiled_path_gives_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The accelerator's path hands each working-set system to the compiled homotopy; a row
    # it cannot certify (status != OK) is solved by the batched torch steps instead.
    from pace.solver import _compiled, _host

    if not _compiled.AVAILABLE:
        pytest.skip("numba is not installed")
    real = _compiled.homotopy_ws
    calls: list[int] = []

    def refuse_every_other(h, b, l1, tol, max_steps):  # type: ignore[no-untyped-def]
        calls.append(1)
        c, status = real(h, b, l1, tol, max_steps)
        return c, (status if len(calls) % 2 else _compiled.OK + 1)

    monkeypatch.setattr(_host._compiled, "homotopy_ws", refuse_every_other)
    atoms = _atoms(300, 64, correlated=True, seed=16)
    y = _targets(atoms, 4, k=12, noise=0.05, seed=16)
    solver = ElasticNet(atoms, config=ElasticNetConfig(cpu_rowwise=False, host_rounds_max_rows=0))
    _assert_matches_sklearn(solver, y, solver.solve(y))
    assert len(calls) >= 4  # every row went to the host at least once


def half_precision_passes(
    dtype: torch.dtype, rows: int, seed: int, **config: int
) -> tuple[ElasticNet, torch.Tensor]:
    """What CUDA does, emulated on the CPU: a solver whose screening and KKT passes run over
    the stored half-precision atoms, with the rounding margin (the working set in fp32);
    and ``rows`` targets for it."""
    from pace.solver._elastic_net import _PASS_MARGIN

    atoms = _atoms(300, 64, correlated=True, seed=seed).to(dtype)
    y = _targets(atoms.float(), rows, k=8, noise=0.05, seed=seed)
    cfg = ElasticNetConfig(cpu_rowwise=False, gram_max_n=0, **config)
    solver = ElasticNet(atoms, config=cfg)
    solver._compute = solver.atoms
    solver._margin = _PASS_MARGIN[dtype]
    return solver, y


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_passes_stay_exact(dtype: torch.dtype) -> None:
    # The rounds on the device (host_rounds_max_rows=0): test_solver_host_rounds has the
    # same check for the rounds on the host.
    solver, y = half_precision_passes(dtype, 4, 14, host_rounds_max_rows=0)
    c = solver.solve(y)
    assert float(kkt_violation(solver.atoms, y, c, alpha=0.05, tau=0.95).max()) <= 1e-5
    _assert_matches_sklearn(solver, y, c)


def test_kkt_conditions_hold_on_output() -> None:
    atoms = _atoms(1000, 128, correlated=True, seed=3)
    y = torch.cat([_targets(atoms, 5, k=4, noise=0.3, seed=3), torch.zeros(1, 128)])
    solver = ElasticNet(atoms, alpha=0.03, tau=0.9)
    c = solver.solve(y)
    viol = kkt_violation(solver.atoms, y, c, alpha=0.03, tau=0.9)
    assert float(viol.max()) <= 1e-5
    assert bool((c[:5] != 0).any(dim=1).all())  # a nontrivial support on real rows


def test_batched_and_rowwise_paths_agree() -> None:
    atoms = _atoms(600, 96, correlated=True, seed=12)
    y = _targets(atoms, 5, k=10, noise=0.05, seed=12)
    rowwise = ElasticNet(atoms).solve(y)
    batched = ElasticNet(atoms, config=BATCHED).solve(y)
    assert torch.equal(rowwise.abs() > SUPPORT_EPS, batched.abs() > SUPPORT_EPS)
    torch.testing.assert_close(rowwise, batched, atol=2e-5, rtol=1e-4)


def test_batch_rows_equal_single_solves() -> None:
    atoms = _atoms(500, 64, correlated=False, seed=5)
    y = _targets(atoms, 6, k=5, noise=0.1, seed=5)
    solver = ElasticNet(atoms)
    batch = solver.solve(y)
    for i in range(6):
        single = solver.solve(y[i])
        assert single.shape == (500,)
        assert torch.equal(single != 0, batch[i] != 0)
        torch.testing.assert_close(single, batch[i], atol=1e-5, rtol=1e-4)


def test_solve_sparse_matches_dense() -> None:
    atoms = _atoms(300, 64, correlated=True, seed=9)
    y = _targets(atoms, 3, k=5, noise=0.05, seed=9)
    solver = ElasticNet(atoms)
    idx, val = solver.solve_sparse(y)
    dense = torch.zeros(3, 300).scatter_add_(1, idx, val)
    torch.testing.assert_close(dense, solver.solve(y))
    recon = (val.unsqueeze(-1) * solver.atoms[idx]).sum(1)
    torch.testing.assert_close(recon, dense @ solver.atoms, atol=1e-5, rtol=1e-5)


def test_y_that_requires_grad_or_is_an_inference_tensor() -> None:
    # Hooks see activations inside autograd-enabled forwards and inside inference_mode.
    atoms = _atoms(200, 32, correlated=True, seed=13)
    y = _targets(atoms, 2, k=3, noise=0.05, seed=13)
    solver = ElasticNet(atoms)
    expected = solver.solve(y)
    got = solver.solve(y.clone().requires_grad_(True))
    assert not got.requires_grad
    torch.testing.assert_close(got, expected)
    with torch.inference_mode():
        torch.testing.assert_close(solver.solve(y.clone()), expected)
        torch.testing.assert_close(ElasticNet(atoms).solve(y.clone()), expected)


def test_warm_start_gives_the_same_optimum() -> None:
    atoms = _atoms(800, 96, correlated=True, seed=15)
    y = _targets(atoms, 3, k=8, noise=0.05, seed=15)
    g = torch.Generator().manual_seed(15)
    y_next = y + 0.2 * torch.randn(y.shape, generator=g) / 96**0.5  # "the next token"
    y_next = y_next / y_next.norm(dim=1, keepdim=True)
    solver = ElasticNet(atoms)
    cold = solver.solve(y_next)
    for config in (ElasticNetConfig(), ElasticNetConfig(compiled=False), BATCHED):
        s = ElasticNet(atoms, config=config)
        warm = s.solve(y_next, warm_start=s.solve_sparse(y))
        assert torch.equal(warm.abs() > SUPPORT_EPS, cold.abs() > SUPPORT_EPS)
        torch.testing.assert_close(warm, cold, atol=2e-5, rtol=1e-4)
    # A warm start from an unrelated answer, with duplicate indices, is still only a hint.
    bogus = SparseCodes(torch.tensor([[5, 5, 7]] * 3), torch.tensor([[1.0, 2.0, -3.0]] * 3))
    torch.testing.assert_close(solver.solve(y_next, warm_start=bogus), cold, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        (SparseCodes(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3)), "b = 3 rows"),
        (SparseCodes(torch.zeros(3, 3, dtype=torch.long), torch.zeros(3, 2)), "b = 3 rows"),
        (SparseCodes(torch.full((3, 1), 800), torch.ones(3, 1)), r"\[0, 800\)"),
    ],
)
def test_bad_warm_start(codes: SparseCodes, message: str) -> None:
    solver = ElasticNet(_atoms(800, 96, correlated=False, seed=1))
    with pytest.raises(ValueError, match=message):
        solver.solve(torch.ones(3, 96), warm_start=codes)


def test_zero_y_gives_zero() -> None:
    solver = ElasticNet(_atoms(100, 32, correlated=False, seed=1))
    c = solver.solve(torch.zeros(2, 32))
    assert torch.equal(c, torch.zeros(2, 100))


def test_large_alpha_gives_zero() -> None:
    atoms = _atoms(100, 32, correlated=True, seed=2)
    y = _targets(atoms, 2, k=3, noise=0.0, seed=2)
    # |D_j y| <= 1 for unit rows and unit y, so alpha * tau > 1 zeroes everything.
    assert torch.equal(elastic_net(atoms, y, alpha=1.5, tau=0.95), torch.zeros(2, 100))
    # Just below the largest correlation, exactly one atom enters.
    top = float((y[0:1] @ ElasticNet(atoms).atoms.T).abs().max())
    c = elastic_net(atoms, y[0:1], alpha=0.99 * top / 0.95, tau=0.95)
    assert int((c != 0).sum()) == 1


def test_single_atom_is_a_scaled_soft_threshold() -> None:
    atom = torch.tensor([[3.0, 4.0]])
    y = torch.tensor([[0.6, 0.8], [0.0, 1.0], [-0.02, 0.0]])
    c = elastic_net(atom, y, alpha=0.1, tau=0.5)
    r = y @ (atom[0] / 5.0)
    expected = torch.sign(r) * (r.abs() - 0.05).clamp_min(0) / (1 + 0.05)
    torch.testing.assert_close(c[:, 0], expected)
    assert float(c[2, 0]) == 0.0


def test_tau_zero_is_ridge_regression() -> None:
    atoms = _atoms(80, 40, correlated=True, seed=4)
    y = _targets(atoms, 2, k=3, noise=0.1, seed=4)
    solver = ElasticNet(atoms, alpha=0.1, tau=0.0)
    c = solver.solve(y)
    d = solver.atoms.double()
    expected = torch.linalg.solve(
        d @ d.T + 0.1 * torch.eye(80, dtype=torch.float64), d @ y.T.double()
    )
    torch.testing.assert_close(c.double(), expected.T, atol=1e-4, rtol=1e-3)


def test_fista_baseline_approaches_the_optimum_from_above() -> None:
    atoms = _atoms(300, 64, correlated=False, seed=6)
    y = _targets(atoms, 2, k=5, noise=0.05, seed=6)
    solver = ElasticNet(atoms)
    exact = elastic_net_objective(solver.atoms, y, solver.solve(y), alpha=0.05, tau=0.95)
    f50 = elastic_net_objective(
        solver.atoms, y, fista_elastic_net(solver.atoms, y, n_iter=50), alpha=0.05, tau=0.95
    )
    f2k = elastic_net_objective(
        solver.atoms, y, fista_elastic_net(solver.atoms, y, n_iter=2000), alpha=0.05, tau=0.95
    )
    assert bool((f50 >= exact - 1e-9).all()) and bool((f2k >= exact - 1e-9).all())
    assert bool((f2k - exact <= 1e-4 * exact).all())  # and converges to it


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("batch", [1, 5])
def test_cuda_matches_cpu(dtype: torch.dtype, batch: int) -> None:
    atoms = _atoms(3000, 256, correlated=True, seed=8)
    y = _targets(atoms, batch, k=8, noise=0.05, seed=8)
    gpu = ElasticNet(atoms.to("cuda", dtype))
    c = gpu.solve(y.to("cuda", dtype)).cpu()
    torch.testing.assert_close(gpu.solve(y.to("cuda", dtype)).cpu(), c)  # repeatable
    stored = gpu.atoms.cpu()
    viol = kkt_violation(stored, y.to(dtype).float(), c, alpha=0.05, tau=0.95)
    assert float(viol.max()) <= 1e-4
    _assert_matches_sklearn(gpu, y.to(dtype).float(), c, atoms=stored)
