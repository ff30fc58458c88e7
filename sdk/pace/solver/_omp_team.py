"""Work run on torch's own OpenMP threads (GNU libgomp, as torch's Linux wheels ship).

A steering hook runs between two of the model's operations, while torch's OpenMP worker
threads busy-wait for the next one (libgomp spins for a while before it sleeps). Extra
threads of ours would share the cores with those spinning workers: on 2 cores, a prefill
solve split over a thread pool ran barely faster than on one thread (edits 522 -> 463 ms
per generation), and on torch's team, whose workers are already awake, it ran in 308 ms
(docs/benchmarks.md). ``team().run(n, fn)`` calls ``fn(i)`` on thread ``i`` of torch's
team, as one ``#pragma omp parallel`` region; ``fn`` should spend its time in code that
releases the GIL (the compiled solver does).

Where torch's runtime is not GNU libgomp (macOS, Windows, other builds), ``team()`` is
None and callers use their own threads.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["OmpTeam", "team"]

T = TypeVar("T")

_BODY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_lock = threading.Lock()
_team: OmpTeam | None = None
_probed = False


class OmpTeam:
    """torch's libgomp: ``GOMP_parallel`` and ``omp_get_thread_num``."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._parallel = lib.GOMP_parallel
        self._parallel.restype = None
        self._parallel.argtypes = [_BODY, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        self._thread_num = lib.omp_get_thread_num
        self._thread_num.restype = ctypes.c_int
        self._thread_num.argtypes = []

    def run(self, n: int, fn: Callable[[int], T]) -> list[T]:
        """``[fn(0), ..., fn(n - 1)]``, each on its own thread of the team where it has one.

        Parts the runtime gave no thread to (a smaller team than asked, say under
        ``OMP_THREAD_LIMIT``) run afterwards on the calling thread. An exception in
        ``fn`` is raised here, after the parallel region.
        """
        out: list[Any] = [_MISSING] * n
        errors: list[BaseException] = []

        def body(_: Any) -> None:  # on each thread of the team, with the GIL
            i = int(self._thread_num())
            if i >= n:
                return
            try:
                out[i] = fn(i)
            except BaseException as exc:  # re-raised after the region
                errors.append(exc)

        callback = _BODY(body)  # referenced until the region ends
        self._parallel(callback, None, n, 0)  # ctypes releases the GIL meanwhile
        if errors:
            raise errors[0]
        for i in range(n):
            if out[i] is _MISSING:
                out[i] = fn(i)
        return out


_MISSING = object()


def _torch_libgomp() -> ctypes.CDLL | None:
    """The libgomp torch runs its intra-op threads on, if that is its runtime."""
    import torch

    if "OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({ln.split()[-1] for ln in maps if "/libgomp" in ln})
    except OSError:  # not Linux
        return None
    torch_dir = os.path.dirname(torch.__file__)
    own = [p for p in paths if p.startswith(torch_dir)]
    # torch's wheel ships its own copy; other packages may load another one, whose
    # threads are not torch's. Without torch's copy, a single loaded one is torch's.
    pick = own if own else (paths if len(paths) == 1 else [])
    if not pick or not os.path.exists(pick[0]):
        return None
    try:
        return ctypes.CDLL(pick[0])
    except OSError:
        return None


def team() -> OmpTeam | None:
    """torch's OpenMP team, or None where torch's runtime is not GNU libgomp."""
    global _team, _probed
    with _lock:
        if not _probed:
            _probed = True
            lib = _torch_libgomp()
            if lib is not None and hasattr(lib, "GOMP_parallel"):
                _team = OmpTeam(lib)
        return _team
