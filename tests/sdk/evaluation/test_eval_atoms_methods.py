from __future__ import annotations

import pytest
import torch

from pace.dictionary import BENIGN, ConceptDictionary
from pace.evaluation import (
    MEAN_ATOM_NAME,
    EvaluationError,
    MethodSpec,
    format_layers,
    parse_floats,
    parse_layers,
    sweep_methods,
    transform_atoms,
)
from pace.steering import OrthoProj, PaCE, VecAdd


def _dictionary() -> ConceptDictionary:
    g = torch.Generator().manual_seed(0)
    common = 10 * torch.randn(8, generator=g)
    atoms = {3: common + torch.randn(5, 8, generator=g), 4: torch.randn(5, 8, generator=g)}
    return ConceptDictionary(
        atoms=atoms,
        concept_names=list("abcde"),
        labels=torch.tensor([1, 0, 1, 0, 0], dtype=torch.int8),
        concept_ids=torch.arange(5),
    )


def test_centering_removes_the_shared_component_and_mean_atom_is_benign() -> None:
    d = _dictionary()
    assert transform_atoms(d) is d
    c = transform_atoms(d, center=True)
    assert torch.allclose(c.atoms[3].mean(0), torch.zeros(8), atol=1e-5)
    assert c.labels is not None and d.labels is not None
    assert torch.equal(c.labels, d.labels)
    # The raw atoms are dominated by the common direction; centered ones are not.
    raw_cos = torch.nn.functional.cosine_similarity(d.atoms[3][0], d.atoms[3][1], dim=0)
    cen_cos = torch.nn.functional.cosine_similarity(c.atoms[3][0], c.atoms[3][1], dim=0)
    assert raw_cos > 0.9 > abs(cen_cos)
    m = transform_atoms(d, center=True, mean_atom=True)
    assert len(m) == 6 and m.concept_names[-1] == MEAN_ATOM_NAME
    assert m.labels is not None and int(m.labels[-1]) == BENIGN
    assert torch.allclose(m.atoms[3][-1], d.atoms[3].mean(0))
    assert int(m.undesirable.sum()) == 2
    assert m.metadata["transform"] == {"center": True, "mean_atom": True}
    # A mean atom on raw atoms keeps the raw rows.
    r = transform_atoms(d, mean_atom=True)
    assert torch.equal(r.atoms[4][:5], d.atoms[4])


def test_method_specs_labels_defaults_and_validation() -> None:
    pace = MethodSpec("pace", layers=(10, 8, 9, 12))
    assert pace.label == "PaCE a=0.05 t=0.95 L8-10,12"
    assert isinstance(pace.edit_method(), PaCE)
    assert isinstance(MethodSpec("vecadd", scale=0.25).edit_method(), VecAdd)
    assert isinstance(MethodSpec("orthoproj").edit_method(), OrthoProj)
    assert MethodSpec("vanilla").edit_method() is None
    assert MethodSpec("prompting", layers=(1,)).layers is None
    with pytest.raises(EvaluationError, match="alpha and tau apply to PaCE only"):
        MethodSpec("vecadd", alpha=0.1)
    with pytest.raises(EvaluationError, match="alpha > 0"):
        MethodSpec("pace", alpha=0.0)
    with pytest.raises(EvaluationError, match="unknown method"):
        MethodSpec("steer")  # type: ignore[arg-type]


def test_sweep_reports_every_point() -> None:
    specs = sweep_methods(
        alphas=[0.05, 0.2], taus=[0.9, 0.95], scales=[0.25, 0.5], layer_sets=[(8, 9), (10,)]
    )
    kinds = [s.kind for s in specs]
    assert kinds.count("vanilla") == 1 and kinds.count("prompting") == 1
    assert kinds.count("vecadd") == 4 and kinds.count("orthoproj") == 2
    assert kinds.count("pace") == 8
    assert len({s.label for s in specs}) == len(specs)
    assert [s.kind for s in sweep_methods(kinds=["pace", "vanilla"])] == ["pace", "vanilla"]
    variants = sweep_methods(
        kinds=["vanilla", "pace"], atoms=["raw", "center+mean-atom"], sink_ratios=[None, 10.0]
    )
    assert [s.label for s in variants] == [
        "Vanilla",
        "PaCE a=0.05 t=0.95",
        "PaCE a=0.05 t=0.95 guard10",
        "PaCE a=0.05 t=0.95 ctr+mean",
        "PaCE a=0.05 t=0.95 ctr+mean guard10",
    ]
    from pace.evaluation import SinkGuard

    guarded = variants[-1].edit_method()
    assert isinstance(guarded, SinkGuard) and isinstance(guarded.inner, PaCE)
    with pytest.raises(EvaluationError, match="unknown atoms"):
        MethodSpec("pace", atoms="whitened")  # type: ignore[arg-type]
    with pytest.raises(EvaluationError, match="sink_ratio"):
        MethodSpec("pace", sink_ratio=0.5)
    with pytest.raises(EvaluationError, match="unknown methods"):
        sweep_methods(kinds=["pace", "magic"])


def test_layer_and_number_parsing() -> None:
    assert parse_layers("8-10,12") == (8, 9, 10, 12)
    assert parse_layers("all", 3) == (0, 1, 2)
    assert format_layers((8, 9, 10, 12, 14, 15)) == "8-10,12,14-15"
    with pytest.raises(EvaluationError, match=r"0\.\.29"):
        parse_layers("28-31", 30)
    with pytest.raises(EvaluationError, match=r"expected e\.g\."):
        parse_layers("ten")
    assert parse_floats("0.05, 0.1", "--alpha") == [0.05, 0.1]
    with pytest.raises(EvaluationError, match="--alpha"):
        parse_floats("x", "--alpha")


def test_sink_guard_leaves_massive_activations_unedited() -> None:
    from pace.evaluation import SinkGuard

    g = torch.Generator().manual_seed(1)
    atoms = torch.randn(6, 16, generator=g)
    undesirable = torch.tensor([True, True, False, False, False, False])
    z = torch.randn(5, 16, generator=g)
    z[2] *= 1000.0  # an attention sink
    plain, _ = PaCE(alpha=0.01).prepare(atoms, undesirable)(z)
    guarded_edit = SinkGuard(PaCE(alpha=0.01), ratio=10).prepare(atoms, undesirable)
    out, coef = guarded_edit(z)
    assert torch.equal(out[2], z[2])
    assert coef is not None and coef.shape == (5, 2) and not bool(coef[2].any())
    assert not torch.equal(plain[2], z[2])  # unguarded, the sink would have been edited
    # Ordinary rows get exactly the wrapped method's edit.
    ordinary = [0, 1, 3, 4]
    expected, _ = PaCE(alpha=0.01).prepare(atoms, undesirable)(z[ordinary])
    assert torch.allclose(out[ordinary], expected, atol=1e-5)
    # A decode step (fewer than 3 rows) is edited as usual.
    step, _ = guarded_edit(z[:2])
    assert not torch.equal(step, z[:2])
    with pytest.raises(EvaluationError, match="> 1"):
        SinkGuard(VecAdd(), ratio=1.0)
