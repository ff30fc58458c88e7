"""``/v1/partitions``: versioned labels of a task over a concept-set version."""

from __future__ import annotations

from fastapi import APIRouter, status

from ...errors import NotFound
from ...schemas.partitions import (
    OverrideCreate,
    PartitionCreate,
    PartitionPublic,
    PartitionsPublic,
)
from ...store import partitions as store
from ...store.access import readable_partition
from ..deps import AuthDep, SessionDep, WriteDep
from ..pagination import PageDep
from ..params import IdPath, IdQuery, IdQueryRequired

__all__ = ["router"]

router = APIRouter(tags=["partitions"])


@router.post("/partitions", response_model=PartitionPublic, status_code=status.HTTP_201_CREATED)
def create_partition(
    body: PartitionCreate, principal: WriteDep, session: SessionDep
) -> PartitionPublic:
    """A new partition version (numbered per task and concept-set version)."""
    partition = store.create_partition(session, principal.namespace_id, body)
    return store.partition_public(session, partition)


@router.get("/partitions", response_model=PartitionsPublic)
def list_partitions(
    principal: AuthDep,
    session: SessionDep,
    page: PageDep,
    task_id: IdQuery = None,
    concept_set_version_id: IdQuery = None,
) -> PartitionsPublic:
    """The namespace's partitions, newest version first per (task, version)."""
    rows, total = store.list_partitions(
        session,
        principal.namespace_id,
        task_id=task_id,
        concept_set_version_id=concept_set_version_id,
        limit=page.limit,
        offset=page.offset,
    )
    return PartitionsPublic(
        items=store.partition_summaries(session, rows),
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/partitions/latest", response_model=PartitionPublic)
def latest_partition(
    task_id: IdQueryRequired,
    principal: AuthDep,
    session: SessionDep,
    concept_set_version_id: IdQuery = None,
) -> PartitionPublic:
    """The newest partition of a task (optionally over one concept-set version)."""
    partition = store.latest_partition(
        session, principal.namespace_id, task_id, concept_set_version_id
    )
    if partition is None:
        raise NotFound(f"task {task_id} has no partition", field="task_id")
    return store.partition_public(session, partition)


@router.get("/partitions/{partition_id}", response_model=PartitionPublic)
def get_partition(partition_id: IdPath, principal: AuthDep, session: SessionDep) -> PartitionPublic:
    """One partition with its labels."""
    partition = readable_partition(session, principal.namespace_id, partition_id)
    return store.partition_public(session, partition)


@router.post(
    "/partitions/{partition_id}/overrides",
    response_model=PartitionPublic,
    status_code=status.HTTP_201_CREATED,
)
def override_partition(
    partition_id: IdPath, body: OverrideCreate, principal: WriteDep, session: SessionDep
) -> PartitionPublic:
    """Human review: a new partition version with these labels replaced."""
    partition = store.override_partition(
        session, principal.namespace, principal.namespace_id, principal.key_id, partition_id, body
    )
    return store.partition_public(session, partition)
