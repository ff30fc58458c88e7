"""Schemas of ``POST /v1/search/nearest``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .bounds import Id, Layer

__all__ = [
    "MAX_VECTOR_VALUES",
    "NearestBinaryParams",
    "NearestParams",
    "NearestPublic",
    "NearestRequest",
    "NeighborPublic",
]

MAX_VECTOR_VALUES = 16000
"""pgvector's halfvec limit."""


class NearestParams(BaseModel):
    """Where to look, without the vector: the query string of a binary request."""

    model_config = ConfigDict(extra="forbid")

    model_id: Id
    layer: Layer
    recipe_id: Id | None = Field(
        default=None, description="Optional when the model's layer has atoms of one recipe only"
    )
    k: int = Field(default=10, ge=1, le=1000)
    concept_set_version_id: Id | None = None
    partition_id: Id | None = Field(default=None, description="Labels from this partition")
    task_id: Id | None = Field(
        default=None, description="Labels from this task's latest partition of the version"
    )
    exact: bool = False


class NearestBinaryParams(NearestParams):
    """The query string of an ``application/octet-stream`` request."""

    dtype: Literal["float32", "float16"] = Field(
        default="float32", description="How the body's little-endian values are encoded"
    )


class NearestRequest(NearestParams):
    """An activation and where to look for its nearest concept atoms."""

    model_config = ConfigDict(extra="ignore")

    vector: list[float] = Field(min_length=1, max_length=MAX_VECTOR_VALUES)


class NeighborPublic(BaseModel):
    """One nearest concept, by cosine similarity of its atom."""

    concept_id: int
    name: str
    similarity: float
    label: Literal["benign", "undesirable"] | None


class NearestPublic(BaseModel):
    """Most similar first; ``exact`` tells whether an exhaustive search produced it."""

    results: list[NeighborPublic]
    exact: bool
