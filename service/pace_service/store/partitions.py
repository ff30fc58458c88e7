"""Partitions: immutable, versioned label sets of (task, concept-set version).

Every change makes a new version (numbered per task and concept-set version); a human
override copies its parent's labels and replaces the overridden ones.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from ..errors import ValidationFailed
from ..models import Label, Partition, Task, VersionConcept
from ..schemas.partitions import (
    LabelPublic,
    OverrideCreate,
    PartitionCreate,
    PartitionPublic,
    PartitionSummary,
)
from .access import owned_task, readable_partition, readable_version

__all__ = [
    "create_partition",
    "latest_partition",
    "list_partitions",
    "override_partition",
    "partition_labels",
    "partition_public",
    "partition_summaries",
]


def _check_labels(
    session: Session, version_id: int, concept_ids: Sequence[int], field: str
) -> None:
    seen: dict[int, int] = {}
    for i, cid in enumerate(concept_ids):
        if cid in seen:
            raise ValidationFailed(
                f"concept {cid} is labelled twice (labels {seen[cid]} and {i})",
                field=f"{field}.{i}.concept_id",
            )
        seen[cid] = i
    members = set(
        session.scalars(
            select(VersionConcept.concept_id).where(
                VersionConcept.version_id == version_id,
                VersionConcept.concept_id.in_(list(seen)),
            )
        )
    )
    for i, cid in enumerate(concept_ids):
        if cid not in members:
            raise ValidationFailed(
                f"concept {cid} is not a member of concept-set version {version_id}",
                field=f"{field}.{i}.concept_id",
            )


def _next_version(session: Session, task_id: int, version_id: int) -> int:
    # serialize numbering per task
    session.execute(select(Task.id).where(Task.id == task_id).with_for_update())
    latest = session.scalar(
        select(func.max(Partition.version)).where(
            Partition.task_id == task_id, Partition.concept_set_version_id == version_id
        )
    )
    return (latest or 0) + 1


_INSERT_LABELS = text(
    """
    INSERT INTO labels (partition_id, concept_id, label, score, rationale, labeler)
    SELECT :pid, u.c, u.l, u.s, u.r, u.j::jsonb
    FROM unnest(
        CAST(:c AS bigint[]), CAST(:l AS text[]), CAST(:s AS double precision[]),
        CAST(:r AS text[]), CAST(:j AS text[])
    ) AS u(c, l, s, r, j)
    """
)


def _insert(
    session: Session,
    *,
    task_id: int,
    version_id: int,
    parent_id: int | None,
    provenance: dict[str, Any],
    labels: Sequence[dict[str, Any]],
) -> Partition:
    partition = Partition(
        task_id=task_id,
        concept_set_version_id=version_id,
        version=_next_version(session, task_id, version_id),
        parent_id=parent_id,
        provenance=provenance,
    )
    session.add(partition)
    session.flush()
    for start in range(0, len(labels), 10_000):
        chunk = labels[start : start + 10_000]
        session.execute(
            _INSERT_LABELS,
            {
                "pid": partition.id,
                "c": [r["concept_id"] for r in chunk],
                "l": [r["label"] for r in chunk],
                "s": [r["score"] for r in chunk],
                "r": [r["rationale"] for r in chunk],
                "j": [json.dumps(r["labeler"]) for r in chunk],
            },
        )
    session.refresh(partition)
    return partition


def create_partition(session: Session, namespace_id: int, data: PartitionCreate) -> Partition:
    """A new partition version from a full list of labels."""
    task = owned_task(session, namespace_id, data.task_id)
    version = readable_version(session, namespace_id, data.concept_set_version_id)
    _check_labels(session, version.id, [label.concept_id for label in data.labels], "labels")
    return _insert(
        session,
        task_id=task.id,
        version_id=version.id,
        parent_id=None,
        provenance=data.provenance,
        labels=[label.model_dump() for label in data.labels],
    )


def override_partition(
    session: Session,
    namespace: str,
    namespace_id: int,
    key_id: int,
    partition_id: int,
    data: OverrideCreate,
) -> Partition:
    """A new version: the parent's labels with ``data.labels`` replacing theirs."""
    parent = readable_partition(session, namespace_id, partition_id)
    _check_labels(
        session,
        parent.concept_set_version_id,
        [label.concept_id for label in data.labels],
        "labels",
    )
    merged: dict[int, dict[str, Any]] = {
        row.concept_id: {
            "concept_id": row.concept_id,
            "label": row.label,
            "score": row.score,
            "rationale": row.rationale,
            "labeler": row.labeler,
        }
        for row in session.scalars(select(Label).where(Label.partition_id == parent.id))
    }
    for label in data.labels:
        labeler = (
            label.labeler.model_dump()
            if label.labeler is not None
            else {"kind": "human", "name": namespace}
        )
        merged[label.concept_id] = {
            "concept_id": label.concept_id,
            "label": label.label,
            "score": label.score,
            "rationale": label.rationale,
            "labeler": labeler,
        }
    provenance = {
        "kind": "human_override",
        "parent_id": parent.id,
        "api_key_id": key_id,
        "overridden": [label.concept_id for label in data.labels],
        "note": data.note,
    }
    return _insert(
        session,
        task_id=parent.task_id,
        version_id=parent.concept_set_version_id,
        parent_id=parent.id,
        provenance=provenance,
        labels=[merged[cid] for cid in sorted(merged)],
    )


def partition_labels(session: Session, partition_id: int) -> list[Label]:
    """The partition's labels by concept id."""
    return list(
        session.scalars(
            select(Label).where(Label.partition_id == partition_id).order_by(Label.concept_id)
        )
    )


def _counts(session: Session, ids: Sequence[int]) -> dict[tuple[int, str], int]:
    if not ids:
        return {}
    rows = session.execute(
        select(Label.partition_id, Label.label, func.count())
        .where(Label.partition_id.in_(ids))
        .group_by(Label.partition_id, Label.label)
    ).all()
    return {(pid, label): n for pid, label, n in rows}


def partition_summaries(session: Session, rows: Sequence[Partition]) -> list[PartitionSummary]:
    """Summaries with label counts, in the given order."""
    counts = _counts(session, [p.id for p in rows])
    return [
        PartitionSummary(
            id=p.id,
            task_id=p.task_id,
            concept_set_version_id=p.concept_set_version_id,
            version=p.version,
            parent_id=p.parent_id,
            provenance=p.provenance,
            created_at=p.created_at,
            n_benign=counts.get((p.id, "benign"), 0),
            n_undesirable=counts.get((p.id, "undesirable"), 0),
        )
        for p in rows
    ]


def partition_public(session: Session, partition: Partition) -> PartitionPublic:
    """A partition with its labels."""
    (summary,) = partition_summaries(session, [partition])
    return PartitionPublic(
        **summary.model_dump(),
        labels=[
            LabelPublic(
                concept_id=row.concept_id,
                label=row.label,  # type: ignore[arg-type]
                score=row.score,
                rationale=row.rationale,
                labeler=row.labeler,
            )
            for row in partition_labels(session, partition.id)
        ],
    )


def list_partitions(
    session: Session,
    namespace_id: int,
    *,
    task_id: int | None,
    concept_set_version_id: int | None,
    limit: int,
    offset: int,
) -> tuple[list[Partition], int]:
    """The namespace's partitions (newest version first), filtered.

    A filter naming a task or version the caller cannot read is 404, as everywhere.
    """
    query = (
        select(Partition)
        .join(Task, Task.id == Partition.task_id)
        .where(Task.namespace_id == namespace_id)
    )
    if task_id is not None:
        owned_task(session, namespace_id, task_id)
        query = query.where(Partition.task_id == task_id)
    if concept_set_version_id is not None:
        readable_version(session, namespace_id, concept_set_version_id)
        query = query.where(Partition.concept_set_version_id == concept_set_version_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(
            Partition.task_id, Partition.concept_set_version_id, Partition.version.desc()
        )
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), total


def latest_partition(
    session: Session, namespace_id: int, task_id: int, concept_set_version_id: int | None = None
) -> Partition | None:
    """The newest partition of a task (optionally over one concept-set version)."""
    owned_task(session, namespace_id, task_id)
    query = select(Partition).where(Partition.task_id == task_id)
    if concept_set_version_id is not None:
        query = query.where(Partition.concept_set_version_id == concept_set_version_id)
    return session.scalars(query.order_by(Partition.id.desc()).limit(1)).first()
