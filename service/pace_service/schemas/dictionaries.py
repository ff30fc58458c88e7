"""Schemas of the dictionary endpoints (the dictionary itself is a safetensors file)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from .bounds import Id, Layer, RequestModel

__all__ = ["MAX_LAYERS_PER_DICTIONARY", "DictionaryCreate", "DictionaryPublic"]

MAX_LAYERS_PER_DICTIONARY = 1000


class DictionaryCreate(RequestModel):
    """What to materialize: a concept-set version's atoms for a model, layers, recipe."""

    concept_set_version_id: Id
    model_id: Id
    layers: list[Layer] = Field(min_length=1, max_length=MAX_LAYERS_PER_DICTIONARY)
    recipe_id: Id
    partition_id: Id | None = None


class DictionaryPublic(BaseModel):
    """A materialized dictionary; download its bytes at ``GET /v1/dictionaries/{hash}``."""

    hash: str
    n_concepts: int
    layers: list[int]
    size_bytes: int
    concept_set_version_id: int
    model_id: int
    recipe_id: int
    partition_id: int | None
    missing: list[str] = Field(
        description="Names of the version's concepts left out (no atom at some layer)"
    )
    created_at: dt.datetime
