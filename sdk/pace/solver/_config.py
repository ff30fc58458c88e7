"""Configuration of the elastic-net solver: a small frozen value object."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ElasticNetConfig"]


@dataclass(frozen=True)
class ElasticNetConfig:
    """Parameters of the elastic net and of the active-set solver.

    The problem, per row ``y`` and with ``D`` the unit-row atom matrix, is::

        argmin_c 1/2 ||y - D^T c||^2 + alpha * (tau * ||c||_1 + (1 - tau) / 2 * ||c||^2)
    """

    alpha: float = 0.05
    """Overall regularisation strength (> 0)."""
    tau: float = 0.95
    """Share of the L1 penalty, in [0, 1]: 1 is the lasso, 0 is ridge regression."""
    tol: float = 1e-6
    """KKT tolerance: an atom off the support may have ``|D_j (y - D^T c)| <= alpha*tau + tol``."""
    max_iter: int = 50
    """Most outer rounds (solve on the working set, check KKT on all atoms, grow)."""
    screen_size: int | None = None
    """Atoms in the first working set: those most correlated with ``y``. None picks per
    path: 8 for the compiled kernels on a cached Gram, where a KKT round reads a few
    Gram rows: a smaller start and one more round cost less than a larger working set,
    since the atoms most correlated with ``y`` are often not in its support while the
    KKT violators usually are (``bench/solver_kernel_ab.py --screen-a 16 --screen-b 8``);
    32 where each round passes over ``D``."""
    max_pdas_iter: int = 4
    """Most primal-dual active-set steps per working-set solve before the homotopy takes over."""
    fallback_iter: int = 20_000
    """Most proximal-gradient steps in the (rare) fallback for a working-set solve."""
    gram_max_n: int = 4096
    """Cache the full n x n Gram matrix when n is at most this (CPU only; 0 disables)."""
    cpu_rowwise: bool = True
    """On CPU, solve rows one at a time in NumPy (far less per-call overhead); False runs
    the batched torch path that CUDA uses."""
    fixed_schedule: bool = True
    """On CUDA (with Triton, which PyTorch's CUDA builds include), and on CPU with
    ``cpu_rowwise=False`` (with numba): build the fixed-schedule solve, which reads nothing
    back from the device until its end and is replayed as a CUDA graph
    (``pace.solver._fixed``). ``try_solve_sparse`` always uses it; ``solve`` uses it for
    batches of at least ``fixed_schedule_min_rows`` rows, then re-solves the rows it could
    not certify on the general path."""
    fixed_schedule_min_rows: int = 16
    """Smallest batch that ``solve`` sends to the fixed schedule. On an H100 at n = 10,000,
    d = 4,096 it was 1.7x faster than the general path at 64 rows but 1.8x slower at one
    row (docs/benchmarks.md), where its working-set kernel walks each path serially."""
    device_screen: int = 16
    """Fixed schedule: atoms in the first working set (those most correlated with ``y``)."""
    device_rounds: int = 6
    """Fixed schedule: growth rounds, each adding up to ``device_grow`` atoms that violate
    KKT to the working set (which holds ``device_screen + device_rounds * device_grow``).
    Many small rounds certify more rows than few large ones at the same capacity."""
    device_grow: int = 8
    """Fixed schedule: most atoms added to the working set per growth round."""
    device_gram_max_n: int = 16_384
    """Fixed schedule: cache the n x n Gram in fp16 when n is at most this (0 disables), so
    that a KKT check at small batch reads |W| rows of it instead of all the atoms. Built at
    the first call that reads it (200 MB at n = 10,000)."""
    cuda_graphs: bool = True
    """Fixed schedule on CUDA: replay it from a captured CUDA graph."""
    host_subproblem: bool = True
    """Outside the CPU row-wise path (on accelerators, or with ``cpu_rowwise=False``): solve
    the small working-set systems on the host with the compiled homotopy when numba is
    installed (one copy of ``H`` and ``b`` each way per round), instead of with batched
    torch steps on the device (``pace.solver._host``)."""
    host_rounds_max_rows: int = 16
    """Outside the CPU row-wise path, with ``host_subproblem``: batches of at most this many
    rows (decode steps) keep their working sets on the host, which picks the atoms and
    continues each row's homotopy from round to round, while the device only reads the
    dictionary: about 7 torch operations and two read-backs per round instead of about 30
    and five (``pace.solver._host_rounds``, ``bench/solver_rounds.py``). Batches that the fixed
    schedule takes (``fixed_schedule_min_rows``) never get here. 0 sends every batch
    through the general path."""
    compiled: bool = True
    """On CPU, run the compiled (numba) kernels when numba is installed: the whole solve
    for rows with a cached Gram, the working-set homotopy otherwise. False (or no numba)
    keeps the NumPy path. Either way the answer is KKT-checked on every atom."""

    def __post_init__(self) -> None:
        _check_positive_float("alpha", self.alpha)
        if not isinstance(self.tau, int | float) or not 0.0 <= float(self.tau) <= 1.0:
            raise ValueError(f"tau must be a number in [0, 1]; got {self.tau!r}")
        _check_positive_float("tol", self.tol)
        names = ("max_iter", "screen_size") if self.screen_size is not None else ("max_iter",)
        for name in (
            *names,
            "max_pdas_iter",
            "fallback_iter",
            "device_screen",
            "device_grow",
            "fixed_schedule_min_rows",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        for name in ("gram_max_n", "device_rounds", "device_gram_max_n", "host_rounds_max_rows"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer; got {value!r}")

    def screen(self, gram_kernel: bool) -> int:
        """``screen_size``, or its default for the path (see there)."""
        if self.screen_size is not None:
            return self.screen_size
        return 8 if gram_kernel else 32

    @property
    def l1(self) -> float:
        """The L1 weight ``alpha * tau`` (the soft threshold)."""
        return float(self.alpha) * float(self.tau)

    @property
    def l2(self) -> float:
        """The ridge weight ``alpha * (1 - tau)``."""
        return float(self.alpha) * (1.0 - float(self.tau))


def _check_positive_float(name: str, value: object) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(float(value))
        or float(value) <= 0.0
    ):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
