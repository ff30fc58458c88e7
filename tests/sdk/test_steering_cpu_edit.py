"""PaCE's CPU edit: the fused single-row kernel against the general (solver + NumPy) path."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from pace.solver import _compiled
from pace.steering import PaCE, SinkGuard
from pace.steering.hooks import _apply

pytestmark = pytest.mark.skipif(not _compiled.AVAILABLE, reason="numba is not installed")


def _dictionary(n: int = 600, d: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    atoms = 2.0 * torch.randn(d, generator=g) + torch.randn(n, d, generator=g)
    undesirable = torch.zeros(n, dtype=torch.bool)
    undesirable[::7] = True
    return atoms, undesirable


def _rows(atoms: torch.Tensor, count: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    pick = torch.randint(0, atoms.shape[0], (count, 5), generator=g)
    mix = (torch.rand(count, 5, 1, generator=g) * atoms[pick]).sum(1)
    return 40.0 * (mix + 0.3 * torch.randn(mix.shape, generator=g))


def _same_edit(
    edit: Any, reference: Any, z: torch.Tensor, atol: float, rtol: float, out_atol: float
) -> bool:
    """``edit(z)`` equals ``reference(z)``: coefficients to ``atol``/``rtol``, the edited rows
    to ``out_atol``. True if it removed anything (then z changed; else z is passed on)."""
    got, c_got = edit(z)
    want, c_want = reference(z)
    assert c_got is not None and c_want is not None
    assert torch.equal(c_got != 0, c_want != 0)
    torch.testing.assert_close(c_got, c_want, atol=atol, rtol=rtol)
    torch.testing.assert_close(got, want, atol=out_atol, rtol=rtol)
    if not bool(c_got.any()):
        assert got is z
        return False
    assert not torch.equal(got, z)
    return True


def test_fused_row_edit_equals_the_general_path() -> None:
    atoms, undesirable = _dictionary()
    fused = PaCE().prepare(atoms, undesirable)
    general = PaCE().prepare(atoms, undesirable)
    assert getattr(fused, "_fused", None) is not None  # the fused kernel applies here
    general._fused = None  # type: ignore[attr-defined]
    edited_rows = sum(
        _same_edit(fused, general, z[None], 2e-6, 1e-5, out_atol=1e-4) for z in _rows(atoms, 12)
    )
    assert 0 < edited_rows < 12  # both branches ran


def test_fused_row_edit_rejects_non_finite_rows() -> None:
    atoms, undesirable = _dictionary()
    edit = PaCE().prepare(atoms, undesirable)
    z = _rows(atoms, 1)
    z[0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        edit(z)


def test_token_shortcut_equals_the_general_path() -> None:
    """A decode step's (1, 1, d) hidden state through the hook's shortcut (``edit_token``,
    through a SinkGuard as the demo uses it) against the general path on the same row."""
    atoms, undesirable = _dictionary()
    guarded = SinkGuard(PaCE()).prepare(atoms, undesirable)
    general = PaCE().prepare(atoms, undesirable)
    general._fused = None  # type: ignore[attr-defined]
    assert getattr(guarded, "edit_token", None) is not None
    edited_rows = 0
    for z in _rows(atoms, 12):
        hidden = z.reshape(1, 1, -1)
        new, coef = _apply(hidden, guarded, None, True)
        want, c_want = general(z[None])
        assert coef is not None and c_want is not None and coef.shape == (1, 1, c_want.shape[1])
        torch.testing.assert_close(coef[0], c_want, atol=2e-6, rtol=1e-5)
        if bool(c_want.any()):
            edited_rows += 1
            assert new is not None and new.shape == hidden.shape
            torch.testing.assert_close(new[0], want, atol=1e-4, rtol=1e-5)
        else:
            assert new is None  # the layer's output is passed on as it is
        again, no_coef = _apply(hidden, guarded, None, False)
        assert no_coef is None and (again is None) == (new is None)
    assert 0 < edited_rows < 12


@pytest.mark.parametrize("case", ["bf16", "grad", "strided", "nan"])
def test_token_shortcut_declines_what_it_does_not_handle(case: str) -> None:
    """Other dtypes, tensors that need grad, strided tensors and non-finite rows go to the
    general path (``edit_token`` returns None), which edits or raises as usual."""
    atoms, undesirable = _dictionary()
    edit = PaCE().prepare(atoms, undesirable)
    z = _rows(atoms, 2)
    hidden = z[:1].reshape(1, 1, -1).clone()
    if case == "bf16":
        hidden = hidden.bfloat16()
    elif case == "grad":
        hidden.requires_grad_(True)
    elif case == "strided":
        hidden = torch.stack([z[0], z[1]], dim=1)[:, 0][None, None]  # stride 2
        assert not hidden.is_contiguous()
    else:
        hidden[0, 0, 3] = float("nan")
    assert edit.edit_token(hidden, True) is None  # type: ignore[attr-defined]
    if case == "nan":
        with pytest.raises(ValueError, match="NaN or infinite"):
            _apply(hidden, edit, None, True)
        return
    with torch.no_grad():
        new, coef = _apply(hidden, edit, None, True)
    general = PaCE().prepare(atoms, undesirable)
    general._fused = None  # type: ignore[attr-defined]
    want, c_want = general(hidden.detach().float().reshape(1, -1))
    assert coef is not None and c_want is not None
    torch.testing.assert_close(coef.reshape(1, -1), c_want, atol=2e-6, rtol=1e-5)
    out = hidden if new is None else new
    tol = 1e-2 if case == "bf16" else 1e-4
    torch.testing.assert_close(out.float().reshape(1, -1), want, atol=tol, rtol=tol)


def test_accelerator_edit_run_on_the_cpu_equals_the_cpu_edit() -> None:
    # The branch a GPU takes (codes from the solver's host rounds, the removed
    # coefficients summed on the host, one upload), run here on CPU tensors with the
    # solver configured as on an accelerator.
    from pace.solver import ElasticNet, ElasticNetConfig

    atoms, undesirable = _dictionary()
    cpu = PaCE().prepare(atoms, undesirable)
    accel = PaCE().prepare(atoms, undesirable)
    accel._cpu = False  # type: ignore[attr-defined]
    solver = accel._solver  # type: ignore[attr-defined]
    accel._solver = ElasticNet(solver.atoms, config=ElasticNetConfig(cpu_rowwise=False))  # type: ignore[attr-defined]
    rows = _rows(atoms, 6)
    edited = [_same_edit(accel, cpu, z, 2e-5, 1e-4, out_atol=1e-3) for z in (rows, rows[3:4])]
    assert any(edited)
