"""PaCE's atom options and steer()'s sink guard equal the harness's explicit transforms."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from pace import ConceptDictionary
from pace.evaluation import SinkGuard as HarnessSinkGuard
from pace.evaluation.atoms import transform_atoms as harness_transform_atoms
from pace.evaluation.errors import EvaluationError
from pace.steering import PaCE, SinkGuard, SteeringError, VecAdd, steer, transform_atoms


def _layer(seed: int = 0, n: int = 40, d: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(1, d, generator=g) * 3  # the common component centering removes
    atoms = shared + torch.randn(n, d, generator=g)
    undesirable = torch.zeros(n, dtype=torch.bool)
    undesirable[:6] = True
    return atoms, undesirable


@pytest.mark.parametrize(("center", "mean_atom"), [(True, False), (False, True), (True, True)])
def test_pace_options_equal_transformed_atoms(center: bool, mean_atom: bool) -> None:
    atoms, undesirable = _layer()
    d = ConceptDictionary(
        atoms={0: atoms},
        concept_names=[str(i) for i in range(40)],
        labels=undesirable.to(torch.int8),
    )
    t = transform_atoms(d, center=center, mean_atom=mean_atom)
    noise = torch.randn(5, 16, generator=torch.Generator().manual_seed(1))
    # Undesirable atoms, and the shared component (which the mean atom explains as benign).
    z = torch.cat([atoms[:3] + noise[:3], atoms.mean(0) + 0.1 * noise[3:]])
    expected, coef_expected = PaCE(alpha=0.01).prepare(t.atoms[0], t.undesirable)(z)
    got, coef = PaCE(alpha=0.01, center=center, mean_atom=mean_atom).prepare(atoms, undesirable)(z)
    plain, _ = PaCE(alpha=0.01).prepare(atoms, undesirable)(z)
    assert torch.equal(got, expected) and coef is not None and coef_expected is not None
    assert torch.equal(coef, coef_expected) and coef.shape == (5, 6)
    assert not torch.equal(got, plain)  # the options change the edit


def test_centering_a_single_atom_is_a_clear_error() -> None:
    with pytest.raises(SteeringError, match="zero once centered"):
        PaCE(center=True).prepare(torch.ones(1, 4), torch.ones(1, dtype=torch.bool))


def test_the_harness_names_stay_importable() -> None:
    assert harness_transform_atoms is transform_atoms
    assert issubclass(HarnessSinkGuard, SinkGuard)
    with pytest.raises(EvaluationError, match="> 1"):
        HarnessSinkGuard(VecAdd(), ratio=1.0)
    with pytest.raises(SteeringError, match="> 1"):
        SinkGuard(VecAdd(), ratio=0.5)


def test_steer_sink_ratio_equals_a_guarded_method(tiny_model: Callable) -> None:
    model = tiny_model("llama")
    width = model.config.hidden_size
    atoms = {
        k: torch.randn(30, width, generator=torch.Generator().manual_seed(k))
        for k in range(model.config.num_hidden_layers)
    }
    ids = torch.randint(2, model.config.vocab_size, (1, 9), generator=torch.Generator())
    method = PaCE(alpha=0.01, center=True, mean_atom=True)
    with torch.no_grad():
        with steer(model, atoms, undesirable=[0, 1, 2], method=method, sink_ratio=1.5) as h:
            got = model(ids).logits
        assert not h.active
        with steer(model, atoms, undesirable=[0, 1, 2], method=SinkGuard(method, 1.5)):
            expected = model(ids).logits
        with steer(model, atoms, undesirable=[0, 1, 2], method=method):
            unguarded = model(ids).logits
    assert torch.equal(got, expected)
    assert not torch.equal(got, unguarded)  # ratio 1.5 leaves some rows of a random model alone
    with pytest.raises(SteeringError, match="> 1"):
        steer(model, atoms, undesirable=[0], sink_ratio=1.0)
