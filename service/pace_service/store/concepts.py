"""Concepts and their stimuli.

Stimuli are immutable: an update adds rows or retires them (``retired_at``). Identical
text is stored once per concept (sha256 of the UTF-8 text, unique per concept);
adding a retired text again brings the same row back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ..errors import Duplicate, Forbidden, Immutable, NotFound
from ..models import (
    Concept,
    ConceptSetVersion,
    Namespace,
    Stimulus,
    VersionConcept,
)
from ..schemas.concepts import (
    ConceptBulkItem,
    ConceptBulkResult,
    ConceptCreate,
    ConceptPublic,
    ConceptSummary,
    ConceptUpdate,
    StimulusIn,
    StimulusPublic,
)
from .access import readable_concept, readable_version
from .revisions import IfMatch, claim

__all__ = [
    "bulk_create_concepts",
    "concept_public",
    "create_concept",
    "delete_concept",
    "get_readable_concept",
    "list_concepts",
    "live_stimuli",
    "text_sha256",
    "update_concept",
]


def text_sha256(text: str) -> bytes:
    """The dedup key of a stimulus text."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def _stimulus_rows(concept_id: int, stimuli: Iterable[StimulusIn]) -> list[dict[str, Any]]:
    rows: dict[bytes, dict[str, Any]] = {}
    for s in stimuli:
        digest = text_sha256(s.text)
        if digest not in rows:  # identical text stored once; the first provenance wins
            rows[digest] = {
                "concept_id": concept_id,
                "text": s.text,
                "text_sha256": digest,
                "source": s.source,
                "provenance": s.provenance,
            }
    return list(rows.values())


_INSERT_STIMULI = text(
    """
    INSERT INTO stimuli (concept_id, text, text_sha256, source, provenance)
    SELECT u.c, u.t, u.h, u.s, u.p::jsonb
    FROM unnest(
        CAST(:c AS bigint[]), CAST(:t AS text[]), CAST(:h AS bytea[]),
        CAST(:s AS text[]), CAST(:p AS text[])
    ) AS u(c, t, h, s, p)
    ON CONFLICT (concept_id, text_sha256)
    DO UPDATE SET retired_at = NULL WHERE stimuli.retired_at IS NOT NULL
    """
)


def _add_stimuli(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert stimuli, one statement per 10,000 rows (arrays, not a row per statement).

    A text the concept has already is left as is; a retired one is revived.
    """
    for start in range(0, len(rows), 10_000):
        chunk = rows[start : start + 10_000]
        session.execute(
            _INSERT_STIMULI,
            {
                "c": [r["concept_id"] for r in chunk],
                "t": [r["text"] for r in chunk],
                "h": [r["text_sha256"] for r in chunk],
                "s": [r["source"] for r in chunk],
                "p": [json.dumps(r["provenance"]) for r in chunk],
            },
        )


def live_stimuli(session: Session, concept_ids: Sequence[int]) -> dict[int, list[Stimulus]]:
    """The current (not retired) stimuli of each concept, oldest first."""
    out: dict[int, list[Stimulus]] = {cid: [] for cid in concept_ids}
    if not concept_ids:
        return out
    rows = session.scalars(
        select(Stimulus)
        .where(Stimulus.concept_id.in_(concept_ids), Stimulus.retired_at.is_(None))
        .order_by(Stimulus.id)
    )
    for row in rows:
        out[row.concept_id].append(row)
    return out


def _namespace_name(session: Session, namespace_id: int) -> str:
    namespace = session.get(Namespace, namespace_id)
    assert namespace is not None
    return namespace.name


def concept_public(session: Session, concept: Concept) -> ConceptPublic:
    """The full public form of a concept, with its live stimuli."""
    stimuli = live_stimuli(session, [concept.id])[concept.id]
    return ConceptPublic(
        id=concept.id,
        namespace=_namespace_name(session, concept.namespace_id),
        name=concept.name,
        description=concept.description,
        tags=list(concept.tags),
        n_stimuli=len(stimuli),
        created_at=concept.created_at,
        updated_at=concept.updated_at,
        revision=concept.revision,
        stimuli=[StimulusPublic.model_validate(s) for s in stimuli],
    )


def _check_name_free(session: Session, namespace_id: int, name: str, field: str) -> None:
    taken = session.scalar(
        select(Concept.id).where(Concept.namespace_id == namespace_id, Concept.name == name)
    )
    if taken is not None:
        raise Duplicate(f"concept {name!r} already exists (id {taken})", field=field)


def create_concept(session: Session, namespace_id: int, data: ConceptCreate) -> Concept:
    """Create a concept with its stimuli (409 ``duplicate`` if the name is taken)."""
    _check_name_free(session, namespace_id, data.name, "name")
    concept = Concept(
        namespace_id=namespace_id, name=data.name, description=data.description, tags=data.tags
    )
    session.add(concept)
    session.flush()
    _add_stimuli(session, _stimulus_rows(concept.id, data.stimuli))
    session.refresh(concept)
    return concept


def bulk_create_concepts(
    session: Session,
    namespace_id: int,
    items: Sequence[ConceptCreate],
    *,
    skip_existing: bool,
) -> ConceptBulkResult:
    """Create many concepts in the caller's transaction.

    A name repeated in ``items`` is 409 ``duplicate`` (``field`` = ``"<index>.name"``); so
    is a name that exists already, unless ``skip_existing`` (then the existing concept is
    reported with ``created: false`` and left unchanged).
    """
    first_index: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.name in first_index:
            raise Duplicate(
                f"concept {item.name!r} appears twice (items {first_index[item.name]} and {i})",
                field=f"{i}.name",
            )
        first_index[item.name] = i
    existing: dict[str, int] = {}
    names = list(first_index)
    for start in range(0, len(names), 5000):
        chunk = names[start : start + 5000]
        existing.update(
            session.execute(
                select(Concept.name, Concept.id).where(
                    Concept.namespace_id == namespace_id, Concept.name.in_(chunk)
                )
            ).all()
        )
    if existing and not skip_existing:
        name = next(n for n in names if n in existing)
        raise Duplicate(
            f"concept {name!r} already exists (id {existing[name]})",
            field=f"{first_index[name]}.name",
        )
    new_items = [item for item in items if item.name not in existing]
    created: dict[str, int] = {}
    if new_items:
        rows = session.execute(
            insert(Concept).returning(Concept.id, Concept.name, sort_by_parameter_order=True),
            [
                {
                    "namespace_id": namespace_id,
                    "name": item.name,
                    "description": item.description,
                    "tags": item.tags,
                }
                for item in new_items
            ],
        ).all()
        created = {name: cid for cid, name in rows}
        stimulus_rows: list[dict[str, Any]] = []
        for item in new_items:
            stimulus_rows.extend(_stimulus_rows(created[item.name], item.stimuli))
        _add_stimuli(session, stimulus_rows)
    result_items = [
        ConceptBulkItem(
            id=created.get(item.name) or existing[item.name],
            name=item.name,
            created=item.name in created,
        )
        for item in items
    ]
    return ConceptBulkResult(
        created=len(created), existing=len(items) - len(created), items=result_items
    )


def _owned_concept(session: Session, namespace_id: int, concept_id: int) -> Concept:
    concept = session.get(Concept, concept_id)
    if concept is None or concept.namespace_id != namespace_id:
        # a concept of another namespace may be readable, but it is never editable here
        readable_concept(session, namespace_id, concept_id)
        raise Forbidden(f"concept {concept_id} belongs to another namespace")
    return concept


def _published_version_holding(session: Session, concept_id: int) -> int | None:
    return session.scalar(
        select(ConceptSetVersion.id)
        .join(VersionConcept, VersionConcept.version_id == ConceptSetVersion.id)
        .where(VersionConcept.concept_id == concept_id, ConceptSetVersion.status == "published")
        .limit(1)
    )


def update_concept(
    session: Session,
    namespace_id: int,
    concept_id: int,
    data: ConceptUpdate,
    *,
    if_match: IfMatch | None = None,
) -> Concept:
    """Apply a partial update: rename, describe, retag, add or retire stimuli.

    The concept row is locked and its revision checked against ``if_match`` (412
    ``precondition_failed`` if stale) and bumped.
    """
    concept = _owned_concept(session, namespace_id, concept_id)
    claim(session, concept, if_match, f"concept {concept_id}")
    if data.name is not None and data.name != concept.name:
        published = _published_version_holding(session, concept.id)
        if published is not None:
            raise Immutable(
                f"concept {concept_id} is a member of published version {published}, "
                "which names it; create a new concept instead",
                field="name",
            )
        _check_name_free(session, namespace_id, data.name, "name")
        concept.name = data.name
    if data.description is not None:
        concept.description = data.description
    if data.tags is not None:
        concept.tags = data.tags
    if data.retire_stimuli:
        wanted = set(data.retire_stimuli)
        found = set(
            session.scalars(
                select(Stimulus.id).where(
                    Stimulus.id.in_(wanted), Stimulus.concept_id == concept.id
                )
            )
        )
        missing = sorted(wanted - found)
        if missing:
            raise NotFound(
                f"stimuli {missing} are not stimuli of concept {concept.id}",
                field="retire_stimuli",
            )
        session.execute(
            update(Stimulus)
            .where(Stimulus.id.in_(wanted), Stimulus.retired_at.is_(None))
            .values(retired_at=func.now())
        )
    _add_stimuli(session, _stimulus_rows(concept.id, data.add_stimuli))
    concept.updated_at = session.scalar(select(func.now()))  # type: ignore[assignment]
    session.flush()
    session.refresh(concept)
    return concept


def delete_concept(session: Session, namespace_id: int, concept_id: int) -> None:
    """Delete a concept unless a published version holds it (409 ``immutable``)."""
    concept = _owned_concept(session, namespace_id, concept_id)
    published = _published_version_holding(session, concept.id)
    if published is not None:
        raise Immutable(
            f"concept {concept_id} is a member of published version {published}; "
            "published versions are immutable"
        )
    session.execute(delete(Concept).where(Concept.id == concept.id))
    session.expunge(concept)


def list_concepts(
    session: Session,
    namespace_id: int,
    *,
    name: str | None,
    tag: str | None,
    version_id: int | None = None,
    limit: int,
    offset: int,
) -> tuple[list[ConceptSummary], int]:
    """Concepts (filtered by exact ``name`` and ``tag``) and the total.

    Without ``version_id``: the namespace's own concepts. With it: the members of that
    readable concept-set version, whatever their namespace.
    """
    if version_id is None:
        query = select(Concept).where(Concept.namespace_id == namespace_id)
    else:
        readable_version(session, namespace_id, version_id, field="concept_set_version_id")
        query = select(Concept).join(
            VersionConcept,
            (VersionConcept.concept_id == Concept.id) & (VersionConcept.version_id == version_id),
        )
    if name is not None:
        query = query.where(Concept.name == name)
    if tag is not None:
        query = query.where(Concept.tags.contains([tag]))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    concepts = list(session.scalars(query.order_by(Concept.id).limit(limit).offset(offset)))
    counts = dict(
        session.execute(
            select(Stimulus.concept_id, func.count())
            .where(Stimulus.concept_id.in_([c.id for c in concepts]), Stimulus.retired_at.is_(None))
            .group_by(Stimulus.concept_id)
        ).all()
    )
    namespaces = {
        ns_id: _namespace_name(session, ns_id) for ns_id in {c.namespace_id for c in concepts}
    }
    items = [
        ConceptSummary(
            id=c.id,
            namespace=namespaces[c.namespace_id],
            name=c.name,
            description=c.description,
            tags=list(c.tags),
            n_stimuli=counts.get(c.id, 0),
            created_at=c.created_at,
            updated_at=c.updated_at,
            revision=c.revision,
        )
        for c in concepts
    ]
    return items, total


def get_readable_concept(session: Session, namespace_id: int, concept_id: int) -> Concept:
    """A concept readable by ``namespace_id`` (404 otherwise)."""
    return readable_concept(session, namespace_id, concept_id)
