"""Schemas of the vector endpoints (the upload body itself is safetensors, not JSON)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from .bounds import Id, Layer, RequestModel

__all__ = ["UploadResultPublic", "VectorsPresentPublic", "VectorsPresentRequest"]


class UploadResultPublic(BaseModel):
    """``inserted`` new rows; ``skipped`` identical rows that were already stored."""

    inserted: int
    skipped: int


class VectorsPresentRequest(RequestModel):
    """Which of ``concept_ids`` already have atoms at all ``layers`` (model, recipe)?"""

    recipe_id: Id
    layers: list[Layer] = Field(min_length=1, max_length=1000)
    concept_ids: list[Id] = Field(max_length=200_000)


class VectorsPresentPublic(BaseModel):
    """The concept ids having atoms at every requested layer, ascending."""

    present: list[int]
