"""``/v1/models/{model_id}/vectors``: binary (safetensors) atom uploads.

The body is read as it streams and refused (413) as soon as it passes the limit,
before it is all in memory. Decoding, validation and the binary COPY run in a worker
thread; the request's transaction (``SessionDep``) commits only if all succeed, so a
failed or interrupted upload stores nothing. Search indexes for newly populated
(model, layer, recipe) groups are built after the response, outside the transaction.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, Request, status
from starlette.concurrency import run_in_threadpool

from ...errors import EmptyBody, PayloadTooLarge
from ...schemas.vectors import UploadResultPublic, VectorsPresentPublic, VectorsPresentRequest
from ...store import models as model_store
from ...store import vectors as store
from ...store.search_index import ensure_search_indexes, search_index_ready
from ..deps import AuthDep, SessionDep, SettingsDep, WriteDep

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


async def _read_body(request: Request, limit: int) -> bytearray:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"request body is over the {limit}-byte limit", field="body")
    if not body:
        raise EmptyBody("the request body is empty; send a safetensors file", field="body")
    return body


@router.post(
    "/models/{model_id}/vectors",
    response_model=UploadResultPublic,
    status_code=status.HTTP_200_OK,
    openapi_extra=_UPLOAD_BODY,
)
async def upload_vectors(
    model_id: int,
    recipe_id: Annotated[int, Query(description="The recipe that made these atoms")],
    request: Request,
    principal: WriteDep,
    session: SessionDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> UploadResultPublic:
    """Store atoms for one model and recipe: one transaction, one binary COPY.

    Identical rows already stored are ``skipped``; a different stored vector is 409.
    """
    body = await _read_body(request, settings.max_upload_bytes)

    def work() -> tuple[store.UploadResult, int, list[int]]:
        model = model_store.get_model(session, model_id)
        model_store.get_recipe(session, recipe_id)
        batch = store.decode_upload(
            memoryview(body), hidden_size=model.hidden_size, num_layers=model.num_layers
        )
        result = store.store_vectors(
            session,
            namespace_id=principal.namespace_id,
            model=model,
            recipe_id=recipe_id,
            batch=batch,
        )
        conn = store.driver_connection(session)
        missing = [
            int(layer)
            for layer in sorted(set(batch.layers.tolist()))
            if not search_index_ready(conn, model_id, int(layer), recipe_id)
        ]
        return result, model.hidden_size, missing

    result, dim, missing = await run_in_threadpool(work)
    if result.inserted and missing:
        background.add_task(
            ensure_search_indexes, request.app.state.engine, model_id, recipe_id, missing, dim
        )
    return UploadResultPublic(inserted=result.inserted, skipped=result.skipped)


@router.post("/models/{model_id}/vectors:present", response_model=VectorsPresentPublic)
def vectors_present(
    model_id: int, body: VectorsPresentRequest, principal: AuthDep, session: SessionDep
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
