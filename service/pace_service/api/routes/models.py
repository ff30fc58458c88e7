"""``/v1/models``: language models (global; write keys register them)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from ...schemas.models import ModelCreate, ModelPublic, ModelsPublic
from ...store import models as store
from ..deps import AdminDep, AuthDep, SessionDep, WriteDep
from ..pagination import PageDep
from ..params import IdPath, TextQuery

__all__ = ["router"]

router = APIRouter(tags=["models"])


@router.post("/models", response_model=ModelPublic, status_code=status.HTTP_201_CREATED)
def create_model(body: ModelCreate, _principal: WriteDep, session: SessionDep) -> ModelPublic:
    """Register a model (409 ``duplicate`` on the same hf_id + revision)."""
    return ModelPublic.model_validate(store.create_model(session, body))


@router.get("/models", response_model=ModelsPublic)
def list_models(
    _principal: AuthDep,
    session: SessionDep,
    page: PageDep,
    hf_id: TextQuery = None,
    revision: TextQuery = None,
) -> ModelsPublic:
    """Models, filtered by ``hf_id`` and ``revision``."""
    rows, total = store.list_models(
        session, hf_id=hf_id, revision=revision, limit=page.limit, offset=page.offset
    )
    return ModelsPublic(
        items=[ModelPublic.model_validate(r) for r in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/models/{model_id}", response_model=ModelPublic)
def get_model(model_id: IdPath, _principal: AuthDep, session: SessionDep) -> ModelPublic:
    """One model."""
    return ModelPublic.model_validate(store.get_model(session, model_id))


@router.delete("/models/{model_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_model(model_id: IdPath, _principal: AdminDep, session: SessionDep) -> Response:
    """Delete an unused model (admin; 409 ``conflict`` once vectors refer to it)."""
    store.delete_model(session, model_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
