"""Rows of one compiled solve spread over a few threads (the kernel releases the GIL).

A prefill hands the solver every prompt token of a layer at once (tens of rows), while
the model's own threads wait for the hook to return. The compiled kernel is ``nogil``,
so threads solve disjoint rows in parallel. Rows cost very differently (a few path
events or a hundred), so they are not dealt out in advance: every thread makes one call
of ``_compiled.solve_gram_rows_shared`` (or ``solve_lowp_rows_shared``, where no Gram is
cached), which claims the next rows with an atomic
counter until none are left. The threads are torch's own OpenMP team where torch runs
on GNU libgomp (``pace.solver._omp_team``: its workers are awake and would otherwise
spin beside ours), else a small pool of our own.

No thread waits for the interpreter in between: a thread that waits for the GIL sleeps,
its CPU goes idle, and on a shared (virtual) machine an idle CPU may be handed to
someone else and come back late. Claiming rows in Python, a chunk at a time, slept about
twice per layer (64-67 voluntary context switches per prefill, against 28-30 now); in the
busiest minutes, torch's workers put to sleep in a hook made the next layers run up to
three times slower, though the old claims showed no such effect in quieter runs
(``docs/benchmarks.md``).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

from pace.solver import _compiled, _omp_team

__all__ = ["solve_gram_rows_threaded", "solve_lowp_rows_threaded"]

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < workers:
            old = _pool
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pace-solver")
            _pool_size = workers
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def solve_gram_rows_threaded(
    r: npt.NDArray[Any],
    gram: npt.NDArray[Any],
    kernel_args: tuple[float, float, float, int, int],
    seeds: npt.NDArray[np.int64],
    seed_on: npt.NDArray[np.bool_],
    workers: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], int]:
    """``_compiled.solve_gram_rows`` with the rows split over ``workers`` threads.

    Same result layout: (b, k) indices and values, each row padded with its first index
    and value 0; a status other than OK if any row failed.
    """
    head = (r, gram, *kernel_args, seeds, seed_on)
    return _threaded(_compiled.solve_gram_rows, "solve_gram_rows_shared", head, r.shape[1], workers)


def solve_lowp_rows_threaded(
    y: npt.NDArray[np.float32],
    lowp: tuple[Any, ...],
    seeds: npt.NDArray[np.int64],
    seed_on: npt.NDArray[np.bool_],
    workers: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], int]:
    """``_compiled.solve_lowp_rows`` with the rows split over ``workers`` threads; ``lowp``
    is its arguments between ``y`` and the seeds (``ElasticNet.cpu_row_kernel_args``)."""
    head = (y, *lowp, seeds, seed_on)
    n = lowp[0].shape[0]
    return _threaded(_compiled.solve_lowp_rows, "solve_lowp_rows_shared", head, n, workers)


def _threaded(
    one: Any, shared: str, head: tuple[Any, ...], n: int, workers: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], int]:
    """The compiled kernel ``one(*head)`` with its rows claimed by ``workers`` threads, each
    making one call of ``_compiled.<shared>`` (looked up at call time)."""
    bsz = head[0].shape[0]
    claims = _compiled.ROWS_PER_CLAIM
    workers = max(1, min(workers, (bsz + claims - 1) // claims))
    if workers == 1:
        out: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], int] = one(*head)
        return out

    next_row = np.zeros(1, np.int64)
    idx = np.empty((bsz, n), np.int64)
    val = np.empty((bsz, n), np.float32)
    counts = np.zeros(bsz, np.int64)
    status = np.zeros(1, np.int64)
    args = (*head, next_row, idx, val, counts, status)
    kernel = getattr(_compiled, shared)

    def part(_: int) -> None:
        kernel(*args)

    team = _omp_team.team()
    if team is not None:
        team.run(workers, part)
    else:
        for f in [_executor(workers).submit(part, w) for w in range(workers)]:
            f.result()
    result: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], int]
    result = _compiled.rows_result(idx, val, counts, status)
    return result
