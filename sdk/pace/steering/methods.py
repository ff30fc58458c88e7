"""Edit operators: PaCE sparse-coded removal and the paper's baselines.

An edit method is a small frozen dataclass. At attach time ``prepare(atoms, undesirable)``
turns one layer's dictionary into a :data:`LayerEdit`: a plain callable that maps the
(m, d) activations of the m edited token positions of one forward pass to the edited
activations, plus the (m, n_undesirable) coefficients it removed (or None where the
method has no such coefficients). A :data:`LayerEdit` returns its input tensor *itself*
when it leaves every row untouched, so hooks can skip all further work.

Formulas (``D``: the atoms scaled to unit rows, ``U``: the undesirable rows):

- :class:`PaCE`: ``c = argmin 1/2||y - D^T c||^2 + alpha (tau ||c||_1 + (1-tau)/2 ||c||^2)``
  with ``y = z/||z||``; ``z' = z - ||z|| D_U^T c_U``.
- :class:`VecAdd`: ``z' = z - scale ||z|| v``, ``v`` the unit-norm mean of the unit
  undesirable atoms.
- :class:`OrthoProj`: ``z' = z - P_U z``, ``P_U`` the orthogonal projector onto the span
  of the undesirable atoms.
- :class:`NoOp`: ``z' = z`` (hooks stay attached; useful to measure hook overhead).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from pace.steering.errors import SteeringError
from pace.steering.transforms import center_layer

__all__ = [
    "EditMethod",
    "LayerEdit",
    "NoOp",
    "OrthoProj",
    "PaCE",
    "VecAdd",
    "unit_rows",
]

LayerEdit = Callable[[Tensor], tuple[Tensor, Tensor | None]]
"""(m, d) activations -> (edited activations, removed coefficients (m, n_u) or None)."""

_TINY = 1e-12
_NO_COEF = np.empty((0, 0, 0), np.float32)  # "no coefficients wanted": empty, never written


@runtime_checkable
class EditMethod(Protocol):
    """Anything that turns one layer's atoms and undesirable mask into a LayerEdit."""

    def prepare(self, atoms: Tensor, undesirable: Tensor) -> LayerEdit:
        """``atoms`` (n, d) on the layer's device, ``undesirable`` bool (n,) on the same."""
        ...


def unit_rows(atoms: Tensor) -> Tensor:
    """Rows scaled to unit L2 norm, in float32."""
    a = atoms.float()
    return a / a.norm(dim=1, keepdim=True).clamp_min(_TINY)


def _identity(z: Tensor) -> tuple[Tensor, Tensor | None]:
    return z, None


class _PaCEEdit:
    """One layer's PaCE edit; a class only so that it can hold its solver."""

    def __init__(self, solver: Any, undesirable: Tensor, d_u: Tensor, deferred: bool) -> None:
        self._solver = solver
        # Row position among the undesirable atoms, or -1 for a benign atom.
        pos = torch.full(undesirable.shape, -1, dtype=torch.long, device=undesirable.device)
        pos[undesirable] = torch.arange(int(undesirable.sum()), device=undesirable.device)
        self._pos = pos
        self._n_u = d_u.shape[0]
        self._d_u = d_u  # (n_u, d) float32 unit rows
        # The CPU edit runs in NumPy: a decode step is one row, and a dozen torch calls on
        # it cost more than the arithmetic (about 0.7 ms per layer in generation, where
        # the model's forward has left every cache cold).
        self._cpu = undesirable.device.type == "cpu"
        self._pos_np = pos.cpu().numpy()
        if self._cpu:
            self._d_u_np = d_u.detach().numpy()  # for the fused decode kernel
        # A decode step on the CPU: one compiled call normalises, solves and removes.
        self._fused: tuple[Any, ...] | None = None
        if self._cpu:
            self._fused = getattr(solver, "cpu_row_kernel_args", None)
        if self._fused is not None:
            from pace.solver import _compiled

            self._remove_row = _compiled.remove_row_lowp
            self._remove_token = _compiled.remove_token_lowp
            self._kernel_ok = _compiled.OK
        # On CUDA with the fixed-schedule solver, the whole edit (normalise, solve, remove)
        # is one CUDA graph per input shape and nothing is read back: rows the solve cannot
        # certify are left unedited and counted here, on the device.
        self._graphed: Any = None
        self._uncertified = torch.zeros((), dtype=torch.int64, device=undesirable.device)
        schedule = getattr(solver, "device_schedule", None)
        if deferred and schedule is not None and undesirable.device.type == "cuda":
            from pace.solver._graphs import GraphedFunction

            self._schedule = schedule
            self._graphed = GraphedFunction(self._deferred_edit, max_shapes=4)

    def uncertified_rows(self) -> int:
        """Token rows left unedited so far because the fast solve could not certify them."""
        return int(self._uncertified)

    def _removal(self, idx: Tensor, val: Tensor) -> Tensor:
        """(m, n_u) coefficients of the undesirable atoms from sparse codes."""
        pos = self._pos[idx]
        val_u = torch.where(pos >= 0, val, 0.0)
        coef = val_u.new_zeros(val_u.shape[0], self._n_u + 1)
        coef.scatter_add_(1, torch.where(pos >= 0, pos, self._n_u), val_u)
        return coef[:, : self._n_u]

    def _deferred_edit(self, z: Tensor) -> tuple[Tensor, Tensor]:
        zf = z.float()
        norm = zf.norm(dim=1, keepdim=True)
        idx, val, ok = self._schedule(zf / norm.clamp_min(_TINY))
        self._uncertified.add_((~ok).sum())
        c_u = self._removal(idx, val)
        # Zero coefficients leave a row bit-identical: zf - 0 == zf, and back to z's dtype.
        return torch.addmm(zf, norm * c_u, self._d_u, alpha=-1.0).to(z.dtype), c_u

    def _solve(self, y: Tensor) -> tuple[Tensor, Tensor]:
        # No warm start from the previous token: on SmolLM2 the supports of consecutive
        # decode steps at one layer share 3-18% of their atoms (Jaccard), and seeding the
        # working set with them made the solve 10-20% slower (docs/benchmarks.md).
        codes = self._solver.solve_sparse(y)
        return codes[0], codes[1]

    def __call__(self, z: Tensor) -> tuple[Tensor, Tensor | None]:
        if self._graphed is not None:
            edited, c_u = self._graphed(z)
            return edited, c_u
        if self._cpu and z.device.type == "cpu":
            return self._edit_cpu(z)
        zf = z.float()
        norm = zf.norm(dim=1, keepdim=True)
        # Sparse codes on the host: small batches (decode steps) are solved with their
        # rounds there, so the codes need no upload, and the removed coefficients are
        # summed there too, which also tells whether anything is removed without a wait.
        idx, val = self._solver.solve_sparse(zf / norm.clamp_min(_TINY), on_host=True)
        c_u_np = self._removal_np(idx.numpy(), val.numpy())
        c_u = torch.from_numpy(c_u_np).to(z.device)
        # Fast path: the solution is sparse and most tokens activate no undesirable atom;
        # then z' == z exactly and the layer's output tensor is passed on untouched.
        if not c_u_np.any():
            return z, c_u
        edited = torch.addmm(zf, norm * c_u, self._d_u, alpha=-1.0)
        return edited.to(z.dtype), c_u

    def _removal_np(self, idx: np.ndarray, val: np.ndarray) -> np.ndarray:
        """``_removal`` on host codes: (m, n_u) float32 coefficients of the undesirable atoms."""
        pos = self._pos_np[idx]
        on = (pos >= 0) & (val != 0)
        c_u = np.zeros((idx.shape[0], self._n_u), np.float32)
        np.add.at(c_u, (np.nonzero(on)[0], pos[on]), val[on])
        return c_u

    def edit_token(
        self, hidden: Tensor, want_coef: bool
    ) -> tuple[Tensor | None, Tensor | None] | None:
        """A decode step's (1, 1, d) float32 CPU hidden state, edited by the fused kernel.

        Returns ``(edited or None when untouched, (1, 1, n_u) coefficients or None when not
        wanted)``, or None where this shortcut does not apply (another dtype or device, a
        tensor that needs grad or is not contiguous, a non-finite row, a row the kernel
        cannot certify): then the hook takes the general path, which gives the same answer
        or the error. The shortcut exists because in generation every torch or NumPy call
        on the way to the kernel runs with cold caches (see ``remove_token_lowp``).
        """
        # The cheapest tests first (each cold call counts; ``device.type`` builds an object).
        if self._fused is None or hidden.dtype is not torch.float32 or not hidden.is_cpu:
            return None
        if hidden.requires_grad:
            return None
        z = hidden.numpy()
        if not z.flags.c_contiguous:
            return None
        out = np.empty(z.shape, np.float32)
        # Without a recorder the kernel keeps the coefficients to itself.
        c_u = np.empty((1, 1, self._n_u), np.float32) if want_coef else _NO_COEF
        status, changed = self._remove_token(z, *self._fused, self._pos_np, self._d_u_np, c_u, out)
        if status != self._kernel_ok:
            return None
        coef = torch.from_numpy(c_u) if want_coef else None
        return (torch.from_numpy(out) if changed else None), coef

    def _edit_cpu(self, z: Tensor) -> tuple[Tensor, Tensor | None]:
        """``__call__`` on the CPU, in NumPy (the same formulas)."""
        zf = z.detach().float().numpy()
        if zf.shape[0] == 1 and self._fused is not None:
            c_u = np.zeros((1, self._n_u), np.float32)
            out = np.empty_like(zf)
            status, changed = self._remove_row(
                zf[0], *self._fused, self._pos_np, self._d_u_np, c_u[0], out[0]
            )
            if status == self._kernel_ok:
                if not changed:
                    return z, torch.from_numpy(c_u)
                return torch.from_numpy(out).to(z.dtype), torch.from_numpy(c_u)
            # Otherwise the general path below: it raises on non-finite input and
            # solves what the kernel could not certify.
        norm = np.linalg.norm(zf, axis=1, keepdims=True)
        idx, val = self._solve(torch.from_numpy(zf / np.maximum(norm, np.float32(_TINY))))
        c_u = self._removal_np(idx.numpy(), val.numpy())
        if not c_u.any():  # z' == z exactly: the layer's output is passed on untouched
            return z, torch.from_numpy(c_u)
        # The product runs in torch, on the model's own OpenMP threads. A NumPy matmul
        # would wake OpenBLAS's thread pool, whose workers then busy-wait for a while on
        # the cores that torch's threads need: the model's next layers ran 3-4x slower.
        coef = torch.from_numpy(c_u)
        edited = torch.addmm(
            torch.from_numpy(zf), torch.from_numpy(norm) * coef, self._d_u, alpha=-1.0
        )
        return edited.to(z.dtype), coef


@dataclass(frozen=True)
class PaCE:
    """PaCE sparse-coded removal (the paper's method), defaults from its authors.

    ``atom_dtype`` is the dtype the solver keeps the dictionary in: by default float32
    on CPU and float16 on accelerators (one half-precision pass over D per solve).
    ``center`` subtracts each layer's mean atom from its atoms and ``mean_atom`` adds that
    mean as one more benign atom (:mod:`pace.steering.transforms`; raw mean-activation
    atoms share a large component, and removing it breaks small models). The removed
    coefficients still cover the undesirable atoms only.

    ``deferred_check`` (CUDA, opt-in): run each layer's edit as one CUDA graph around the
    fixed-schedule solve, which never waits for the solver's optimality certificate (a
    host read stalls the model's kernel queue at every layer). A token row the schedule
    cannot certify (its support needs more working-set rounds than the schedule has) is
    then left unedited at that layer and counted; the handle reports the count
    (:attr:`~pace.steering.SteeringHandle.uncertified_rows`) and warns when removed. Off
    by default: on an H100 its serial working-set kernel made decoding slower than the
    general solver with its host reads (docs/benchmarks.md).
    """

    alpha: float = 0.05
    tau: float = 0.95
    atom_dtype: torch.dtype | None = None
    center: bool = False
    mean_atom: bool = False
    deferred_check: bool = False

    def __post_init__(self) -> None:
        if not self.alpha > 0:
            raise SteeringError(f"PaCE alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.tau <= 1.0:
            raise SteeringError(f"PaCE tau must be in [0, 1], got {self.tau}")

    def prepare(self, atoms: Tensor, undesirable: Tensor) -> LayerEdit:
        if not bool(undesirable.any()):
            return _identity  # z' == z exactly: no solve at all
        from pace.solver import ElasticNet  # the solver is optional until first use

        if self.center or self.mean_atom:
            atoms = center_layer(atoms, center=self.center, mean_atom=self.mean_atom)
            if self.mean_atom:
                undesirable = torch.cat([undesirable, undesirable.new_zeros(1)])
            zero = (atoms.float().norm(dim=1) == 0).nonzero().squeeze(1)
            if zero.numel():
                raise SteeringError(
                    f"atoms {zero[:5].tolist()} are zero once centered (equal to the mean atom)"
                )
        dtype = self.atom_dtype or (torch.float32 if atoms.device.type == "cpu" else torch.float16)
        solver = ElasticNet(atoms.to(dtype), alpha=self.alpha, tau=self.tau)
        return _PaCEEdit(solver, undesirable, unit_rows(atoms[undesirable]), self.deferred_check)


@dataclass(frozen=True)
class VecAdd:
    """Activation addition baseline: ``z' = z - scale * ||z|| * v``.

    ``v`` is the unit-norm mean of the unit-norm undesirable atoms, so ``scale`` is
    relative to each token's activation norm (comparable across layers).
    """

    scale: float = 0.5

    def prepare(self, atoms: Tensor, undesirable: Tensor) -> LayerEdit:
        if not bool(undesirable.any()):
            return _identity
        v = unit_rows(atoms[undesirable]).mean(dim=0)
        v = v / v.norm().clamp_min(_TINY)
        scale = float(self.scale)

        def edit(z: Tensor) -> tuple[Tensor, Tensor | None]:
            zf = z.float()
            edited = zf - scale * zf.norm(dim=1, keepdim=True) * v
            return edited.to(z.dtype), None

        return edit


@dataclass(frozen=True)
class OrthoProj:
    """Orthogonal projection baseline: remove z's component in span(undesirable atoms).

    ``rtol`` drops directions whose singular value is below ``rtol`` times the largest,
    so (near-)duplicate atoms do not make the projector ill-conditioned.
    """

    rtol: float = 1e-6

    def prepare(self, atoms: Tensor, undesirable: Tensor) -> LayerEdit:
        if not bool(undesirable.any()):
            return _identity
        d_u = unit_rows(atoms[undesirable]).double()
        _, s, vh = torch.linalg.svd(d_u, full_matrices=False)
        basis = vh[s > self.rtol * s.max()].float()  # (k, d) orthonormal rows

        def edit(z: Tensor) -> tuple[Tensor, Tensor | None]:
            zf = z.float()
            edited = zf - (zf @ basis.T) @ basis
            return edited.to(z.dtype), None

        return edit


@dataclass(frozen=True)
class NoOp:
    """Leave activations untouched (the hooks still run: a control and an overhead probe)."""

    def prepare(self, atoms: Tensor, undesirable: Tensor) -> LayerEdit:
        return _identity
