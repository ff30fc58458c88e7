"""The on-disk, content-addressed dictionary cache.

Layout under the cache root (``platformdirs.user_cache_dir("pace")`` by default)::

    dictionaries/
        blobs/<sha256>.safetensors     complete, verified dictionary files
        blobs/.<sha256>.<rand>.part    downloads in progress (never read)
        locks/<sha256>.lock            one writer per hash, across processes

A blob only ever appears by ``os.replace`` of a complete temp file whose header
names the same content hash, so a reader never sees a partial file. A blob is
re-checked cheaply before every use (header, content hash and file length), and a
bad one is removed so that the next pull downloads it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import platformdirs

from pace.dictionary import FORMAT
from pace.errors import IntegrityError

try:  # POSIX: serialize writers of one hash across threads and processes.
    import fcntl
except ImportError:  # pragma: no cover - Windows: atomic replace alone keeps it safe
    fcntl = None  # type: ignore[assignment]

__all__ = ["DictionaryCache", "check_blob", "default_cache_dir", "validate_hash"]

_HASH_RE = re.compile(r"[0-9a-f]{64}")
_MAX_HEADER = 512 * 1024 * 1024  # safetensors' own limit is 100 MB; be lenient


def default_cache_dir() -> Path:
    """``$PACE_CACHE_DIR`` if set, else the platform's user cache folder for pace."""
    env = os.environ.get("PACE_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("pace"))


def validate_hash(content_hash: str) -> str:
    """Return the hash if it is a lowercase hex sha256; raise ValueError otherwise.

    Checked before it is used as a file name, so a hostile value cannot escape the cache.
    """
    if not isinstance(content_hash, str) or not _HASH_RE.fullmatch(content_hash):
        raise ValueError(f"not a dictionary content hash (64 lowercase hex): {content_hash!r}")
    return content_hash


def _read_header(f: IO[bytes]) -> tuple[dict[str, Any], int]:
    """The safetensors JSON header and the file length it implies."""
    raw = f.read(8)
    if len(raw) != 8:
        raise ValueError("shorter than a safetensors header")
    size = int.from_bytes(raw, "little")
    if size <= 0 or size > _MAX_HEADER:
        raise ValueError(f"implausible header length {size}")
    body = f.read(size)
    if len(body) != size:
        raise ValueError("truncated header")
    header = json.loads(body)
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not isinstance(offsets, list) or len(offsets) != 2:
            raise ValueError(f"tensor {name!r} has no data_offsets")
        end = max(end, int(offsets[1]))
    return header, 8 + size + end


def check_blob(path: str | os.PathLike[str], content_hash: str) -> None:
    """Raise IntegrityError unless ``path`` is a whole dictionary file for ``content_hash``.

    Cheap: reads only the header, then compares the file length with the one the
    tensor offsets imply (which catches truncation) and the header's content hash.
    """
    try:
        with open(path, "rb") as f:
            header, expected_len = _read_header(f)
            actual_len = os.fstat(f.fileno()).st_size
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{path}: unreadable dictionary file: {exc}") from exc
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise IntegrityError(f"{path}: not a {FORMAT} file")
    if meta.get("content_hash") != content_hash:
        raise IntegrityError(
            f"{path}: content hash is {meta.get('content_hash')!r}, expected {content_hash!r}"
        )
    if actual_len != expected_len:
        raise IntegrityError(f"{path}: {actual_len} bytes, the header implies {expected_len}")


class DictionaryCache:
    """Content-addressed dictionary files on disk; safe for concurrent use.

    Example::

        cache = DictionaryCache("~/.cache/pace")
        path = cache.get(h)                 # None when absent (or found corrupt)
        with cache.lock(h):                 # one writer per hash
            if cache.get(h) is None:
                with cache.writer(h) as f:  # temp file; verified and moved on success
                    f.write(data)
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        base = Path(root).expanduser() if root is not None else default_cache_dir()
        self.root = base / "dictionaries"
        self.blobs = self.root / "blobs"
        self.locks = self.root / "locks"

    def blob_path(self, content_hash: str) -> Path:
        return self.blobs / f"{validate_hash(content_hash)}.safetensors"

    def get(self, content_hash: str) -> Path | None:
        """The verified blob for ``content_hash``, or None; a corrupt blob is deleted."""
        path = self.blob_path(content_hash)
        if not path.exists():
            return None
        try:
            check_blob(path, content_hash)
        except IntegrityError:
            path.unlink(missing_ok=True)
            return None
        return path

    def __contains__(self, content_hash: object) -> bool:
        return isinstance(content_hash, str) and self.get(content_hash) is not None

    @contextlib.contextmanager
    def lock(self, content_hash: str) -> Iterator[None]:
        """Hold the per-hash writer lock (a no-op where ``fcntl`` is missing)."""
        validate_hash(content_hash)
        if fcntl is None:  # pragma: no cover
            yield
            return
        self.locks.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.locks / f"{content_hash}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # A filesystem without locks only costs duplicate downloads: the atomic
            # replace keeps the cache consistent either way.
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    @contextlib.contextmanager
    def writer(self, content_hash: str) -> Iterator[IO[bytes]]:
        """Write a blob: yields a temp file; on a clean exit it is checked and put in place.

        On any exception (or a failed check) the temp file is removed and the cache
        is left as it was.
        """
        final = self.blob_path(content_hash)
        self.blobs.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.blobs, prefix=f".{content_hash}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            check_blob(tmp, content_hash)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def put_bytes(self, content_hash: str, data: bytes) -> Path:
        """Store a whole file held in memory (checked like a download)."""
        with self.writer(content_hash) as f:
            f.write(data)
        return self.blob_path(content_hash)

    def remove(self, content_hash: str) -> bool:
        """Delete one blob; True if there was one."""
        path = self.blob_path(content_hash)
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed

    def hashes(self) -> list[str]:
        """The hashes of the blobs present (unverified), sorted."""
        if not self.blobs.is_dir():
            return []
        return sorted(
            p.name.removesuffix(".safetensors")
            for p in self.blobs.glob("*.safetensors")
            if _HASH_RE.fullmatch(p.name.removesuffix(".safetensors"))
        )
