"""``/v1/concept-sets`` and ``/v1/concept-set-versions``: sets, versions, diff, fork.

Private sets of another namespace are 404 everywhere (existence is not leaked);
writing to another namespace's public set is 403.
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from ...schemas.concept_sets import (
    ConceptIds,
    ConceptSetCreate,
    ConceptSetFork,
    ConceptSetPublic,
    ConceptSetsPublic,
    ConceptSetUpdate,
    LineageEntry,
    VersionCreate,
    VersionDiff,
    VersionPublic,
    VersionsPublic,
)
from ...store import concept_sets as sets
from ...store import versions
from ...store.access import owned_set, readable_version
from ..deps import AuthDep, SessionDep, WriteDep
from ..pagination import PageDep
from ..params import IdPath, RefPath, TextQuery
from ..preconditions import IfMatchDep, send_etag

__all__ = ["router"]

router = APIRouter(tags=["concept sets"])


@router.post("/concept-sets", response_model=ConceptSetPublic, status_code=status.HTTP_201_CREATED)
def create_set(
    body: ConceptSetCreate, principal: WriteDep, session: SessionDep, response: Response
) -> ConceptSetPublic:
    """Create a set (no versions yet: add a draft with ``POST .../versions``)."""
    row = sets.create_set(session, principal.namespace_id, body)
    send_etag(response, row.revision)
    return sets.set_public(session, row)


@router.get("/concept-sets", response_model=ConceptSetsPublic)
def list_sets(
    principal: AuthDep,
    session: SessionDep,
    page: PageDep,
    name: TextQuery = None,
    namespace: TextQuery = None,
    public: bool | None = None,
) -> ConceptSetsPublic:
    """Sets the caller can read (its own and all public ones), filtered."""
    rows, total = sets.list_sets(
        session,
        principal.namespace_id,
        name=name,
        namespace=namespace,
        public=public,
        limit=page.limit,
        offset=page.offset,
    )
    return ConceptSetsPublic(
        items=[sets.set_public(session, r) for r in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/concept-sets/{set_id}", response_model=ConceptSetPublic)
def get_set(
    set_id: IdPath, principal: AuthDep, session: SessionDep, response: Response
) -> ConceptSetPublic:
    """One set with its versions (``ETag``: the set's revision, for ``If-Match``)."""
    row = sets.get_set(session, principal.namespace_id, set_id)
    send_etag(response, row.revision)
    return sets.set_public(session, row)


@router.patch("/concept-sets/{set_id}", response_model=ConceptSetPublic)
def update_set(
    set_id: IdPath,
    body: ConceptSetUpdate,
    principal: WriteDep,
    session: SessionDep,
    if_match: IfMatchDep,
    response: Response,
) -> ConceptSetPublic:
    """Rename, describe or change the visibility of an owned set.

    With ``If-Match``, a set changed since that ETag is 412 ``precondition_failed``.
    """
    row = sets.update_set(session, principal.namespace_id, set_id, body, if_match=if_match)
    send_etag(response, row.revision)
    return sets.set_public(session, row)


@router.delete("/concept-sets/{set_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_set(set_id: IdPath, principal: WriteDep, session: SessionDep) -> Response:
    """Delete a set that has no published version (409 ``immutable`` otherwise)."""
    sets.delete_set(session, principal.namespace_id, set_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/concept-sets/{set_id}/fork",
    response_model=ConceptSetPublic,
    status_code=status.HTTP_201_CREATED,
)
def fork_set(
    set_id: IdPath, body: ConceptSetFork, principal: WriteDep, session: SessionDep
) -> ConceptSetPublic:
    """Fork any readable set (also another namespace's public one) into the caller's."""
    return sets.set_public(session, sets.fork_set(session, principal.namespace_id, set_id, body))


@router.post(
    "/concept-sets/{set_id}/versions",
    response_model=VersionPublic,
    status_code=status.HTTP_201_CREATED,
)
def create_version(
    set_id: IdPath,
    principal: WriteDep,
    session: SessionDep,
    response: Response,
    body: VersionCreate | None = None,
) -> VersionPublic:
    """A new draft, copying the members of ``from_version`` (default: the latest)."""
    body = body or VersionCreate()
    concept_set = owned_set(session, principal.namespace_id, set_id)
    version = versions.create_version(
        session, concept_set, from_version=body.from_version, empty=body.empty
    )
    send_etag(response, version.revision)
    return versions.version_public(session, version)


@router.get("/concept-sets/{set_id}/versions", response_model=VersionsPublic)
def list_versions(
    set_id: IdPath, principal: AuthDep, session: SessionDep, page: PageDep
) -> VersionsPublic:
    """A set's versions by number."""
    concept_set = sets.get_set(session, principal.namespace_id, set_id)
    items, total = versions.list_versions(
        session, concept_set, limit=page.limit, offset=page.offset
    )
    return VersionsPublic(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/concept-sets/{set_id}/versions/{ref}", response_model=VersionPublic)
def get_version_by_ref(
    set_id: IdPath, ref: RefPath, principal: AuthDep, session: SessionDep, response: Response
) -> VersionPublic:
    """A version of a set by number, or ``latest``, or ``published`` (latest published)."""
    concept_set = sets.get_set(session, principal.namespace_id, set_id)
    version = versions.version_by_ref(session, concept_set.id, ref)
    send_etag(response, version.revision)
    return versions.version_public(session, version)


@router.get("/concept-set-versions/{version_id}", response_model=VersionPublic)
def get_version(
    version_id: IdPath, principal: AuthDep, session: SessionDep, response: Response
) -> VersionPublic:
    """One version with its member concept ids.

    ``ETag`` is its revision: send it as ``If-Match`` with edits of the draft.
    """
    version = readable_version(session, principal.namespace_id, version_id, field="version_id")
    send_etag(response, version.revision)
    return versions.version_public(session, version)


@router.delete("/concept-set-versions/{version_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_version(
    version_id: IdPath, principal: WriteDep, session: SessionDep, if_match: IfMatchDep
) -> Response:
    """Delete a draft (409 ``immutable`` for a published version)."""
    versions.delete_version(session, principal.namespace_id, version_id, if_match=if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/concept-set-versions/{version_id}/concepts", response_model=VersionPublic)
def add_concepts(
    version_id: IdPath,
    body: ConceptIds,
    principal: WriteDep,
    session: SessionDep,
    if_match: IfMatchDep,
    response: Response,
) -> VersionPublic:
    """Add concepts to a draft (own concepts, or members of public sets).

    Each edit is atomic (the draft's row lock); with ``If-Match``, a draft changed
    since that ETag is 412 ``precondition_failed``.
    """
    version = versions.add_members(
        session, principal.namespace_id, version_id, body.concept_ids, if_match=if_match
    )
    send_etag(response, version.revision)
    return versions.version_public(session, version)


@router.delete("/concept-set-versions/{version_id}/concepts", response_model=VersionPublic)
def remove_concepts(
    version_id: IdPath,
    body: ConceptIds,
    principal: WriteDep,
    session: SessionDep,
    if_match: IfMatchDep,
    response: Response,
) -> VersionPublic:
    """Remove concepts from a draft (JSON body ``{"concept_ids": [...]}``)."""
    version = versions.remove_members(
        session, principal.namespace_id, version_id, body.concept_ids, if_match=if_match
    )
    send_etag(response, version.revision)
    return versions.version_public(session, version)


@router.post("/concept-set-versions/{version_id}/concepts:remove", response_model=VersionPublic)
def remove_concepts_post(
    version_id: IdPath,
    body: ConceptIds,
    principal: WriteDep,
    session: SessionDep,
    if_match: IfMatchDep,
    response: Response,
) -> VersionPublic:
    """Same as ``DELETE .../concepts``, for clients that cannot send a DELETE body."""
    return remove_concepts(version_id, body, principal, session, if_match, response)


@router.post("/concept-set-versions/{version_id}/publish", response_model=VersionPublic)
def publish_version(
    version_id: IdPath,
    principal: WriteDep,
    session: SessionDep,
    if_match: IfMatchDep,
    response: Response,
) -> VersionPublic:
    """Publish a draft: it and its stimuli snapshot become immutable forever.

    Of concurrent publishes of one draft exactly one succeeds; the others get 409
    ``immutable``. With ``If-Match``: 412 if the draft changed since that ETag.
    """
    version = versions.publish_version(
        session, principal.namespace_id, version_id, if_match=if_match
    )
    send_etag(response, version.revision)
    return versions.version_public(session, version)


@router.get("/concept-set-versions/{a}/diff/{b}", response_model=VersionDiff)
def diff_versions(a: IdPath, b: IdPath, principal: AuthDep, session: SessionDep) -> VersionDiff:
    """What changed from version ``a`` to version ``b`` (any two readable versions)."""
    return versions.diff_versions(session, principal.namespace_id, a, b)


@router.get("/concept-set-versions/{version_id}/lineage", response_model=list[LineageEntry])
def get_lineage(version_id: IdPath, principal: AuthDep, session: SessionDep) -> list[LineageEntry]:
    """The version's ancestors, nearest first, following forks across sets."""
    return versions.lineage(session, principal.namespace_id, version_id)
