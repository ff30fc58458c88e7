"""Who may read what. Private resources of another namespace are 404, never 403.

A concept set is readable by its namespace, and by everyone when public. A concept is
readable by its namespace, and by everyone when it is a member of a public set's
version. Writes need the owning namespace: a public set of another namespace is
readable, so writing to it is 403 ``forbidden`` (its existence is no secret).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.orm import Session

from ..errors import Forbidden, NotFound
from ..models import (
    Concept,
    ConceptSet,
    ConceptSetVersion,
    Partition,
    Task,
    VersionConcept,
)

__all__ = [
    "concept_readable_clause",
    "owned_set",
    "owned_task",
    "owned_version",
    "readable_concept",
    "readable_partition",
    "readable_set",
    "readable_version",
    "set_readable_clause",
]


def set_readable_clause(namespace_id: int) -> ColumnElement[bool]:
    """SQL condition: the ``ConceptSet`` row is readable by ``namespace_id``."""
    return or_(ConceptSet.namespace_id == namespace_id, ConceptSet.public.is_(True))


def concept_readable_clause(namespace_id: int) -> ColumnElement[bool]:
    """SQL condition: the ``Concept`` row is readable by ``namespace_id``."""
    in_public_set = exists(
        select(1)
        .select_from(VersionConcept)
        .join(ConceptSetVersion, ConceptSetVersion.id == VersionConcept.version_id)
        .join(ConceptSet, ConceptSet.id == ConceptSetVersion.set_id)
        .where(and_(VersionConcept.concept_id == Concept.id, ConceptSet.public.is_(True)))
    )
    return or_(Concept.namespace_id == namespace_id, in_public_set)


def readable_set(
    session: Session, namespace_id: int, set_id: int, *, field: str | None = "set_id"
) -> ConceptSet:
    """The set if readable by ``namespace_id``, else 404."""
    row = session.get(ConceptSet, set_id)
    if row is None or not (row.namespace_id == namespace_id or row.public):
        raise NotFound(f"concept set {set_id} not found", field=field)
    return row


def owned_set(
    session: Session, namespace_id: int, set_id: int, *, field: str | None = "set_id"
) -> ConceptSet:
    """The set if owned by ``namespace_id``: 404 if unreadable, 403 if only readable."""
    row = readable_set(session, namespace_id, set_id, field=field)
    if row.namespace_id != namespace_id:
        raise Forbidden(f"concept set {set_id} belongs to another namespace")
    return row


def readable_version(
    session: Session,
    namespace_id: int,
    version_id: int,
    *,
    field: str | None = "concept_set_version_id",
) -> ConceptSetVersion:
    """The concept-set version if its set is readable by ``namespace_id``, else 404."""
    version = session.get(ConceptSetVersion, version_id)
    if version is None:
        raise NotFound(f"concept-set version {version_id} not found", field=field)
    try:
        readable_set(session, namespace_id, version.set_id)
    except NotFound:
        raise NotFound(f"concept-set version {version_id} not found", field=field) from None
    return version


def owned_version(
    session: Session,
    namespace_id: int,
    version_id: int,
    *,
    field: str | None = "version_id",
) -> ConceptSetVersion:
    """The version if its set is owned by ``namespace_id`` (404 / 403 otherwise)."""
    version = readable_version(session, namespace_id, version_id, field=field)
    owned_set(session, namespace_id, version.set_id)
    return version


def readable_concept(
    session: Session, namespace_id: int, concept_id: int, *, field: str | None = "concept_id"
) -> Concept:
    """The concept if readable by ``namespace_id``, else 404."""
    row = session.scalars(
        select(Concept).where(Concept.id == concept_id, concept_readable_clause(namespace_id))
    ).first()
    if row is None:
        raise NotFound(f"concept {concept_id} not found", field=field)
    return row


def owned_task(
    session: Session, namespace_id: int, task_id: int, *, field: str | None = "task_id"
) -> Task:
    """The task if it belongs to ``namespace_id``, else 404 (tasks are private)."""
    row = session.get(Task, task_id)
    if row is None or row.namespace_id != namespace_id:
        raise NotFound(f"task {task_id} not found", field=field)
    return row


def readable_partition(
    session: Session, namespace_id: int, partition_id: int, *, field: str | None = "partition_id"
) -> Partition:
    """The partition if its task belongs to ``namespace_id``, else 404."""
    row = session.get(Partition, partition_id)
    if row is None:
        raise NotFound(f"partition {partition_id} not found", field=field)
    try:
        owned_task(session, namespace_id, row.task_id)
    except NotFound:
        raise NotFound(f"partition {partition_id} not found", field=field) from None
    return row
