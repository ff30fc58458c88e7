"""Stream one dictionary file from the service into the cache."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import httpx
from tqdm.auto import tqdm

from pace.client._cache import DictionaryCache
from pace.client._errors import transport_error
from pace.errors import IntegrityError

__all__ = ["PROGRESS_MIN_BYTES", "etag_hash", "stream_into_cache"]

PROGRESS_MIN_BYTES = 4 * 1024 * 1024
"""Downloads at least this large show a progress bar (when progress is on)."""

_CHUNK = 1024 * 1024


def etag_hash(etag: str) -> str:
    """The opaque value of an ETag header: ``W/"abc"`` and ``"abc"`` give ``abc``."""
    value = etag.strip()
    value = value.removeprefix("W/")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value


def _copy(response: httpx.Response, f: IO[bytes], *, label: str, progress: bool) -> int:
    length = response.headers.get("content-length")
    total = int(length) if length is not None and length.isdigit() else None
    show = progress and (total is None or total >= PROGRESS_MIN_BYTES)
    written = 0
    with tqdm(
        total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not show
    ) as bar:
        for chunk in response.iter_bytes(_CHUNK):
            f.write(chunk)
            written += len(chunk)
            bar.update(len(chunk))
    if total is not None and written != total:
        raise IntegrityError(f"{label}: received {written} of {total} bytes")
    return written


def stream_into_cache(
    response: httpx.Response, cache: DictionaryCache, content_hash: str, *, progress: bool
) -> Path:
    """Write a streamed 200 response to the cache as blob ``content_hash``.

    The bytes go to a temp file that only replaces the blob when the whole body
    arrived, the ETag names the same hash and the file's header checks out; on any
    failure the temp file is removed. httpx errors while reading the body surface as
    ``pace.errors.TransportError``.
    """
    etag = response.headers.get("etag")
    if etag is not None and etag_hash(etag) != content_hash:
        raise IntegrityError(f"asked for dictionary {content_hash}, the service sent ETag {etag}")
    try:
        with cache.writer(content_hash) as f:
            _copy(response, f, label=f"dictionary {content_hash[:12]}", progress=progress)
    except httpx.TransportError as exc:
        raise transport_error(exc) from exc
    return cache.blob_path(content_hash)
