"""``/v1/concepts``: concepts with stimuli; bulk import in one transaction."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Response, status

from ...schemas.concepts import (
    ConceptBulkResult,
    ConceptCreate,
    ConceptPublic,
    ConceptsPublic,
    ConceptUpdate,
)
from ...store import concepts as store
from ..deps import AuthDep, SessionDep, WriteDep
from ..pagination import PageDep
from ..params import IdPath, IdQuery, TextQuery
from ..preconditions import IfMatchDep, send_etag

__all__ = ["router"]

router = APIRouter(tags=["concepts"])

MAX_BULK = 100_000


@router.post("/concepts", response_model=ConceptPublic, status_code=status.HTTP_201_CREATED)
def create_concept(
    body: ConceptCreate, principal: WriteDep, session: SessionDep, response: Response
) -> ConceptPublic:
    """Create a concept with its stimuli (409 ``duplicate`` if the name exists)."""
    concept = store.create_concept(session, principal.namespace_id, body)
    send_etag(response, concept.revision)
    return store.concept_public(session, concept)


@router.post(
    "/concepts:bulk", response_model=ConceptBulkResult, status_code=status.HTTP_201_CREATED
)
def bulk_create_concepts(
    body: Annotated[list[ConceptCreate], Body(max_length=MAX_BULK)],
    principal: WriteDep,
    session: SessionDep,
    on_existing: Literal["error", "skip"] = "error",
) -> ConceptBulkResult:
    """Import many concepts in one transaction: all are created, or none.

    ``on_existing=skip`` reports concepts whose name exists as ``created: false``
    instead of failing with 409 ``duplicate``.
    """
    return store.bulk_create_concepts(
        session, principal.namespace_id, body, skip_existing=on_existing == "skip"
    )


@router.get("/concepts", response_model=ConceptsPublic)
def list_concepts(
    principal: AuthDep,
    session: SessionDep,
    page: PageDep,
    name: TextQuery = None,
    tag: TextQuery = None,
    concept_set_version_id: IdQuery = None,
) -> ConceptsPublic:
    """The namespace's concepts, filtered by exact ``name`` and by ``tag``.

    With ``concept_set_version_id``: the members of that readable version instead
    (from any namespace), e.g. to name the concepts of a public set.
    """
    items, total = store.list_concepts(
        session,
        principal.namespace_id,
        name=name,
        tag=tag,
        version_id=concept_set_version_id,
        limit=page.limit,
        offset=page.offset,
    )
    return ConceptsPublic(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/concepts/{concept_id}", response_model=ConceptPublic)
def get_concept(
    concept_id: IdPath, principal: AuthDep, session: SessionDep, response: Response
) -> ConceptPublic:
    """One concept with its current stimuli (own, or a member of a public set).

    ``ETag`` is the concept's revision: send it back as ``If-Match`` with a PATCH.
    """
    concept = store.get_readable_concept(session, principal.namespace_id, concept_id)
    send_etag(response, concept.revision)
    return store.concept_public(session, concept)


@router.patch("/concepts/{concept_id}", response_model=ConceptPublic)
def update_concept(
    concept_id: IdPath,
    body: ConceptUpdate,
    principal: WriteDep,
    session: SessionDep,
    if_match: IfMatchDep,
    response: Response,
) -> ConceptPublic:
    """Rename, describe, retag, add stimuli or retire stimuli.

    Published versions keep the stimuli snapshot they were published with. With
    ``If-Match``, a concept changed since that ETag is 412 ``precondition_failed``.
    """
    concept = store.update_concept(
        session, principal.namespace_id, concept_id, body, if_match=if_match
    )
    send_etag(response, concept.revision)
    return store.concept_public(session, concept)


@router.delete("/concepts/{concept_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_concept(concept_id: IdPath, principal: WriteDep, session: SessionDep) -> Response:
    """Delete a concept (409 ``immutable`` if a published version holds it)."""
    store.delete_concept(session, principal.namespace_id, concept_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
