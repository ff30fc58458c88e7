"""Schemas of the vector endpoints (the upload body itself is safetensors, not JSON)."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["UploadResultPublic", "VectorsPresentPublic", "VectorsPresentRequest"]


class UploadResultPublic(BaseModel):
    """``inserted`` new rows; ``skipped`` identical rows that were already stored."""

    inserted: int
    skipped: int


class VectorsPresentRequest(BaseModel):
    """Which of ``concept_ids`` already have atoms at all ``layers`` (model, recipe)?"""

    recipe_id: int
    layers: list[int] = Field(min_length=1, max_length=1000)
    concept_ids: list[int] = Field(max_length=200_000)


class VectorsPresentPublic(BaseModel):
    """The concept ids having atoms at every requested layer, ascending."""

    present: list[int]
