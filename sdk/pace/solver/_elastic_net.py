"""The exact, batched elastic-net solver: screening, active-set solves and a KKT check.

Per row ``y`` (used as given) and unit-row atoms ``D`` (n x d) it returns

    c* = argmin_c 1/2 ||y - D^T c||^2 + alpha * (tau ||c||_1 + (1 - tau)/2 ||c||^2).

The method (DESIGN.md section 2; You et al., CVPR 2016): one product ``r = D y`` screens
the atoms most correlated with ``y`` into a small working set ``W``; the problem restricted
to ``W`` (a k x k system on the Gram ``D_W D_W^T``) is solved exactly; one more product
checks the optimality conditions on every atom; atoms that violate them join ``W`` and
the loop repeats, warm-started. When no atom violates KKT, ``c`` is the optimum of the
whole problem. All rows of a batch go through together, each with its own working set
(padded to a common size).

Example::

    solver = ElasticNet(atoms.to("cuda", torch.float16), alpha=0.05, tau=0.95)
    c = solver.solve(y)                 # (b, n) float32, exact zeros off the support
    idx, val = solver.solve_sparse(y)   # (b, k) indices and values, cheaper to apply
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import numpy as np
import torch

from pace.solver import _compiled, _jit_cache, _triton_homotopy
from pace.solver._config import ElasticNetConfig
from pace.solver._errors import ConvergenceError
from pace.solver._fixed import FixedSchedule, Systems
from pace.solver._graphs import GraphedFunction
from pace.solver._host import solve_on_host
from pace.solver._host_rounds import NonFiniteScreen, solve_host_rounds
from pace.solver._kkt import unit_rows
from pace.solver._parallel import solve_gram_rows_threaded, solve_lowp_rows_threaded
from pace.solver._screen import LowpAtoms, quantize_rows
from pace.solver._single import solve_rows
from pace.solver._subproblem import solve_working_set

__all__ = ["ElasticNet", "SparseCodes", "elastic_net"]

# How far a KKT gradient computed with a low-precision pass over D can be from the exact
# one, relative to ||y - D^T c||: the rounding of the residual to the pass dtype (unit
# roundoff u) plus the accumulation, with a safety factor. Atoms within this margin of the
# threshold are pulled into the working set, where they are solved in fp32, so the margin
# only costs a slightly larger working set, never exactness.
_PASS_MARGIN: dict[torch.dtype, float] = {
    torch.float16: 2e-3,
    torch.bfloat16: 1.6e-2,
    torch.float32: 1e-3,  # CUDA may run fp32 products in TF32
    torch.float64: 0.0,
}

_NO_GRAM = np.empty((0, 0), np.float32)
"""The compiled kernel's ``gram`` where none is cached: it then checks KKT by int8 passes."""


class SparseCodes(NamedTuple):
    """Per-row working-set coefficients: ``c[i, indices[i, j]] = values[i, j]``.

    Padding slots repeat a valid index with value 0, so ``scatter_add`` and
    ``values @ atoms[indices]`` are both correct without a mask.
    """

    indices: torch.Tensor
    """(b, k) int64 atom indices."""
    values: torch.Tensor
    """(b, k) float32 coefficients (0 where the atom is off the support)."""


class ElasticNet:
    """An elastic-net solver bound to one dictionary, kept resident on its device.

    Args:
        atoms: (n, d) floating tensor, any dtype and device. Rows are scaled to unit norm
            once and kept in the atoms' dtype (fp16/bf16 on GPU is the intended use); the
            small working-set systems are solved in fp32 (fp64 for fp64 atoms).
        alpha: overall strength (> 0); overrides ``config.alpha`` when given.
        tau: L1 share in [0, 1]; overrides ``config.tau`` when given.
        config: solver settings; defaults to ``ElasticNetConfig()``.

    Raises:
        ValueError: atoms are not a 2-D floating tensor, are empty, non-finite or have a
            zero row, or a parameter is out of range.
    """

    def __init__(
        self,
        atoms: torch.Tensor,
        *,
        alpha: float | None = None,
        tau: float | None = None,
        config: ElasticNetConfig | None = None,
    ) -> None:
        cfg = config if config is not None else ElasticNetConfig()
        if alpha is not None:
            cfg = replace(cfg, alpha=alpha)
        if tau is not None:
            cfg = replace(cfg, tau=tau)
        _check_atoms(atoms)
        self._config = cfg
        self._atoms = unit_rows(atoms.detach())
        cpu = self._atoms.device.type == "cpu"
        self._solve_dtype = torch.float64 if atoms.dtype == torch.float64 else torch.float32
        # CPU half-precision matmuls are slow and inexact: compute on an fp32 copy there.
        self._compute = self._atoms.to(self._solve_dtype) if cpu else self._atoms
        self._margin = 0.0 if cpu else _PASS_MARGIN.get(self._atoms.dtype, 2e-2)
        n = self._atoms.shape[0]
        self._gram: torch.Tensor | None = None
        if cpu and n <= cfg.gram_max_n:
            # With the Gram cached, the KKT check costs k*n per row instead of n*d.
            # Symmetrised exactly, so the compiled kernel may read either triangle.
            gram = self._compute @ self._compute.T
            self._gram = (gram + gram.T).mul_(0.5)
        # Working-set systems on the host (compiled homotopy) rather than on the device.
        self._host_subproblem = (
            cfg.host_subproblem and cfg.compiled and _compiled.AVAILABLE and cfg.l1 > 0.0
        )
        self._ridge_factor: torch.Tensor | None = None
        # The fixed-schedule solve (no host reads; a CUDA graph on CUDA), where a
        # working-set solver for it exists; rows it cannot certify go to the general path.
        self._schedule: FixedSchedule | None = None
        self._graphed: GraphedFunction | None = None
        systems = self._schedule_systems(cfg, cpu)
        if systems is not None:
            self._schedule = self._fixed_schedule(cfg, systems)
            self._graphed = GraphedFunction(self._schedule, max_shapes=4)
            if not cfg.cuda_graphs:
                self._graphed.capture_error = "disabled by ElasticNetConfig.cuda_graphs"
        self._gram_np: np.ndarray | None = None
        # The compiled kernel's fixed arguments, when it applies: CPU, fp32 atoms (one
        # compiled signature keeps the one-off JIT cost down; fp64 atoms take the NumPy
        # path) and an L1 term. Without a Gram (n above gram_max_n) each of its KKT checks
        # is one more int8 pass over D.
        self._kernel_args: tuple[float, float, float, int, int] | None = None
        # A decode step (one row) screens with an int8 copy of the atoms: a quarter of the
        # bytes of the memory-bound pass, exact where it matters (pace.solver._screen).
        self._screen: LowpAtoms | None = None
        self._compute_np: np.ndarray | None = None
        if (
            cpu
            and cfg.cpu_rowwise
            and cfg.compiled
            and _compiled.AVAILABLE
            and self._compute.dtype == torch.float32
            and cfg.l1 > 0.0
        ):
            if self._gram is not None:
                self._gram_np = self._gram.numpy()
            screen = cfg.screen(self._gram is not None)
            self._kernel_args = (cfg.l1, cfg.l2, cfg.tol, screen, cfg.max_iter)
            self._compute_np = self._compute.numpy()
            self._screen = quantize_rows(self._compute_np)
            _jit_cache.announce_compile()  # a long first compile comes if not cached

    @property
    def n(self) -> int:
        """Number of atoms."""
        return int(self._atoms.shape[0])

    @property
    def d(self) -> int:
        """Dimension of each atom (the hidden size)."""
        return int(self._atoms.shape[1])

    @property
    def device(self) -> torch.device:
        """Where the atoms live; ``y`` must be on the same device."""
        return self._atoms.device

    @property
    def dtype(self) -> torch.dtype:
        """The atoms' storage dtype."""
        return self._atoms.dtype

    @property
    def atoms(self) -> torch.Tensor:
        """(n, d) unit-norm atoms as used by the solver, in the storage dtype."""
        return self._atoms

    @property
    def cpu_row_kernel_args(self) -> tuple[object, ...] | None:
        """For ``pace.steering``: the solver's arguments of ``_compiled.remove_row_lowp``.

        ``(q, scale, col, err, atoms, gram, l1, l2, tol, screen, max_rounds)`` where the
        single-row CPU kernel applies (numba, fp32 atoms, an L1 term), else None; ``gram``
        is (0, 0) where none is cached.
        """
        if self._screen is None or self._kernel_args is None:
            return None
        s = self._screen
        gram = self._gram_np if self._gram_np is not None else _NO_GRAM
        return (s.q, s.scale, s.col, s.err, self._compute_np, gram, *self._kernel_args)

    @property
    def config(self) -> ElasticNetConfig:
        """The solver settings, including ``alpha`` and ``tau``."""
        return self._config

    def solve(self, y: torch.Tensor, *, warm_start: SparseCodes | None = None) -> torch.Tensor:
        """Solve the elastic net for each row of ``y``.

        Args:
            y: (b, d) or (d,) floating tensor on the solver's device.
            warm_start: an earlier ``solve_sparse`` result for the same batch size (say,
                this layer at the previous token). It only seeds the working set and the
                first active-set guess (CPU path); the answer is the same optimum either
                way, usually sooner when the supports overlap.

        Returns:
            (b, n) float32 coefficients, or (n,) for a 1-D ``y``; exact zeros off the support.

        Raises:
            ValueError: bad shape, dtype, device or non-finite values.
            ConvergenceError: the KKT conditions still fail after ``config.max_iter`` rounds.
        """
        one = self._check_y(y, finite=not self._host_rounds_check_finite(y))
        codes = self._solve_codes(y.detach().reshape(-1, self.d), warm_start)
        out = torch.zeros(codes.values.shape[0], self.n, dtype=torch.float32, device=self.device)
        out.scatter_add_(1, codes.indices, codes.values)
        return out[0] if one else out

    def solve_sparse(
        self, y: torch.Tensor, *, warm_start: SparseCodes | None = None, on_host: bool = False
    ) -> SparseCodes:
        """Like ``solve`` but return each row's working set and its coefficients.

        The support is the slots with nonzero ``values``. For a 1-D ``y`` the result has
        a leading batch dimension of 1. With ``on_host`` the codes come back as CPU
        tensors, for a caller that reads them there: small batches on an accelerator are
        solved with their rounds on the host (``ElasticNetConfig.host_rounds_max_rows``),
        and then they never travel to the device and back.
        """
        self._check_y(y, finite=not self._host_rounds_check_finite(y))
        codes = self._solve_codes(y.detach().reshape(-1, self.d), warm_start, on_host)
        return SparseCodes(codes.indices.cpu(), codes.values.cpu()) if on_host else codes

    @property
    def device_schedule(self) -> FixedSchedule | None:
        """The fixed-schedule solve ``y -> (indices, values, ok)``, where there is one.

        It reads nothing back from the device, so it can be captured inside a larger CUDA
        graph (the steering edit does). Rows with ``ok`` False have zero values.
        """
        return self._schedule

    def try_solve_sparse(self, y: torch.Tensor) -> tuple[SparseCodes, torch.Tensor]:
        """Solve without reading anything back from the device; returns ``(codes, ok)``.

        With the fixed schedule (CUDA) this returns at once: ``ok`` (b,) bool, on the
        device, says which rows are certified optimal. Rows that are not (rare) have
        all-zero ``values``; re-solve them with ``solve_sparse`` or leave them alone.
        Without it, this is ``solve_sparse`` with every row ``ok``. Unlike ``solve_sparse``
        it does not check ``y`` for NaN or Inf (a read-back): such rows come back not ``ok``.
        """
        if self._graphed is None:
            codes = self.solve_sparse(y)
            return codes, torch.ones(codes.indices.shape[0], dtype=torch.bool, device=self.device)
        self._check_y(y, finite=False)
        idx, val, ok = self._graphed(y.detach().reshape(-1, self.d).float())
        return SparseCodes(idx, val), ok

    # -- the algorithm ------------------------------------------------------------------

    def _schedule_systems(self, cfg: ElasticNetConfig, cpu: bool) -> Systems | None:
        """The working-set solver for the fixed schedule here, or None (no fixed schedule)."""
        if not cfg.fixed_schedule or cfg.l1 <= 0.0 or self._solve_dtype != torch.float32:
            return None
        if self.device.type == "cuda" and _triton_homotopy.AVAILABLE:
            return _triton_homotopy.homotopy_systems
        if cpu and not cfg.cpu_rowwise and self._host_subproblem:
            return solve_on_host  # the same schedule on the CPU (it syncs; for testing)
        return None

    def _fixed_schedule(self, cfg: ElasticNetConfig, systems: Systems) -> FixedSchedule:
        return FixedSchedule(
            atoms=self._compute,
            l1=cfg.l1,
            l2=cfg.l2,
            tol=cfg.tol,
            margin=self._margin,
            gram=None,
            systems=systems,
            screen_size=cfg.device_screen,
            grow=cfg.device_grow,
            rounds=cfg.device_rounds,
            make_gram=self.n <= cfg.device_gram_max_n,
        )

    def _solve_fixed(self, y: torch.Tensor) -> SparseCodes:
        """The fixed-schedule solve, with the rows it cannot certify solved again."""
        assert self._graphed is not None
        idx, val, ok = self._graphed(y.float())
        if bool(ok.all()):
            return SparseCodes(idx, val)
        bad = (~ok).nonzero().squeeze(1)
        redo = self._solve_general(y.index_select(0, bad), None)
        width = max(idx.shape[1], redo.indices.shape[1])
        idx, val = _widen(idx, val, width)
        redo_idx, redo_val = _widen(redo.indices, redo.values, width)
        return SparseCodes(idx.index_copy(0, bad, redo_idx), val.index_copy(0, bad, redo_val))

    def _solve_codes(
        self, y: torch.Tensor, warm_start: SparseCodes | None = None, on_host: bool = False
    ) -> SparseCodes:
        self._check_warm_start(warm_start, y.shape[0])
        if self._kernel_args is not None and y.shape[0] > 0:
            # The CPU hot path: no autograd context needed (y is detached, D has no grad).
            codes = self._solve_compiled(y, warm_start)
            if codes is not None:
                return codes
        if (
            self._graphed is not None
            and y.shape[0] >= max(1, self._config.fixed_schedule_min_rows)
            and warm_start is None
        ):
            return self._solve_fixed(y)
        return self._solve_general(y, warm_start, on_host)

    @torch.no_grad()
    def _solve_general(
        self, y: torch.Tensor, warm_start: SparseCodes | None, on_host: bool = False
    ) -> SparseCodes:
        """The general path; with ``on_host`` the host rounds leave their codes there."""
        cfg = self._config
        bsz, n = y.shape[0], self.n
        if bsz == 0:
            empty = torch.zeros(0, 0, device=self.device)
            return SparseCodes(empty.long(), empty)
        if cfg.l1 == 0.0:
            return self._ridge(y)
        if self.device.type == "cpu" and cfg.cpu_rowwise:
            rowwise = self._solve_rowwise(y, _warm_rows(warm_start))
            if rowwise is not None:
                return rowwise
        sd = self._solve_dtype
        host = self._host_subproblem
        if self._host_rounds_fit(bsz):
            try:
                got = solve_host_rounds(
                    self._compute,
                    y,
                    solve_dtype=sd,
                    l1=cfg.l1,
                    l2=cfg.l2,
                    tol=cfg.tol,
                    margin=self._margin,
                    screen=min(n, cfg.screen(False)),
                    max_rounds=cfg.max_iter,
                    out_device=torch.device("cpu") if on_host else self.device,
                )
            except NonFiniteScreen:
                self._check_y(y)  # raises where y is not finite (else: the pass overflowed)
                got = None
            if got is not None:
                return SparseCodes(*got)
        y_pass = y.to(self._compute.dtype)
        y_exact = y.to(sd)
        r = (y_pass @ self._compute.T).to(sd)  # the screening pass
        k = min(n, cfg.screen(False))
        w = torch.topk(r.abs(), k, dim=1, sorted=False).indices
        valid = torch.ones(bsz, k, dtype=torch.bool, device=self.device)
        c = torch.zeros(bsz, k, dtype=sd, device=self.device)
        for _ in range(cfg.max_iter):
            h, b, dw = self._system(w, r, y_exact)
            c = self._solve_systems(h, b, c, valid, host)
            if w.shape[1] >= n and bool(valid.all()):
                break  # every atom is in the working set: nothing left to check
            viol, score = self._violators(w, c, r, y_exact, dw)
            counts = viol.sum(dim=1)
            m = int(counts.max())
            if m == 0:
                break
            # Grow by the worst violators, at most doubling the working set per round.
            m = min(m, max(w.shape[1], cfg.screen(False)))
            top = torch.topk(torch.where(viol, score, -1.0), m, dim=1)
            new_valid = top.values >= 0
            new = torch.where(new_valid, top.indices, w[:, :1])
            w = torch.cat([w, new], dim=1)
            valid = torch.cat([valid, new_valid], dim=1)
            c = torch.cat([c, torch.zeros(bsz, m, dtype=sd, device=self.device)], dim=1)
        else:
            raise ConvergenceError(
                f"the KKT conditions still fail after max_iter={cfg.max_iter} rounds; "
                "raise ElasticNetConfig.max_iter or screen_size"
            )
        return SparseCodes(w, (c * valid).float())

    def _solve_systems(
        self,
        h: torch.Tensor,
        b: torch.Tensor,
        c: torch.Tensor,
        valid: torch.Tensor,
        host: bool,
    ) -> torch.Tensor:
        """Every row's working-set system, exactly: on the host where configured."""
        cfg = self._config
        if host:
            c_host, ok = solve_on_host(h, b, valid, cfg.l1, cfg.tol)
            if bool(ok.all()):
                return c_host
            bad = ~ok
            c_host[bad] = solve_working_set(
                h[bad],
                b[bad],
                cfg.l1,
                c[bad],
                valid[bad],
                max_pdas_iter=cfg.max_pdas_iter,
                fallback_iter=cfg.fallback_iter,
                tol=cfg.tol,
            )
            return c_host
        return solve_working_set(
            h,
            b,
            cfg.l1,
            c,
            valid,
            max_pdas_iter=cfg.max_pdas_iter,
            fallback_iter=cfg.fallback_iter,
            tol=cfg.tol,
        )

    def _check_warm_start(self, warm_start: SparseCodes | None, bsz: int) -> None:
        """Raise ValueError unless ``warm_start`` is None or fits ``bsz`` rows of this solver."""
        if warm_start is None:
            return
        idx, val = warm_start
        if idx.shape != val.shape or idx.ndim != 2 or idx.shape[0] != bsz:
            raise ValueError(
                f"warm_start must hold (b, k) indices and values for b = {bsz} rows; got "
                f"{tuple(idx.shape)} and {tuple(val.shape)}"
            )
        if idx.device.type == "cpu":
            idx_np = idx.numpy()
            bad = idx_np.size > 0 and (int(idx_np.min()) < 0 or int(idx_np.max()) >= self.n)
        else:
            bad = idx.numel() > 0 and (int(idx.min()) < 0 or int(idx.max()) >= self.n)
        if bad:
            raise ValueError(f"warm_start indices must lie in [0, {self.n})")

    def _solve_compiled(
        self, y: torch.Tensor, warm_start: SparseCodes | None
    ) -> SparseCodes | None:
        """All rows in the compiled kernel; None if any row needs the safe path."""
        assert self._kernel_args is not None
        yc = y if y.dtype == self._compute.dtype else y.to(self._compute.dtype)
        bsz = yc.shape[0]
        if warm_start is None:
            seeds, seed_on = np.zeros((bsz, 0), np.int64), np.zeros((bsz, 0), np.bool_)
        else:
            # The earlier supports (nonzero values) join the screened working sets.
            seeds = np.ascontiguousarray(warm_start.indices.cpu().numpy(), dtype=np.int64)
            seed_on = (warm_start.values.detach() != 0).cpu().numpy()
        lowp = self.cpu_row_kernel_args
        if bsz == 1 and lowp is not None:
            # A decode step: the kernel makes its own int8 pass (a quarter of fp32's bytes).
            y_np = np.ascontiguousarray(yc.numpy())
            idx, val_out, status = _compiled.solve_lowp_rows(y_np, *lowp, seeds, seed_on)
        elif self._gram_np is None and lowp is not None:
            # Several rows and no Gram: each row as a decode step (each KKT check is an
            # int8 pass), the rows spread over torch's CPU threads.
            y_np = np.ascontiguousarray(yc.numpy())
            idx, val_out, status = solve_lowp_rows_threaded(
                y_np, lowp, seeds, seed_on, torch.get_num_threads()
            )
        else:
            assert self._gram_np is not None
            r = (yc @ self._compute.T).numpy()  # the one pass over D, all rows at once
            # Several rows (a prefill): spread them over torch's CPU threads, idle meanwhile.
            idx, val_out, status = solve_gram_rows_threaded(
                r, self._gram_np, self._kernel_args, seeds, seed_on, torch.get_num_threads()
            )
        if status != _compiled.OK:
            return None
        return SparseCodes(torch.from_numpy(idx), torch.from_numpy(val_out))

    def _solve_rowwise(
        self, y: torch.Tensor, warm: list[tuple[np.ndarray, np.ndarray]] | None = None
    ) -> SparseCodes | None:
        """Rows solved one by one in NumPy, passes batched; None if any needs the safe path."""
        cfg = self._config
        if self._gram_np is None and self._gram is not None:
            self._gram_np = self._gram.numpy()
        rows = solve_rows(
            y,
            self._compute,
            self._gram_np,
            l1=cfg.l1,
            l2=cfg.l2,
            tol=cfg.tol,
            screen_size=cfg.screen(False),
            max_rounds=cfg.max_iter,
            max_pdas_iter=cfg.max_pdas_iter,
            warm=warm,
            compiled=cfg.compiled and _compiled.AVAILABLE,
        )
        if rows is None:
            return None
        k = max(len(w) for w, _ in rows)
        idx = torch.zeros(len(rows), k, dtype=torch.int64)
        val = torch.zeros(len(rows), k, dtype=torch.float32)
        for i, (w, c) in enumerate(rows):
            idx[i, : len(w)] = torch.from_numpy(w)
            idx[i, len(w) :] = int(w[0])
            val[i, : len(w)] = torch.from_numpy(c)
        return SparseCodes(idx, val)

    def _system(
        self, w: torch.Tensor, r: torch.Tensor, y_exact: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The working-set system ``H = D_W D_W^T + l2 I`` and ``b = D_W y``, per row."""
        l2 = self._config.l2
        if self._gram is not None:
            h = self._gram[w.unsqueeze(-1), w.unsqueeze(-2)]
            b = r.gather(1, w)
            dw = None
        else:
            dw = self._compute[w].to(self._solve_dtype)  # (B, k, d)
            h = dw @ dw.transpose(1, 2)
            # The screening pass may be half precision; b enters the solution, so recompute.
            b = (dw @ y_exact.unsqueeze(-1)).squeeze(-1)
        h = h + l2 * torch.eye(w.shape[1], dtype=h.dtype, device=h.device)
        return h, b, dw

    def _violators(
        self,
        w: torch.Tensor,
        c: torch.Tensor,
        r: torch.Tensor,
        y_exact: torch.Tensor,
        dw: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Atoms outside ``W`` whose KKT condition may fail, and their ``|g_j|``."""
        cfg = self._config
        if self._gram is not None:
            g = r - (c.unsqueeze(1) @ self._gram[w]).squeeze(1)
            slack = torch.zeros((), dtype=g.dtype, device=g.device)
        else:
            assert dw is not None
            res = y_exact - (c.unsqueeze(1) @ dw).squeeze(1)
            g = (res.to(self._compute.dtype) @ self._compute.T).to(res.dtype)
            slack = self._margin * res.norm(dim=1, keepdim=True)
        score = g.abs().scatter_(1, w, 0.0)
        return score > cfg.l1 + cfg.tol - slack, score

    def _ridge(self, y: torch.Tensor) -> SparseCodes:
        """tau = 0: ``c = D (D^T D + l2 I)^{-1} y`` (push-through), one d x d factor."""
        sd = self._solve_dtype
        if self._ridge_factor is None:
            a = self._compute.to(sd)
            eye = torch.eye(self.d, dtype=sd, device=self.device)
            self._ridge_factor = torch.linalg.cholesky(a.T @ a + self._config.l2 * eye)
        z = torch.cholesky_solve(y.to(sd).T, self._ridge_factor).T
        c = (z.to(self._compute.dtype) @ self._compute.T).float()
        idx = torch.arange(self.n, device=self.device).expand(y.shape[0], -1)
        return SparseCodes(idx, c)

    def _host_rounds_fit(self, rows: int) -> bool:
        """Whether the general path gives a batch of ``rows`` to the host rounds."""
        return self._host_subproblem and rows <= self._config.host_rounds_max_rows

    def _host_rounds_check_finite(self, y: torch.Tensor) -> bool:
        """Whether ``y`` goes to the host rounds, which see a non-finite ``y`` in their
        first read-back: then checking it first would cost an accelerator one more wait.
        (Neither the CPU row-wise path nor the fixed schedule hands it to the general path.)"""
        cfg = self._config
        rows = y.shape[0] if y.ndim == 2 else 1
        return (
            self._host_rounds_fit(rows)
            and not (self.device.type == "cpu" and cfg.cpu_rowwise)
            and not (self._graphed is not None and rows >= cfg.fixed_schedule_min_rows)
        )

    def _check_y(self, y: torch.Tensor, *, finite: bool = True) -> bool:
        if not isinstance(y, torch.Tensor):
            raise ValueError(f"y must be a torch.Tensor; got {type(y).__name__}")
        if not y.is_floating_point():
            raise ValueError(f"y must be a floating-point tensor; got dtype {y.dtype}")
        if y.ndim not in (1, 2) or y.shape[-1] != self.d:
            raise ValueError(
                f"y must have shape (b, {self.d}) or ({self.d},); got {tuple(y.shape)}"
            )
        if y.device != self.device:
            raise ValueError(f"y is on {y.device} but the atoms are on {self.device}")
        if not finite:
            return y.ndim == 1
        if y.device.type == "cpu" and y.dtype in (torch.float32, torch.float64):
            # NumPy's check costs a few microseconds here, torch's about 20 (hot path).
            finite = bool(np.isfinite(y.detach().numpy()).all())
        else:
            finite = bool(torch.isfinite(y).all())
        if not finite:
            raise ValueError("y contains NaN or infinite values")
        return y.ndim == 1


def elastic_net(
    atoms: torch.Tensor,
    y: torch.Tensor,
    *,
    alpha: float = 0.05,
    tau: float = 0.95,
    config: ElasticNetConfig | None = None,
) -> torch.Tensor:
    """One-shot ``ElasticNet(atoms, alpha=alpha, tau=tau, config=config).solve(y)``."""
    return ElasticNet(atoms, alpha=alpha, tau=tau, config=config).solve(y)


def _warm_rows(warm_start: SparseCodes | None) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Per row ``(distinct support indices, their values)`` of a validated warm start."""
    if warm_start is None:
        return None
    idx, val = warm_start
    rows = []
    for i_row, v_row in zip(idx.cpu().numpy(), val.detach().double().cpu().numpy(), strict=True):
        on = v_row != 0
        uniq, first = np.unique(i_row[on], return_index=True)
        rows.append((uniq.astype(np.int64), v_row[on][first]))
    return rows


def _widen(idx: torch.Tensor, val: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad (b, k) codes to ``width`` slots: repeated first index, value 0."""
    extra = width - idx.shape[1]
    if extra <= 0:
        return idx, val
    pad_idx = idx[:, :1].expand(-1, extra)
    return torch.cat([idx, pad_idx], dim=1), torch.cat([val, val.new_zeros(val.shape[0], extra)], 1)


def _check_atoms(atoms: torch.Tensor) -> None:
    if not isinstance(atoms, torch.Tensor):
        raise ValueError(f"atoms must be a torch.Tensor; got {type(atoms).__name__}")
    if not atoms.is_floating_point():
        raise ValueError(f"atoms must be a floating-point tensor; got dtype {atoms.dtype}")
    if atoms.ndim != 2 or atoms.shape[0] < 1 or atoms.shape[1] < 1:
        raise ValueError(f"atoms must have shape (n, d) with n, d >= 1; got {tuple(atoms.shape)}")
    norms = atoms.float().norm(dim=1)
    if not bool(torch.isfinite(norms).all()):
        raise ValueError("atoms contain NaN or infinite values")
    if bool((norms == 0).any()):
        bad = int((norms == 0).nonzero()[0, 0])
        raise ValueError(f"atom {bad} is all zeros and cannot be scaled to unit norm")
