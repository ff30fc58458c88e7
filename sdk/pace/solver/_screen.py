"""An int8 copy of the atoms for the CPU screening pass, with a proven error bound.

On the CPU the one pass ``r = D y`` over an fp32 dictionary is memory-bound (2,000 x 576
atoms: 4.6 MB per layer and token, read from memory each time, since the model's weights
evict it between two calls). Stored as int8 it is a quarter of the bytes:

    D_j ~ scale_j * (q_j * col),   q_j int8,

with one scale per row and one per column. Residual-stream atoms have a few outlier
dimensions, far larger than the rest in every atom; with row scales alone those set
every row's scale and the other dimensions keep a few levels (the bound below would be
as large as the soft threshold). Dividing each column by its peak first gives every
dimension its share of the 255 levels. The error of the pass is bounded per atom:

    |D_j y - pass_j(y)| <= err[j] * ||y||,   err[j] = ||D_j - scale_j (q_j * col)|| + rounding

(Cauchy-Schwarz for the quantisation, plus the float32 product ``col * y`` and the sum of
``d`` products in any order). The compiled kernel (``pace.solver._compiled
.solve_lowp_rows``) screens with the pass and recomputes exactly every correlation that
enters the answer or that the bound cannot decide, so the answer equals the fp32 path's.
For SmolLM2's unit atoms the bound is about 5e-3 against a soft threshold ``alpha * tau``
of about 0.05: at a decode step's last KKT check about 2% of the atoms are undecided and
read in fp32 (``docs/benchmarks.md``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["LowpAtoms", "pass_error", "quantize_rows"]

_U32 = 2.0**-24  # float32 unit roundoff


class LowpAtoms(NamedTuple):
    """``scale[:, None] * q * col`` approximates the atoms; ``err`` bounds the pass."""

    q: npt.NDArray[np.int8]
    """(n, d) int8 codes."""
    scale: npt.NDArray[np.float32]
    """(n,) float32 scale per row."""
    col: npt.NDArray[np.float32]
    """(d,) float32 scale per column."""
    err: npt.NDArray[np.float64]
    """(n,) bound on ``|D_j y - pass_j(y)| / ||y||``."""


def quantize_rows(atoms: npt.NDArray[np.float32], levels: int = 127) -> LowpAtoms:
    """Round the fp32 ``atoms`` (n, d) to int8 codes with row and column scales.

    ``levels`` (at most 127) is the code of each row's largest entry, after the columns
    are divided by their peaks; fewer levels give a coarser pass with a larger (still
    proven) bound, which the tests use.
    """
    if not 1 <= levels <= 127:
        raise ValueError(f"levels must be in [1, 127] for int8 codes; got {levels}")
    a = np.asarray(atoms, dtype=np.float32)
    peak_col = np.abs(a).max(axis=0) if a.shape[0] else np.ones(a.shape[1], np.float32)
    col = np.where(peak_col > 0, peak_col, 1.0).astype(np.float32)
    b = a / col
    peak = np.abs(b).max(axis=1).astype(np.float64) if a.shape[1] else np.ones(a.shape[0])
    scale = (np.where(peak > 0, peak, 1.0) / levels).astype(np.float32)
    q = np.clip(np.rint(b / scale[:, None]), -levels, levels).astype(np.int8)
    return LowpAtoms(q=q, scale=scale, col=col, err=pass_error(a, q, scale, col))


def pass_error(
    atoms: npt.NDArray[np.float32],
    q: npt.NDArray[np.int8],
    scale: npt.NDArray[np.float32],
    col: npt.NDArray[np.float32],
) -> npt.NDArray[np.float64]:
    """Per row, a bound on ``|atoms_j . y - pass_j(y)| / ||y||`` for any float32 ``y``."""
    d = atoms.shape[1]
    col64 = col.astype(np.float64)
    approx = q.astype(np.float64) * scale.astype(np.float64)[:, None] * col64
    quant = np.linalg.norm(atoms.astype(np.float64) - approx, axis=1)
    # The float32 products col * y (one rounding each), the float32 sum of d products
    # q_i (col y)_i in any order (|error| <= gamma_d sum |q_i (col y)_i|), and the product
    # by the row's scale: at most (gamma_d + 3u) sum |approx_ji y_i|, then Cauchy-Schwarz.
    gamma = d * _U32 / (1.0 - d * _U32)
    rounding = (gamma + 3.0 * _U32) * np.linalg.norm(approx, axis=1)
    err: npt.NDArray[np.float64] = 1.01 * (quant + rounding) + 1e-12
    return err
