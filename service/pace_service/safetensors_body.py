"""Parse an untrusted safetensors request body into NumPy arrays, without copies.

Written by hand rather than with ``safetensors.numpy.load`` because NumPy has no
bfloat16 (which uploads may use) and because every defect must become a precise
400 ``malformed_safetensors`` naming the tensor, never an exception from deep inside
a library. Layout: ``u64 little-endian header length``, a JSON header mapping tensor
names to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to
the end of the header), then the data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import MalformedSafetensors

__all__ = ["MAX_HEADER_BYTES", "parse_safetensors"]

MAX_HEADER_BYTES = 100_000_000
"""The same limit as the safetensors library."""

_DTYPES: Mapping[str, str] = {
    "F16": "<f2",
    "F32": "<f4",
    "F64": "<f8",
    "BF16": "<u2",  # decoded by the caller (NumPy has no bfloat16)
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
}


def parse_safetensors(
    body: bytes | memoryview,
) -> tuple[dict[str, tuple[str, np.ndarray[Any, Any]]], dict[str, str]]:
    """``{name: (safetensors dtype, array)}`` and the string metadata of ``body``.

    Arrays are read-only views into ``body``. Raises ``MalformedSafetensors``.
    """
    data = memoryview(body)
    if len(data) < 8:
        raise MalformedSafetensors("body is shorter than a safetensors header", field="body")
    size = int.from_bytes(data[:8], "little")
    if size < 2 or size > MAX_HEADER_BYTES or 8 + size > len(data):
        raise MalformedSafetensors(
            f"safetensors header length {size} does not fit a {len(data)}-byte body", field="body"
        )
    try:
        header = json.loads(bytes(data[8 : 8 + size]))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedSafetensors(f"safetensors header is not JSON: {exc}", field="body") from exc
    if not isinstance(header, dict):
        raise MalformedSafetensors("safetensors header is not a JSON object", field="body")
    meta_raw = header.pop("__metadata__", None) or {}
    if not isinstance(meta_raw, dict):
        raise MalformedSafetensors("__metadata__ is not an object", field="body")
    metadata = {str(k): str(v) for k, v in meta_raw.items()}
    payload = data[8 + size :]
    tensors: dict[str, tuple[str, np.ndarray[Any, Any]]] = {}
    for name, info in header.items():
        tensors[name] = _tensor(name, info, payload)
    return tensors, metadata


def _tensor(name: str, info: Any, payload: memoryview) -> tuple[str, np.ndarray[Any, Any]]:
    if not isinstance(info, dict):
        raise MalformedSafetensors(f"tensor {name!r}: entry is not an object", field=name)
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise MalformedSafetensors(f"tensor {name!r}: unsupported dtype {dtype!r}", field=name)
    if (
        not isinstance(shape, list)
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
        or not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise MalformedSafetensors(f"tensor {name!r}: bad shape or data_offsets", field=name)
    begin, end = offsets
    np_dtype = np.dtype(_DTYPES[dtype])
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if not 0 <= begin <= end <= len(payload) or end - begin != count * np_dtype.itemsize:
        raise MalformedSafetensors(
            f"tensor {name!r}: data_offsets {offsets} do not match shape {shape} of {dtype} "
            f"in a {len(payload)}-byte payload",
            field=name,
        )
    array = np.frombuffer(payload, dtype=np_dtype, count=count, offset=begin).reshape(shape)
    return dtype, array
