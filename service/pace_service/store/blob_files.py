"""Files under ``<data dir>/blobs``: atomic writes, and the leftovers of killed writers.

A blob is written to a temp file in the same folder (``.<name>.<random>.tmp``),
fsynced, renamed over its final name with ``os.replace`` and the folder fsynced: a
reader sees the whole file or none. The writer holds an exclusive ``flock`` on its
temp file until the rename. A process killed mid-write (SIGKILL, OOM, power) leaves
its temp file behind, but its lock dies with it: :func:`sweep_temp_files` (run when
the service starts) deletes exactly the temp files nobody holds, so it never
touches a build in progress in another service process sharing the data dir.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["TEMP_SUFFIX", "atomic_write", "sweep_temp_files"]

TEMP_SUFFIX = ".tmp"

_log = logging.getLogger(__name__)


def _lock(fd: int, *, wait: bool) -> bool:
    """Take an exclusive flock on ``fd``; False if ``wait`` is off and someone holds it."""
    if sys.platform == "win32":  # no flock: writers proceed, temp files are never swept
        return wait
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def _fsync_dir(folder: Path) -> None:
    if sys.platform == "win32":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _locked_temp(path: Path) -> tuple[int, str]:
    while True:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        _lock(fd, wait=True)
        try:
            # a sweep may have removed the file between mkstemp and the lock
            if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                return fd, tmp
        except FileNotFoundError:
            pass
        os.close(fd)


@contextmanager
def atomic_write(path: Path) -> Iterator[BinaryIO]:
    """A binary file object whose content becomes ``path`` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _locked_temp(path)
    with os.fdopen(fd, "wb") as f:
        try:
            yield f
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, path)  # still locked: a sweep cannot take it before this
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    _fsync_dir(path.parent)


def sweep_temp_files(folder: Path) -> list[Path]:
    """Delete the temp files in ``folder`` that no live writer holds; return them."""
    if not folder.is_dir():
        return []
    removed: list[Path] = []
    for candidate in folder.glob(f".*{TEMP_SUFFIX}"):
        try:
            fd = os.open(candidate, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            if _lock(fd, wait=False):
                candidate.unlink(missing_ok=True)
                removed.append(candidate)
        finally:
            os.close(fd)
    if removed:
        _log.warning("removed %d unfinished temp file(s) from %s", len(removed), folder)
    return removed
