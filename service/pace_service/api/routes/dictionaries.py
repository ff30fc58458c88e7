"""``/v1/dictionaries``: materialize once (content-addressed), then serve the bytes.

``POST`` returns 201 when it built the file now, 200 when it already existed.
``GET /v1/dictionaries/{hash}`` streams the ``pace.dictionary/1`` file from disk
(``ETag: "<hash>"``; a matching ``If-None-Match`` gets 304 without a body).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response, status
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from ...errors import NotFound
from ...schemas.dictionaries import DictionaryCreate, DictionaryPublic
from ...store import dictionaries as store
from ..deps import AuthDep, SessionDep, SettingsDep

__all__ = ["router"]

router = APIRouter(tags=["dictionaries"])


class _BlobResponse(FileResponse):
    """A file response in 4 MiB reads: Starlette's 64 KiB default costs a thread hop
    and an event-loop round per chunk, which dominates an 80 MB dictionary on 2 cores."""

    chunk_size = 1 << 22


def _etag_matches(if_none_match: str | None, content_hash: str) -> bool:
    if not if_none_match:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/").strip('"') == content_hash:
            return True
    return False


@router.post(
    "/dictionaries",
    response_model=DictionaryPublic,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": DictionaryPublic, "description": "Already materialized"}},
)
async def create_dictionary(
    body: DictionaryCreate,
    principal: AuthDep,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> DictionaryPublic:
    """Materialize (or find) the dictionary for these inputs; same content, same hash.

    Any key that can read the concept-set version (and the partition) may do this:
    it derives an artifact from readable data and changes nothing else.
    """

    def work() -> DictionaryPublic:
        plan = store.plan_dictionary(
            session,
            namespace_id=principal.namespace_id,
            concept_set_version_id=body.concept_set_version_id,
            model_id=body.model_id,
            layers=body.layers,
            recipe_id=body.recipe_id,
            partition_id=body.partition_id,
        )
        row, created = store.materialize(session, plan, settings.blob_dir)
        if not created:
            response.status_code = status.HTTP_200_OK
        return DictionaryPublic(
            hash=row.hash,
            n_concepts=row.n_concepts,
            layers=list(row.layers),
            size_bytes=row.size_bytes,
            concept_set_version_id=row.concept_set_version_id,
            model_id=row.model_id,
            recipe_id=row.recipe_id,
            partition_id=row.partition_id,
            missing=plan.missing,
            created_at=row.created_at,
        )

    return await run_in_threadpool(work)


@router.get(
    "/dictionaries/{content_hash}",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"application/octet-stream": {}},
            "description": "The pace.dictionary/1 safetensors file",
        },
        304: {"description": "If-None-Match matched the ETag"},
    },
)
def get_dictionary(
    content_hash: str,
    principal: AuthDep,
    session: SessionDep,
    settings: SettingsDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The dictionary's bytes (``ETag`` = the content hash)."""
    row = store.get_readable_dictionary(session, principal.namespace_id, content_hash)
    etag = f'"{row.hash}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable"}
    if _etag_matches(if_none_match, row.hash):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    path = store.blob_path(settings.blob_dir, row.hash)
    if not path.is_file():
        raise NotFound(
            f"the file of dictionary {row.hash} is gone from this server's data dir; "
            "POST /v1/dictionaries with the same inputs to rebuild it",
            field="hash",
        )
    return _BlobResponse(
        path,
        media_type="application/octet-stream",
        headers=headers,
        filename=f"{row.hash}.safetensors",
    )
