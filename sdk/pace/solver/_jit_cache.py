"""Say so, once, when the CPU kernels are about to be compiled rather than loaded.

The compiled kernels (``pace.solver._compiled``) are JIT-compiled by numba on first use
and cached on disk. Loading them from that cache takes under a second; compiling them
takes about 40 seconds on a 2-core machine (``bench/solver_compile.py``), and the first
steered step waits for it. Without a word, that wait looks like a hang. So the first CPU
solver of a process checks numba's cache index for the kernels that every CPU path
calls, and logs one warning (logger ``pace.solver``) if one is missing for this
machine's CPU: a first run, a new numba or pace version, or no cache directory numba can
write.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pace.solver import _compiled

__all__ = ["announce_compile", "cached"]

logger = logging.getLogger("pace.solver")

SHARED = ("_solve_row", "_homotopy")
"""The kernels that every CPU path calls (a decode edit, a prefill, ``solve``): compiling
them is most of the wait. numba caches each jitted function on its own, so once these are
cached, a path not used before compiles only its own thin entry point (seconds)."""

MESSAGE = (
    "compiling pace's CPU solver kernels with numba: once per machine and version, about "
    "40 seconds on 2 cores, before the first solve returns; later runs load them from "
    "numba's on-disk cache"
)

_lock = threading.Lock()
_checked = False


def cached(dispatcher: Any) -> bool:
    """Whether numba's on-disk cache holds code of ``dispatcher`` for this machine's CPU.

    An index written for an older source of the module counts as missing (numba drops
    it). True when the question cannot be answered (numba internals differ): then no
    warning is better than a wrong one.
    """
    try:
        index = dispatcher._cache._cache_file._load_index()
        magic = dispatcher.targetctx.codegen().magic_tuple()
        return any(key[1] == magic for key in index)
    except Exception:  # private numba API: any change means "unknown"
        return True


def announce_compile() -> None:
    """Log the warning above, at most once per process, if a kernel is not cached."""
    global _checked
    if _checked or not _compiled.AVAILABLE:
        return
    with _lock:
        if _checked:
            return
        _checked = True
        if not all(cached(getattr(_compiled, name)) for name in SHARED):
            logger.warning(MESSAGE)
