"""Rows of one compiled solve spread over a few threads (the kernel releases the GIL).

A prefill hands the solver every prompt token of a layer at once (tens of rows), while
the model's own threads wait for the hook to return. The compiled kernel is ``nogil``,
so threads solve disjoint rows in parallel. Rows cost very differently (a few path
events or a hundred), so they are not dealt out in advance: each thread takes the next
small chunk of neighbouring rows until none is left. The threads are torch's own OpenMP
team where torch runs on GNU libgomp (``pace.solver._omp_team``: its workers are awake
and would otherwise spin beside ours), else a small pool of our own.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

from pace.solver import _compiled, _omp_team

__all__ = ["solve_gram_rows_threaded"]

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


_CHUNK = 2  # rows per claim: small enough to balance, large enough to amortise a call
_Chunk = tuple[int, npt.NDArray[np.int64], npt.NDArray[np.float32]]  # first row, idx, val


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
    bsz = r.shape[0]
    workers = max(1, min(workers, (bsz + _CHUNK - 1) // _CHUNK))
    if workers == 1:
        out: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], int]
        out = _compiled.solve_gram_rows(r, gram, *kernel_args, seeds, seed_on)
        return out

    claims = iter(range(0, bsz, _CHUNK))  # next() is atomic under the GIL
    failed: list[int] = []

    def part(w: int) -> list[_Chunk]:
        done: list[_Chunk] = []
        for start in claims:
            if failed:
                break
            end = min(start + _CHUNK, bsz)
            idx, val, status = _compiled.solve_gram_rows(
                r[start:end], gram, *kernel_args, seeds[start:end], seed_on[start:end]
            )
            if status != _compiled.OK:
                failed.append(int(status))
                break
            done.append((start, idx, val))
        return done

    team = _omp_team.team()
    if team is not None:
        parts = team.run(workers, part)
    else:
        pool = _executor(workers)
        parts = [f.result() for f in [pool.submit(part, w) for w in range(workers)]]
    if failed:
        return np.zeros((bsz, 0), np.int64), np.zeros((bsz, 0), np.float32), failed[0]
    chunks = [c for got in parts for c in got]
    kmax = max(c[1].shape[1] for c in chunks)
    idx = np.empty((bsz, kmax), np.int64)
    val = np.zeros((bsz, kmax), np.float32)
    for start, c_idx, c_val in chunks:
        end, k = start + c_idx.shape[0], c_idx.shape[1]
        idx[start:end, :k] = c_idx
        idx[start:end, k:] = c_idx[:, :1]  # padding repeats the row's first index
        val[start:end, :k] = c_val
    return idx, val, _compiled.OK
