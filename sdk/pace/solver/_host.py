"""Working-set systems from an accelerator, solved on the host by the compiled homotopy.

On a GPU the small k x k systems are the awkward part of a solve: the exact method for
correlated atoms (the homotopy, ``pace.solver._homotopy``) takes one event at a time, and
each event is a dozen tiny kernels plus a read-back to decide whether to go on. The
compiled CPU homotopy (``pace.solver._compiled``) walks the same path in microseconds.
So the accelerator does what it is good at (the passes over the dictionary, the Gram of
the working set), copies ``H`` and ``b`` over (k x k floats per row), and gets ``c`` back.
"""

from __future__ import annotations

import numpy as np
import torch

from pace.solver import _compiled

__all__ = ["solve_on_host"]


def solve_on_host(
    h: torch.Tensor,
    b: torch.Tensor,
    valid: torch.Tensor,
    l1: float,
    tol: float,
    c0: torch.Tensor | None = None,
    n_fixed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve each row's ``min 1/2 c^T H c - b^T c + l1 ||c||_1`` over its valid slots.

    Args:
        h: (B, k, k) ``G + l2 I``; b: (B, k); valid: (B, k) bool, on any device.
        c0, n_fixed: an earlier round's answer (``pace.solver._fixed.Systems``); unused,
            every path here starts at c = 0.

    Returns:
        ``(c, ok)`` on the inputs' device: (B, k) coefficients in ``b``'s dtype (zero on
        invalid slots) and (B,) bool, False where the compiled path gave no certified
        answer (the caller solves those rows another way).
    """
    h_np = h.detach().to("cpu", torch.float64).numpy()
    b_np = b.detach().to("cpu", torch.float64).numpy()
    valid_np = valid.detach().cpu().numpy()
    bsz, k = b_np.shape
    c_np = np.zeros((bsz, k))
    ok_np = np.ones(bsz, dtype=np.bool_)
    max_steps = 8 * k + 16
    for i in range(bsz):
        slots = np.flatnonzero(valid_np[i])
        if slots.size == 0:
            continue
        sub_h = np.ascontiguousarray(h_np[i][np.ix_(slots, slots)])
        sub_c, status = _compiled.homotopy_ws(sub_h, b_np[i, slots].copy(), l1, tol, max_steps)
        if status != _compiled.OK:
            ok_np[i] = False
            continue
        c_np[i, slots] = sub_c
    c = torch.from_numpy(c_np).to(device=b.device, dtype=b.dtype)
    return c, torch.from_numpy(ok_np).to(b.device)
