"""PaCE's CPU edit: the fused single-row kernel against the general (solver + NumPy) path."""

from __future__ import annotations

import pytest
import torch

from pace.solver import _compiled
from pace.steering import PaCE

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


def test_fused_row_edit_equals_the_general_path() -> None:
    atoms, undesirable = _dictionary()
    fused = PaCE().prepare(atoms, undesirable)
    general = PaCE().prepare(atoms, undesirable)
    assert getattr(fused, "_fused", None) is not None  # the fused kernel applies here
    general._fused = None  # type: ignore[attr-defined]
    edited_rows = 0
    for z in _rows(atoms, 12):
        z = z[None]
        got, c_got = fused(z)
        want, c_want = general(z)
        assert c_got is not None and c_want is not None
        assert torch.equal(c_got != 0, c_want != 0)
        torch.testing.assert_close(c_got, c_want, atol=2e-6, rtol=1e-5)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)
        if bool(c_got.any()):
            edited_rows += 1
            assert not torch.equal(got, z)
        else:
            assert got is z  # untouched rows are passed on as they are
    assert 0 < edited_rows < 12  # both branches ran


def test_fused_row_edit_rejects_non_finite_rows() -> None:
    atoms, undesirable = _dictionary()
    edit = PaCE().prepare(atoms, undesirable)
    z = _rows(atoms, 1)
    z[0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        edit(z)
