"""``/v1/tasks``: alignment tasks (private to their namespace)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from ...schemas.partitions import TaskCreate, TaskPublic, TasksPublic, TaskUpdate
from ...store import tasks as store
from ...store.access import owned_task
from ..deps import AuthDep, SessionDep, WriteDep
from ..pagination import PageDep
from ..params import IdPath, TextQuery
from ..preconditions import IfMatchDep, send_etag

__all__ = ["router"]

router = APIRouter(tags=["tasks"])


@router.post("/tasks", response_model=TaskPublic, status_code=status.HTTP_201_CREATED)
def create_task(
    body: TaskCreate, principal: WriteDep, session: SessionDep, response: Response
) -> TaskPublic:
    """Create a task (409 ``duplicate`` if its name exists in the namespace)."""
    task = store.create_task(session, principal.namespace_id, body)
    send_etag(response, task.revision)
    return TaskPublic.model_validate(task)


@router.get("/tasks", response_model=TasksPublic)
def list_tasks(
    principal: AuthDep, session: SessionDep, page: PageDep, name: TextQuery = None
) -> TasksPublic:
    """The namespace's tasks."""
    rows, total = store.list_tasks(
        session, principal.namespace_id, name=name, limit=page.limit, offset=page.offset
    )
    return TasksPublic(
        items=[TaskPublic.model_validate(r) for r in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/tasks/{task_id}", response_model=TaskPublic)
def get_task(
    task_id: IdPath, principal: AuthDep, session: SessionDep, response: Response
) -> TaskPublic:
    """One task (``ETag``: its revision, for ``If-Match`` on PATCH)."""
    task = owned_task(session, principal.namespace_id, task_id)
    send_etag(response, task.revision)
    return TaskPublic.model_validate(task)


@router.patch("/tasks/{task_id}", response_model=TaskPublic)
def update_task(
    task_id: IdPath,
    body: TaskUpdate,
    principal: WriteDep,
    session: SessionDep,
    if_match: IfMatchDep,
    response: Response,
) -> TaskPublic:
    """Rename or re-describe a task (412 ``precondition_failed`` on a stale ``If-Match``)."""
    task = store.update_task(session, principal.namespace_id, task_id, body, if_match=if_match)
    send_etag(response, task.revision)
    return TaskPublic.model_validate(task)


@router.delete("/tasks/{task_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_task(task_id: IdPath, principal: WriteDep, session: SessionDep) -> Response:
    """Delete a task and all its partitions."""
    store.delete_task(session, principal.namespace_id, task_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
