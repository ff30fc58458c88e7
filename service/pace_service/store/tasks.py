"""Tasks: private to their namespace."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import Duplicate, Immutable
from ..models import ConceptSetVersion, Partition, Task
from ..schemas.partitions import TaskCreate, TaskUpdate
from .access import owned_task
from .revisions import IfMatch, claim

__all__ = ["create_task", "delete_task", "list_tasks", "update_task"]


def _check_name_free(session: Session, namespace_id: int, name: str) -> None:
    taken = session.scalar(
        select(Task.id).where(Task.namespace_id == namespace_id, Task.name == name)
    )
    if taken is not None:
        raise Duplicate(f"task {name!r} already exists (id {taken})", field="name")


def create_task(session: Session, namespace_id: int, data: TaskCreate) -> Task:
    """Create a task (409 ``duplicate`` if the name exists in the namespace)."""
    _check_name_free(session, namespace_id, data.name)
    task = Task(namespace_id=namespace_id, name=data.name, description=data.description)
    session.add(task)
    session.flush()
    session.refresh(task)
    return task


def update_task(
    session: Session,
    namespace_id: int,
    task_id: int,
    data: TaskUpdate,
    *,
    if_match: IfMatch | None = None,
) -> Task:
    """Rename or re-describe a task (revision checked against ``if_match`` and bumped)."""
    task = owned_task(session, namespace_id, task_id)
    claim(session, task, if_match, f"task {task_id}")
    if data.name is not None and data.name != task.name:
        _check_name_free(session, namespace_id, data.name)
        task.name = data.name
    if data.description is not None:
        task.description = data.description
    session.flush()
    return task


def delete_task(session: Session, namespace_id: int, task_id: int) -> None:
    """Delete a task and its partitions (409 ``immutable`` if one labels a published
    version: a published version's labels, and dictionaries built from them, stay)."""
    task = owned_task(session, namespace_id, task_id)
    # the row lock makes a partition being added now wait for this check's outcome
    session.execute(select(Task.id).where(Task.id == task.id).with_for_update())
    published = session.scalar(
        select(ConceptSetVersion.id)
        .join(Partition, Partition.concept_set_version_id == ConceptSetVersion.id)
        .where(Partition.task_id == task.id, ConceptSetVersion.status == "published")
        .limit(1)
    )
    if published is not None:
        raise Immutable(
            f"task {task_id} has partitions of published concept-set version {published}; "
            "they are kept forever, so the task cannot be deleted"
        )
    session.delete(task)
    session.flush()


def list_tasks(
    session: Session, namespace_id: int, *, name: str | None, limit: int, offset: int
) -> tuple[list[Task], int]:
    """The namespace's tasks, filtered by exact ``name``, and the total."""
    query = select(Task).where(Task.namespace_id == namespace_id)
    if name is not None:
        query = query.where(Task.name == name)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Task.id).limit(limit).offset(offset)).all()
    return list(rows), total
