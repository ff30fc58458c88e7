"""Concept sets: create, read, list, update, delete, fork."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import Duplicate, Immutable, NotFound
from ..models import ConceptSet, ConceptSetVersion, Namespace
from ..schemas.concept_sets import (
    ConceptSetCreate,
    ConceptSetFork,
    ConceptSetPublic,
    ConceptSetUpdate,
)
from .access import owned_set, readable_set, set_readable_clause
from .revisions import IfMatch, claim
from .versions import create_version, version_summaries

__all__ = [
    "create_set",
    "delete_set",
    "fork_set",
    "get_set",
    "list_sets",
    "set_public",
    "update_set",
]


def set_public(session: Session, concept_set: ConceptSet) -> ConceptSetPublic:
    """The public form of a set, with its version summaries."""
    namespace = session.get(Namespace, concept_set.namespace_id)
    assert namespace is not None
    versions = list(
        session.scalars(
            select(ConceptSetVersion)
            .where(ConceptSetVersion.set_id == concept_set.id)
            .order_by(ConceptSetVersion.number)
        )
    )
    return ConceptSetPublic(
        id=concept_set.id,
        namespace=namespace.name,
        name=concept_set.name,
        description=concept_set.description,
        public=concept_set.public,
        forked_from_set_id=concept_set.forked_from_set_id,
        created_at=concept_set.created_at,
        revision=concept_set.revision,
        versions=version_summaries(session, versions),
    )


def _check_name_free(session: Session, namespace_id: int, name: str) -> None:
    taken = session.scalar(
        select(ConceptSet.id).where(
            ConceptSet.namespace_id == namespace_id, ConceptSet.name == name
        )
    )
    if taken is not None:
        raise Duplicate(f"concept set {name!r} already exists (id {taken})", field="name")


def create_set(session: Session, namespace_id: int, data: ConceptSetCreate) -> ConceptSet:
    """Create an empty set (no versions yet) in the caller's namespace."""
    _check_name_free(session, namespace_id, data.name)
    row = ConceptSet(
        namespace_id=namespace_id, name=data.name, description=data.description, public=data.public
    )
    session.add(row)
    session.flush()
    session.refresh(row)
    return row


def get_set(session: Session, namespace_id: int, set_id: int) -> ConceptSet:
    """A readable set (404 otherwise)."""
    return readable_set(session, namespace_id, set_id)


def list_sets(
    session: Session,
    namespace_id: int,
    *,
    name: str | None,
    namespace: str | None,
    public: bool | None,
    limit: int,
    offset: int,
) -> tuple[list[ConceptSet], int]:
    """Sets readable by the caller (its own and every public one), filtered."""
    query = select(ConceptSet).where(set_readable_clause(namespace_id))
    if name is not None:
        query = query.where(ConceptSet.name == name)
    if namespace is not None:
        query = query.join(Namespace, Namespace.id == ConceptSet.namespace_id).where(
            Namespace.name == namespace
        )
    if public is not None:
        query = query.where(ConceptSet.public.is_(public))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(ConceptSet.id).limit(limit).offset(offset)).all()
    return list(rows), total


def update_set(
    session: Session,
    namespace_id: int,
    set_id: int,
    data: ConceptSetUpdate,
    *,
    if_match: IfMatch | None = None,
) -> ConceptSet:
    """Rename, describe, or change visibility of an owned set.

    The set's revision covers these fields only (not its versions): it is checked
    against ``if_match`` under a row lock and bumped.
    """
    row = owned_set(session, namespace_id, set_id)
    claim(session, row, if_match, f"concept set {set_id}")
    if data.name is not None and data.name != row.name:
        _check_name_free(session, namespace_id, data.name)
        row.name = data.name
    if data.description is not None:
        row.description = data.description
    if data.public is not None:
        row.public = data.public
    session.flush()
    return row


def delete_set(session: Session, namespace_id: int, set_id: int) -> None:
    """Delete an owned set with only drafts (409 ``immutable`` if any version is published)."""
    row = owned_set(session, namespace_id, set_id)
    published = session.scalar(
        select(ConceptSetVersion.number).where(
            ConceptSetVersion.set_id == row.id, ConceptSetVersion.status == "published"
        )
    )
    if published is not None:
        raise Immutable(
            f"concept set {set_id} has published version {published}; published versions "
            "are kept forever, so the set cannot be deleted"
        )
    session.delete(row)
    session.flush()


def _fork_source(
    session: Session, source: ConceptSet, number: int | None
) -> ConceptSetVersion | None:
    versions = select(ConceptSetVersion).where(ConceptSetVersion.set_id == source.id)
    if number is not None:
        found = session.scalars(versions.where(ConceptSetVersion.number == number)).first()
        if found is None:
            raise NotFound(f"set {source.id} has no version {number}", field="from_version")
        return found
    order = ConceptSetVersion.number.desc()
    published = session.scalars(
        versions.where(ConceptSetVersion.status == "published").order_by(order).limit(1)
    ).first()
    return published or session.scalars(versions.order_by(order).limit(1)).first()


def fork_set(session: Session, namespace_id: int, set_id: int, data: ConceptSetFork) -> ConceptSet:
    """Fork a readable set (any namespace) into the caller's namespace.

    The fork records ``forked_from_set_id``; its version 1 (a draft) copies the source
    version's members and names it as ``parent_version_id``, so lineage crosses forks.
    """
    source = readable_set(session, namespace_id, set_id)
    source_version = _fork_source(session, source, data.from_version)
    _check_name_free(session, namespace_id, data.name)
    fork = ConceptSet(
        namespace_id=namespace_id,
        name=data.name,
        description=source.description if data.description is None else data.description,
        public=data.public,
        forked_from_set_id=source.id,
    )
    session.add(fork)
    session.flush()
    if source_version is not None:
        create_version(session, fork, from_version=None, empty=False, parent=source_version)
    session.refresh(fork)
    return fork
