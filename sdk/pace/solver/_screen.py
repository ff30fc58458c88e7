"""An int16 copy of the atoms for the CPU screening pass, with a proven error bound.

On the CPU the one pass ``r = D y`` over an fp32 dictionary is memory-bound (2,000 x 576
atoms: 4.6 MB per layer and token, read from memory each time). Stored as int16 with one
scale per row it is half the bytes, and the error of the pass is bounded per atom:

    |D_j y - pass_j(y)| <= err[j] * ||y||,   err[j] = ||D_j - scale_j q_j|| + rounding

(Cauchy-Schwarz for the quantisation, plus the float32 accumulation of ``d`` products in
any order). The compiled kernel (``pace.solver._compiled.solve_lowp_rows``) screens with
the pass and recomputes exactly every correlation that enters the answer or that the
bound cannot decide, so the answer equals the fp32 path's. For unit rows the bound is
about 1e-4, against a soft threshold ``alpha * tau`` of about 0.05.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["Int16Atoms", "pass_error", "quantize_rows"]

_U32 = 2.0**-24  # float32 unit roundoff


class Int16Atoms(NamedTuple):
    """``q * scale[:, None]`` approximates the atoms; ``err`` bounds the pass (see above)."""

    q: npt.NDArray[np.int16]
    """(n, d) int16 codes."""
    scale: npt.NDArray[np.float32]
    """(n,) float32 scale per row."""
    err: npt.NDArray[np.float64]
    """(n,) bound on ``|D_j y - pass_j(y)| / ||y||``."""


def quantize_rows(atoms: npt.NDArray[np.float32], levels: int = 32767) -> Int16Atoms:
    """Round each row of the fp32 ``atoms`` (n, d) to int16 with its own scale.

    ``levels`` (at most 32767) is the code of each row's largest entry; fewer levels give
    a coarser pass with a larger (still proven) bound, which the tests use.
    """
    a = np.asarray(atoms, dtype=np.float32)
    peak = np.abs(a).max(axis=1).astype(np.float64)
    scale = (np.where(peak > 0, peak, 1.0) / levels).astype(np.float32)
    q = np.clip(np.rint(a / scale[:, None]), -levels, levels).astype(np.int16)
    return Int16Atoms(q=q, scale=scale, err=pass_error(a, q, scale))


def pass_error(
    atoms: npt.NDArray[np.float32], q: npt.NDArray[np.int16], scale: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    """Per row, a bound on ``|atoms_j . y - pass_j(y)| / ||y||`` for any float32 ``y``."""
    d = atoms.shape[1]
    approx = q.astype(np.float64) * scale.astype(np.float64)[:, None]
    quant = np.linalg.norm(atoms.astype(np.float64) - approx, axis=1)
    # float32 sum of d products in any order (|error| <= gamma_d sum |q_i y_i|, then
    # Cauchy-Schwarz) and the product by the scale.
    gamma = d * _U32 / (1.0 - d * _U32)
    rounding = (gamma + 2.0 * _U32) * np.linalg.norm(approx, axis=1)
    err: npt.NDArray[np.float64] = 1.01 * (quant + rounding) + 1e-12
    return err
