"""Overlap receiving a vector upload with its binary COPY.

Receiving an 82 MB body through uvicorn takes about as long as PostgreSQL takes to
load it (docs/benchmarks.md), so doing one after the other doubles an upload. The
safetensors writers (``safetensors.numpy``/``torch``) lay tensors out by descending
alignment, so the int64 ``concept_ids`` and ``layers`` arrive *before* the float
``vectors``: the keys can be checked (ids, access, layers, stored rows) and a COPY
opened while the vectors are still on the wire, then each batch of complete rows is
checked (finite, equal to a stored row) and written to the COPY as it arrives.

:func:`plan_stream` decides from the first bytes whether a body can be streamed;
anything unusual (vectors not last, odd dtypes, a malformed header) falls back to the
buffered path (:func:`pace_service.store.vectors.decode_upload`), which reports the
precise error. Every check is the buffered path's, with the same codes and fields.
"""

from __future__ import annotations

import json
import queue
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from ..copy import COPY_HEADER, COPY_TRAILER
from ..errors import Conflict, MalformedSafetensors, NonFinite
from ..models import Model
from ..safetensors_body import MAX_HEADER_BYTES
from . import vectors as v

__all__ = ["ABORT", "StreamPlan", "plan_stream", "stream_into_copy"]

ABORT = b"\x00abort"
"""Queue item telling the COPY worker that the request failed while receiving."""

_FLOAT_BYTES = {"F16": 2, "BF16": 2, "F32": 4}
_BATCH_BYTES = 4 << 20


class _Aborted(Exception):
    """The receiving side failed; the worker stops and the transaction rolls back."""


@dataclass(frozen=True)
class StreamPlan:
    """Where the vectors start and end, their dtype, and the keys already received."""

    vectors_begin: int
    vectors_end: int
    dtype: str
    m: int
    d: int
    concept_ids: np.ndarray[Any, Any]
    layers: np.ndarray[Any, Any]


def _entry(header: dict[str, Any], name: str) -> tuple[str, list[int], int, int] | None:
    info = header.get(name)
    if not isinstance(info, dict):
        return None
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or not isinstance(shape, list) or not isinstance(offsets, list):
        return None
    if len(offsets) != 2 or not all(type(x) is int and x >= 0 for x in [*shape, *offsets]):
        return None
    return dtype, shape, offsets[0], offsets[1]


def plan_stream(buf: bytes | bytearray, *, hidden_size: int) -> StreamPlan | int | None:
    """A plan; or how many bytes are needed before deciding; or None: buffer it all."""
    if len(buf) < 8:
        return 8
    size = int.from_bytes(buf[:8], "little")
    if size < 2 or size > MAX_HEADER_BYTES:
        return None
    if len(buf) < 8 + size:
        return 8 + size
    try:
        header = json.loads(bytes(buf[8 : 8 + size]))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(header, dict):
        return None
    vec, ids, lay = (_entry(header, n) for n in ("vectors", "concept_ids", "layers"))
    if vec is None or ids is None or lay is None:
        return None
    vdtype, vshape, vbegin, vend = vec
    if vdtype not in _FLOAT_BYTES or len(vshape) != 2 or vshape[1] != hidden_size:
        return None
    m, d = vshape
    if vend - vbegin != m * d * _FLOAT_BYTES[vdtype]:
        return None
    for dtype, shape, begin, end in (ids, lay):
        if dtype != "I64" or shape != [m] or end - begin != 8 * m or end > vbegin:
            return None  # not int64 (m,), or not before the vectors
    base = 8 + size
    need = base + max(ids[3], lay[3])
    if len(buf) < need:
        return need
    concept_ids = np.frombuffer(bytes(buf[base + ids[2] : base + ids[3]]), dtype="<i8")
    layers = np.frombuffer(bytes(buf[base + lay[2] : base + lay[3]]), dtype="<i8")
    return StreamPlan(
        vectors_begin=base + vbegin,
        vectors_end=base + vend,
        dtype=vdtype,
        m=m,
        d=d,
        concept_ids=concept_ids.astype(np.int64),
        layers=layers.astype(np.int64),
    )


def stream_into_copy(
    session: Session,
    *,
    namespace_id: int,
    model: Model,
    recipe_id: int,
    plan: StreamPlan,
    first: bytes,
    chunks: queue.Queue[bytes | None],
) -> v.UploadResult:
    """Check the keys, then COPY vector rows as ``chunks`` deliver them (a worker thread).

    ``first`` holds the body bytes from the start of the vectors received so far;
    ``chunks`` yields the rest, then ``None``; :data:`ABORT` stops with an error.
    """
    v.check_keys(plan.concept_ids, plan.layers, model.num_layers)
    keys = v.KeyBatch(concept_ids=plan.concept_ids, layers=plan.layers)
    v.check_concepts(session, namespace_id, plan.concept_ids)
    conn = v.driver_connection(session)
    v.lock_atoms(conn, model.id, recipe_id)
    existing = v.existing_rows(conn, model.id, recipe_id, keys, model.hidden_size)
    stored: dict[int, np.ndarray[Any, Any]] = {}
    if len(existing):
        index = {
            (int(la), int(c)): i
            for i, (la, c) in enumerate(zip(plan.layers, plan.concept_ids, strict=True))
        }
        for la, c, vec in zip(
            existing["layer"], existing["concept_id"], existing["vector"], strict=True
        ):
            stored[index[(int(la), int(c))]] = vec.astype(np.float16).view(np.uint16)

    layout = v.atom_layout(model.hidden_size)
    itemsize = _FLOAT_BYTES[plan.dtype]
    row_bytes = plan.d * itemsize
    batch_rows = max(1, _BATCH_BYTES // row_bytes)
    pending = bytearray(first[: plan.m * row_bytes])
    done_rows = inserted = 0
    finished = False
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY atoms (model_id, layer, recipe_id, concept_id, vector) "
            "FROM STDIN WITH (FORMAT BINARY)"
        ) as copy,
    ):
        copy.write(COPY_HEADER)
        while done_rows < plan.m:
            ready = min(len(pending) // row_bytes, plan.m - done_rows)
            if ready and (ready >= batch_rows or finished or done_rows + ready == plan.m):
                inserted += _write_rows(
                    copy, layout, plan, model.id, recipe_id, pending, done_rows, ready, stored
                )
                del pending[: ready * row_bytes]
                done_rows += ready
                continue
            if finished:
                raise MalformedSafetensors(
                    f"the body ends inside tensor 'vectors' (row {done_rows} of {plan.m})",
                    field="vectors",
                )
            item = chunks.get()
            if item is None:
                finished = True
            elif item is ABORT:
                raise _Aborted
            else:
                pending += item[: max(0, plan.m * row_bytes - len(pending) - done_rows * row_bytes)]
        copy.write(COPY_TRAILER)
    return v.UploadResult(inserted=inserted, skipped=plan.m - inserted)


def _write_rows(
    copy: Any,
    layout: Any,
    plan: StreamPlan,
    model_id: int,
    recipe_id: int,
    pending: bytearray,
    start: int,
    count: int,
    stored: dict[int, np.ndarray[Any, Any]],
) -> int:
    dtype = {"F16": "<f2", "BF16": "<u2", "F32": "<f4"}[plan.dtype]
    raw = np.frombuffer(pending, dtype=dtype, count=count * plan.d).reshape(count, plan.d)
    values = v.float_rows(plan.dtype, raw)
    bad = v.non_finite_rows(values)
    if len(bad):
        row = start + int(bad[0])
        raise NonFinite(
            f"vector(s) have NaN, Inf or values beyond float16's range "
            f"(first: row {row}, concept {int(plan.concept_ids[row])})",
            field=f"vectors.{row}",
        )
    half = values if values.dtype == np.float16 else values.astype(np.float16)
    keep = np.ones(count, dtype=bool)
    for i in range(start, start + count):
        old = stored.get(i)
        if old is None:
            continue
        if not np.array_equal(old, half[i - start].view(np.uint16)):
            raise Conflict(
                f"concept {int(plan.concept_ids[i])} at layer {int(plan.layers[i])} already "
                f"has a different vector for model {model_id} and recipe {recipe_id}; "
                "atoms are write-once",
                field=f"vectors.{i}",
            )
        keep[i - start] = False
    rows = np.flatnonzero(keep)
    if len(rows):
        sel = slice(start, start + count)
        pick = rows if len(rows) < count else slice(None)
        copy.write(
            layout.encode(
                {
                    "model_id": model_id,
                    "layer": plan.layers[sel][pick],
                    "recipe_id": recipe_id,
                    "concept_id": plan.concept_ids[sel][pick],
                    "vector": half[pick],
                },
                framed=False,
            )
        )
    return len(rows)
