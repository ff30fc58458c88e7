"""``/v1/models/{model_id}/vectors``: binary (safetensors) atom uploads.

The body is read as it streams and refused (413) as soon as it passes the limit,
before it is all in memory. Decoding, validation and the binary COPY run in a worker
thread; the request's transaction (``SessionDep``) commits only if all succeed, so a
failed or interrupted upload stores nothing. Search indexes for newly populated
(model, layer, recipe) groups are built after the response, outside the transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, BackgroundTasks, Query, Request, status
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ...errors import EmptyBody, PayloadTooLarge
from ...models import Model
from ...schemas.bounds import INT64_MAX
from ...schemas.vectors import UploadResultPublic, VectorsPresentPublic, VectorsPresentRequest
from ...store import models as model_store
from ...store import vectors as store
from ...store.search_index import ensure_search_indexes, search_index_ready
from ...store.upload_stream import ABORT, StreamPlan, plan_stream, stream_into_copy
from ..deps import AuthDep, Principal, SessionDep, SettingsDep, WriteDep
from ..params import IdPath

__all__ = ["router"]

router = APIRouter(tags=["vectors"])

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "A safetensors file: `vectors` (m, d) float16/bfloat16/float32, "
        "`concept_ids` int64 (m,), `layers` int64 (m,).",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


async def _receive(
    request: Request, limit: int, model: Model
) -> tuple[bytearray, StreamPlan | None, AsyncIterator[bytes]]:
    """Read until the body can be streamed (a plan) or has ended (no plan)."""
    stream = request.stream()
    body = bytearray()
    need: int | None = 8
    async for chunk in stream:
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"request body is over the {limit}-byte limit", field="body")
        if need is not None and len(body) >= need:
            decided = plan_stream(body, hidden_size=model.hidden_size)
            if isinstance(decided, StreamPlan):
                return body, decided, stream
            need = decided
    if not body:
        raise EmptyBody("the request body is empty; send a safetensors file", field="body")
    return body, None, stream


def _check_rows(m: int, most: int) -> None:
    """At most ``most`` rows per upload (413 ``payload_too_large`` on ``vectors``)."""
    if m > most:
        raise PayloadTooLarge(
            f"the upload has {m} vectors; at most {most} per request: split it",
            field="vectors",
        )


async def _stream(
    session: Session,
    principal: Principal,
    model: Model,
    recipe_id: int,
    limit: int,
    body: bytearray,
    plan: StreamPlan,
    stream: AsyncIterator[bytes],
) -> store.UploadResult:
    """Feed the rest of the body to a COPY running in a worker thread."""
    chunks: queue.Queue[bytes | None] = queue.Queue()
    received = len(body)
    task = asyncio.ensure_future(
        run_in_threadpool(
            partial(
                stream_into_copy,
                session,
                namespace_id=principal.namespace_id,
                model=model,
                recipe_id=recipe_id,
                plan=plan,
                first=bytes(body[plan.vectors_begin :]),
                chunks=chunks,
            )
        )
    )
    del body
    try:
        async for chunk in stream:
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(f"request body is over the {limit}-byte limit", field="body")
            if task.done():  # failed early (or all rows are in): stop feeding it
                break
            chunks.put(chunk)
        chunks.put(None)
    except BaseException:
        chunks.put(ABORT)
        with contextlib.suppress(BaseException):
            await task
        raise
    return await task


@router.post(
    "/models/{model_id}/vectors",
    response_model=UploadResultPublic,
    status_code=status.HTTP_200_OK,
    openapi_extra=_UPLOAD_BODY,
)
async def upload_vectors(
    model_id: IdPath,
    recipe_id: Annotated[
        int, Query(ge=1, le=INT64_MAX, description="The recipe that made these atoms")
    ],
    request: Request,
    principal: WriteDep,
    session: SessionDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> UploadResultPublic:
    """Store atoms for one model and recipe: one transaction, one binary COPY.

    Identical rows already stored are ``skipped``; a different stored vector is 409.
    A body laid out as the safetensors libraries write it (int64 tensors first) is
    COPYed while it is still arriving.
    """

    def lookup() -> Model:
        model = model_store.get_model(session, model_id)
        model_store.get_recipe(session, recipe_id)
        return model

    model = await run_in_threadpool(lookup)
    limit = settings.max_upload_bytes
    body, plan, stream = await _receive(request, limit, model)
    if plan is not None:
        _check_rows(plan.m, settings.max_upload_vectors)
        result = await _stream(session, principal, model, recipe_id, limit, body, plan, stream)
        layers = plan.layers
    else:

        def buffered() -> tuple[store.UploadResult, np.ndarray[Any, Any]]:
            batch = store.decode_upload(
                memoryview(body), hidden_size=model.hidden_size, num_layers=model.num_layers
            )
            _check_rows(len(batch.concept_ids), settings.max_upload_vectors)
            stored = store.store_vectors(
                session,
                namespace_id=principal.namespace_id,
                model=model,
                recipe_id=recipe_id,
                batch=batch,
            )
            return stored, batch.layers

        result, layers = await run_in_threadpool(buffered)

    def missing_indexes() -> list[int]:
        conn = store.driver_connection(session)
        return [
            int(layer)
            for layer in sorted(set(layers.tolist()))
            if not search_index_ready(conn, model_id, int(layer), recipe_id)
        ]

    if result.inserted:
        missing = await run_in_threadpool(missing_indexes)
        if missing:
            background.add_task(
                ensure_search_indexes,
                request.app.state.engine,
                model_id,
                recipe_id,
                missing,
                model.hidden_size,
            )
    return UploadResultPublic(inserted=result.inserted, skipped=result.skipped)


@router.post("/models/{model_id}/vectors:present", response_model=VectorsPresentPublic)
def vectors_present(
    model_id: IdPath, body: VectorsPresentRequest, principal: AuthDep, session: SessionDep
) -> VectorsPresentPublic:
    """The concepts among ``concept_ids`` already having atoms at all ``layers``."""
    model_store.get_model(session, model_id)
    model_store.get_recipe(session, body.recipe_id, field="recipe_id")
    present = store.vectors_present(
        session,
        namespace_id=principal.namespace_id,
        model_id=model_id,
        recipe_id=body.recipe_id,
        layers=body.layers,
        concept_ids=body.concept_ids,
    )
    return VectorsPresentPublic(present=present)
