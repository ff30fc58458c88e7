"""``/v1/search/nearest``: the concepts whose atoms are nearest to an activation."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from ...schemas.search import NearestPublic, NearestRequest, NeighborPublic
from ...store import search as store
from ..deps import AuthDep, SessionDep

__all__ = ["router"]

router = APIRouter(tags=["search"])


def _label(value: str | None) -> Literal["benign", "undesirable"] | None:
    if value == "benign":
        return "benign"
    if value == "undesirable":
        return "undesirable"
    return None


@router.post("/search/nearest", response_model=NearestPublic)
def search_nearest(body: NearestRequest, principal: AuthDep, session: SessionDep) -> NearestPublic:
    """The ``k`` most cosine-similar concept atoms at (model, layer, recipe).

    Uses the (model, layer, recipe) binary-quantization HNSW index and an exact
    re-rank unless ``exact`` is set or the index is not built yet; ``exact`` in the
    answer says which. Only concepts readable by the caller are returned; labels come
    from ``partition_id``, or from ``task_id``'s latest partition of the version.
    """
    results, exact = store.nearest(
        session,
        principal.namespace_id,
        store.NearestQuery(
            model_id=body.model_id,
            layer=body.layer,
            recipe_id=body.recipe_id,
            k=body.k,
            vector=body.vector,
            concept_set_version_id=body.concept_set_version_id,
            partition_id=body.partition_id,
            task_id=body.task_id,
            exact=body.exact,
        ),
    )
    return NearestPublic(
        results=[
            NeighborPublic(
                concept_id=r.concept_id,
                name=r.name,
                similarity=r.similarity,
                label=_label(r.label),
            )
            for r in results
        ],
        exact=exact,
    )
