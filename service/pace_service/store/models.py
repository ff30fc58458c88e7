"""Models (language models) and recipes: global, shared by every namespace."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ..errors import Conflict, Duplicate, NotFound
from ..models import Atom, Dictionary, Model, Recipe
from ..schemas.models import ModelCreate, RecipeCreate

__all__ = [
    "create_model",
    "delete_model",
    "delete_recipe",
    "get_model",
    "get_or_create_recipe",
    "get_recipe",
    "list_models",
    "list_recipes",
    "recipe_content_hash",
]


def get_model(session: Session, model_id: int, *, field: str | None = "model_id") -> Model:
    """The model with ``model_id`` (404 ``not_found`` naming ``field``)."""
    model = session.get(Model, model_id)
    if model is None:
        raise NotFound(f"model {model_id} not found", field=field)
    return model


def create_model(session: Session, data: ModelCreate) -> Model:
    """Register a model (409 ``duplicate`` on the same hf_id + revision)."""
    exists = session.scalar(
        select(Model.id).where(Model.hf_id == data.hf_id, Model.revision == data.revision)
    )
    if exists is not None:
        raise Duplicate(
            f"model {data.hf_id}@{data.revision} already exists (id {exists})", field="hf_id"
        )
    model = Model(**data.model_dump())
    session.add(model)
    session.flush()
    return model


def list_models(
    session: Session,
    *,
    hf_id: str | None,
    revision: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Model], int]:
    """Models matching the filters, oldest first, and the total."""
    query = select(Model)
    if hf_id is not None:
        query = query.where(Model.hf_id == hf_id)
    if revision is not None:
        query = query.where(Model.revision == revision)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Model.id).limit(limit).offset(offset)).all()
    return list(rows), total


def delete_model(session: Session, model_id: int) -> None:
    """Delete a model that nothing uses yet (409 ``conflict`` once atoms refer to it)."""
    model = get_model(session, model_id)
    if session.scalar(select(Atom.model_id).where(Atom.model_id == model.id).limit(1)):
        raise Conflict(
            f"model {model_id} has stored vectors; models are shared by every namespace, "
            "so one in use is never deleted",
            field="model_id",
        )
    session.execute(delete(Dictionary).where(Dictionary.model_id == model.id))
    session.delete(model)
    session.flush()


def recipe_content_hash(data: RecipeCreate) -> str:
    """sha256 of the recipe's canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(data.model_dump(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def get_or_create_recipe(session: Session, data: RecipeCreate) -> tuple[Recipe, bool]:
    """The recipe with this content, and whether it was created now (race-safe)."""
    content_hash = recipe_content_hash(data)
    inserted = session.scalar(
        insert(Recipe)
        .values(**data.model_dump(), content_hash=content_hash)
        .on_conflict_do_nothing(index_elements=[Recipe.content_hash])
        .returning(Recipe.id)
    )
    recipe = session.scalars(select(Recipe).where(Recipe.content_hash == content_hash)).one()
    return recipe, inserted is not None


def get_recipe(session: Session, recipe_id: int, *, field: str | None = "recipe_id") -> Recipe:
    """The recipe with ``recipe_id`` (404 ``not_found`` naming ``field``)."""
    recipe = session.get(Recipe, recipe_id)
    if recipe is None:
        raise NotFound(f"recipe {recipe_id} not found", field=field)
    return recipe


def delete_recipe(session: Session, recipe_id: int) -> None:
    """Delete a recipe that nothing uses yet (409 ``conflict`` once atoms refer to it)."""
    recipe = get_recipe(session, recipe_id)
    if session.scalar(select(Atom.recipe_id).where(Atom.recipe_id == recipe.id).limit(1)):
        raise Conflict(
            f"recipe {recipe_id} has stored vectors and is never deleted", field="recipe_id"
        )
    session.execute(delete(Dictionary).where(Dictionary.recipe_id == recipe.id))
    session.delete(recipe)
    session.flush()


def list_recipes(session: Session, *, limit: int, offset: int) -> tuple[list[Recipe], int]:
    """All recipes, oldest first, and the total."""
    total = session.scalar(select(func.count()).select_from(Recipe)) or 0
    rows = session.scalars(select(Recipe).order_by(Recipe.id).limit(limit).offset(offset)).all()
    return list(rows), total
