"""Bad input to the solver raises ValueError (or ConvergenceError) with a clear message."""

from __future__ import annotations

import pytest
import torch

from pace.errors import PaceError
from pace.solver import ConvergenceError, ElasticNet, ElasticNetConfig, _compiled, elastic_net


@pytest.fixture
def solver() -> ElasticNet:
    return ElasticNet(torch.randn(20, 8, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize(
    ("atoms", "message"),
    [
        (torch.randn(5), "shape"),
        (torch.randn(0, 4), "shape"),
        (torch.ones(3, 4, dtype=torch.int64), "floating"),
        (torch.tensor([[1.0, 0.0], [0.0, 0.0]]), "atom 1 is all zeros"),
        (torch.tensor([[1.0, float("nan")]]), "NaN"),
        ([[1.0, 0.0]], "torch.Tensor"),
    ],
)
def test_bad_atoms(atoms: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ElasticNet(atoms)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": -1.0}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"tau": 1.5}, "tau"),
        ({"tau": -0.1}, "tau"),
    ],
)
def test_bad_parameters(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ElasticNet(torch.randn(4, 3), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [("tol", 0.0), ("max_iter", 0), ("screen_size", -2), ("gram_max_n", -1)],
)
def test_bad_config(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        ElasticNetConfig(**{field: value})  # type: ignore[arg-type]


def test_screen_size_defaults_per_path_and_an_explicit_one_holds_everywhere() -> None:
    auto = ElasticNetConfig()
    assert (auto.screen(gram_kernel=True), auto.screen(gram_kernel=False)) == (8, 32)
    fixed = ElasticNetConfig(screen_size=5)
    assert (fixed.screen(gram_kernel=True), fixed.screen(gram_kernel=False)) == (5, 5)
    if _compiled.AVAILABLE:  # the compiled kernels get it too
        args = ElasticNet(torch.randn(40, 8), config=fixed).cpu_row_kernel_args
        assert args is not None and args[9] == 5


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (torch.randn(2, 7), r"shape \(b, 8\)"),
        (torch.randn(2, 3, 8), "shape"),
        (torch.ones(8, dtype=torch.int32), "floating"),
        (torch.tensor([float("nan")] + [0.0] * 7), "NaN"),
        (torch.full((1, 8), float("inf")), "infinite"),
    ],
)
def test_bad_y(solver: ElasticNet, y: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        solver.solve(y)
    with pytest.raises(ValueError, match=message):
        solver.solve_sparse(y)


def test_y_on_another_device(solver: ElasticNet) -> None:
    with pytest.raises(ValueError, match="meta"):
        solver.solve(torch.zeros(8, device="meta"))


def test_explicit_arguments_override_config() -> None:
    s = ElasticNet(torch.randn(4, 3), alpha=0.2, config=ElasticNetConfig(alpha=0.01, tau=0.5))
    assert (s.config.alpha, s.config.tau) == (0.2, 0.5)
    assert (s.n, s.d, s.device.type) == (4, 3, "cpu")


def test_too_few_rounds_is_a_convergence_error() -> None:
    g = torch.Generator().manual_seed(1)
    atoms = torch.randn(200, 16, generator=g)
    y = torch.randn(1, 16, generator=g)
    y = y / y.norm()
    config = ElasticNetConfig(alpha=0.001, screen_size=1, max_iter=1)
    with pytest.raises(ConvergenceError, match="max_iter") as info:
        elastic_net(atoms, y, config=config)
    assert isinstance(info.value, PaceError)


def test_empty_batch(solver: ElasticNet) -> None:
    assert solver.solve(torch.zeros(0, 8)).shape == (0, 20)
