"""Schemas for models (language models) and recipes."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field, field_validator

from ..models import MAX_HIDDEN_SIZE
from .bounds import RequestModel
from .common import Page, PublicModel

__all__ = [
    "ModelCreate",
    "ModelPublic",
    "ModelsPublic",
    "RecipeCreate",
    "RecipePublic",
    "RecipesPublic",
]

Name = Annotated[str, Field(min_length=1, max_length=300)]


class ModelCreate(RequestModel):
    """A language model: Hugging Face id and revision, and its shape."""

    hf_id: Name
    revision: Name = "main"
    hidden_size: int = Field(ge=1, le=MAX_HIDDEN_SIZE)
    num_layers: int = Field(ge=1, le=10_000)
    architecture: Name


class ModelPublic(PublicModel):
    """A registered model."""

    id: int
    hf_id: str
    revision: str
    hidden_size: int
    num_layers: int
    architecture: str
    created_at: dt.datetime


ModelsPublic = Page[ModelPublic]


class RecipeCreate(RequestModel):
    """How atoms are extracted (see docs/dictionary-format.md, "Recipe fields")."""

    token_position: Literal["last", "mean"] = "last"
    reduction: Literal["mean", "pc1"] = "mean"
    prompt_template: str = Field(default="{stimulus}", min_length=1, max_length=20_000)
    code_version: str = Field(min_length=1, max_length=100)

    @field_validator("prompt_template")
    @classmethod
    def _has_placeholder(cls, value: str) -> str:
        if "{stimulus}" not in value:
            raise ValueError("must contain '{stimulus}'")
        return value


class RecipePublic(PublicModel):
    """A stored recipe; ``content_hash`` identifies its content."""

    id: int
    token_position: str
    reduction: str
    prompt_template: str
    code_version: str
    content_hash: str
    created_at: dt.datetime


RecipesPublic = Page[RecipePublic]
