"""``/v1/recipes``: extraction recipes, get-or-create by content."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from ...schemas.models import RecipeCreate, RecipePublic, RecipesPublic
from ...store import models as store
from ..deps import AdminDep, AuthDep, SessionDep, WriteDep
from ..pagination import PageDep
from ..params import IdPath

__all__ = ["router"]

router = APIRouter(tags=["recipes"])


@router.post(
    "/recipes",
    response_model=RecipePublic,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": RecipePublic, "description": "An identical recipe existed"}},
)
def create_recipe(
    body: RecipeCreate, _principal: WriteDep, session: SessionDep, response: Response
) -> RecipePublic:
    """Get or create the recipe with this content: 201 if new, 200 if it existed."""
    recipe, created = store.get_or_create_recipe(session, body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return RecipePublic.model_validate(recipe)


@router.get("/recipes", response_model=RecipesPublic)
def list_recipes(_principal: AuthDep, session: SessionDep, page: PageDep) -> RecipesPublic:
    """All recipes."""
    rows, total = store.list_recipes(session, limit=page.limit, offset=page.offset)
    return RecipesPublic(
        items=[RecipePublic.model_validate(r) for r in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/recipes/{recipe_id}", response_model=RecipePublic)
def get_recipe(recipe_id: IdPath, _principal: AuthDep, session: SessionDep) -> RecipePublic:
    """One recipe."""
    return RecipePublic.model_validate(store.get_recipe(session, recipe_id))


@router.delete("/recipes/{recipe_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_recipe(recipe_id: IdPath, _principal: AdminDep, session: SessionDep) -> Response:
    """Delete an unused recipe (admin; 409 ``conflict`` once vectors refer to it)."""
    store.delete_recipe(session, recipe_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
