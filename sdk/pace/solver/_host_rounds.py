"""Small batches on an accelerator: the device reads the dictionary, the host runs the rounds.

At a decode step (one row per layer) the batched general path spends its time on
launches and read-backs, not on arithmetic: on an H100, about 35 kernels and two host
reads per round, a ``topk`` over every atom to pick a handful of them (77 us at n =
10,000), and the working-set system copied to the host for the compiled homotopy
anyway: 3 ms per layer-step, where one pass over D takes 0.05 ms (docs/benchmarks.md).

Here each row's working set lives on the host, which picks atoms, keeps the working-set
system ``H`` and ``b`` from round to round (only the new atoms' rows are fetched) and
continues the exact homotopy path from the previous round's answer and inverse, as the
CPU kernel does (``pace.solver._compiled._homotopy``). The device does only what reads
the dictionary: the screening pass, the new rows of ``H`` and ``b`` (fp32 products of
the stored atoms), and the KKT pass. That is a handful of kernels and two read-backs
per round, for every row of the batch at once.

The answer is the one the general path certifies: exact on the working set, and KKT on
every atom with the pass's rounding margin (an atom within it joins the working set).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from pace.solver import _compiled

__all__ = ["NonFiniteScreen", "solve_host_rounds"]

I64 = npt.NDArray[np.int64]


class NonFiniteScreen(ValueError):
    """The screening pass came back with a NaN or an infinity: ``y`` is not finite (or, in
    half precision, so large that the pass overflowed). The caller tells the two apart."""


class _Row:
    """One row's working set and the state its path carries into the next round."""

    def __init__(self, first: I64) -> None:
        self.w = first  # atom indices, by slot; slots >= k_old joined in the last KKT test
        self.k_old = 0
        self.h = np.empty((0, 0))  # H = D_W D_W^T + l2 I on the solved slots
        self.b = np.empty(0)  # D_W y on the solved slots
        self.c = np.empty(0)  # the working set's answer, by slot
        self.carry_order = np.empty(0, np.int64)
        self.carry_inv = np.empty((0, 0))
        self.done = False

    @property
    def k(self) -> int:
        return int(self.w.shape[0])

    def solve(self, cross: npt.NDArray[np.floating], l1: float, l2: float, tol: float) -> bool:
        """Add the new slots' rows to the system and continue the path to its answer; False
        if the path fails. ``cross`` holds ``D_new [D_W; y]^T``: a row per new slot, the
        first ``k`` columns against the working set (then padding), the last against y."""
        status, self.h, self.b, self.c, self.carry_order, self.carry_inv = (
            _compiled.continue_round(
                self.h, self.b, self.c, cross, self.k, l1, l2, tol,
                self.carry_order, self.carry_inv,
            )
        )  # fmt: skip
        self.k_old = self.k
        return bool(status == _compiled.OK)

    def grow(self, g: npt.NDArray[np.floating], bound: float, screen: int) -> None:
        """Add the atoms whose KKT test fails (``|g_j| > bound``), at most doubling W."""
        join = _compiled.kkt_violators(g, self.w, bound, screen)
        if join.shape[0] == 0:
            self.done = True
        else:
            self.w = np.concatenate([self.w, join])


def solve_host_rounds(
    atoms: torch.Tensor,
    y: torch.Tensor,
    *,
    solve_dtype: torch.dtype,
    l1: float,
    l2: float,
    tol: float,
    margin: float,
    screen: int,
    max_rounds: int,
    out_device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Solve every row of ``y`` (b, d) exactly over unit ``atoms`` (n, d), on their device.

    ``atoms`` is the pass matrix (fp16/bf16 on a GPU): its products with ``y`` and with
    residuals carry a rounding error of at most ``margin`` times the vector's norm. The
    working-set systems are its rows' products in ``solve_dtype``.

    Returns ``(indices, values)``, (b, k) on ``out_device`` (default: the atoms' device,
    where the host rounds upload them): each row's support, padded
    with its first index (or 0) and value 0. None when a row's path fails or it needs
    more than ``max_rounds`` rounds (the caller takes its general path).

    Raises:
        NonFiniteScreen: the screening pass has a NaN or an infinity (nothing is solved).
    """
    device = atoms.device
    n = atoms.shape[0]
    y_solve = y.to(solve_dtype)
    host_dtype = np.float64 if solve_dtype == torch.float64 else np.float32
    r = (y.to(atoms.dtype) @ atoms.T).float().cpu().numpy()
    if not np.isfinite(r).all():
        raise NonFiniteScreen("the screening pass is not finite")
    rows = [_Row(_compiled.top_abs(ri, screen)) for ri in r]
    bound = l1 + tol
    for _ in range(max_rounds):
        open_ = [i for i, row in enumerate(rows) if not row.done]
        if not open_:
            return _codes(rows, device if out_device is None else out_device)
        ys = y_solve if len(open_) == len(rows) else y_solve[torch.tensor(open_, device=device)]
        # The new slots' rows of H and b: one gather, one product, one read-back.
        w_pad = _padded([rows[i].w for i in open_])
        new_pad = _padded([rows[i].w[rows[i].k_old :] for i in open_])
        kmax = w_pad.shape[1]
        slots = torch.from_numpy(np.concatenate([w_pad, new_pad], 1)).to(device)
        gathered = atoms[slots].to(solve_dtype)  # (open rows, kmax + mmax, d)
        full, new = gathered[:, :kmax], gathered[:, kmax:]
        with_y = torch.cat([full, ys.unsqueeze(1)], 1)
        cross = (new @ with_y.transpose(1, 2)).cpu().numpy()
        c_pad = np.zeros((len(open_), kmax), host_dtype)
        for a, i in enumerate(open_):
            row = rows[i]
            if not row.solve(cross[a, : row.k - row.k_old], l1, l2, tol):
                return None
            c_pad[a, : row.k] = row.c
        # KKT on every atom: g = D (y - D_W^T c), and the residual for the pass's margin.
        coef = torch.from_numpy(c_pad).to(device)
        res = torch.baddbmm(ys.unsqueeze(1), coef.unsqueeze(1), full, alpha=-1.0).squeeze(1)
        g = res.to(atoms.dtype) @ atoms.T
        back = torch.cat([g.to(res.dtype), res], 1).cpu().numpy()
        for a, i in enumerate(open_):
            row = rows[i]
            if row.k >= n:
                row.done = True  # every atom is in the working set
                continue
            slack = margin * float(np.linalg.norm(back[a, n:].astype(np.float64)))
            row.grow(back[a, :n], bound - slack, screen)
    return None


def _codes(rows: list[_Row], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows' supports as (b, k) indices and values (padding: first index, value 0)."""
    supports = [np.flatnonzero(row.c) for row in rows]
    kmax = max(1, max(s.size for s in supports))
    idx = np.zeros((len(rows), kmax), np.int64)
    val = np.zeros((len(rows), kmax), np.float32)
    for i, (row, s) in enumerate(zip(rows, supports, strict=True)):
        if s.size:
            idx[i, : s.size] = row.w[s]
            idx[i, s.size :] = row.w[s[0]]
            val[i, : s.size] = row.c[s]
    return torch.from_numpy(idx).to(device), torch.from_numpy(val).to(device)


def _padded(parts: list[I64]) -> I64:
    """Index lists as one (len, longest) array, each padded with its first entry."""
    width = max(1, max(p.shape[0] for p in parts))
    out = np.empty((len(parts), width), np.int64)
    for a, p in enumerate(parts):
        out[a, : p.shape[0]] = p
        out[a, p.shape[0] :] = p[0] if p.shape[0] else 0
    return out
