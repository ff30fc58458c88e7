"""Schemas for concepts and their stimuli."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from .bounds import Id, RequestModel
from .common import PublicModel

__all__ = [
    "ConceptBulkItem",
    "ConceptBulkResult",
    "ConceptCreate",
    "ConceptPublic",
    "ConceptSummary",
    "ConceptUpdate",
    "ConceptsPublic",
    "StimulusIn",
    "StimulusPublic",
]

MAX_STIMULUS_CHARS = 8_000
MAX_STIMULI_PER_CONCEPT = 10_000

ConceptName = Annotated[str, Field(min_length=1, max_length=500)]
Tag = Annotated[str, Field(min_length=1, max_length=100)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


class StimulusIn(RequestModel):
    """A stimulus text with its provenance (which model and prompt, from where, who)."""

    text: str = Field(min_length=1, max_length=MAX_STIMULUS_CHARS)
    source: Literal["generated", "imported", "human"] = "human"
    provenance: dict[str, Any] = Field(default_factory=dict)

    _text_not_blank = field_validator("text")(_not_blank)


class StimulusPublic(PublicModel):
    """A stored stimulus."""

    id: int
    text: str
    source: str
    provenance: dict[str, Any]
    created_at: dt.datetime


class ConceptCreate(RequestModel):
    """A new concept. Its name is case-sensitive and unique in the namespace."""

    name: ConceptName
    description: str = Field(default="", max_length=10_000)
    tags: list[Tag] = Field(default_factory=list, max_length=100)
    stimuli: list[StimulusIn] = Field(default_factory=list, max_length=MAX_STIMULI_PER_CONCEPT)

    _name_not_blank = field_validator("name")(_not_blank)


class ConceptUpdate(RequestModel):
    """A partial update. Stimuli are added or retired, never edited in place."""

    name: ConceptName | None = None
    description: str | None = Field(default=None, max_length=10_000)
    tags: list[Tag] | None = Field(default=None, max_length=100)
    add_stimuli: list[StimulusIn] = Field(default_factory=list, max_length=MAX_STIMULI_PER_CONCEPT)
    retire_stimuli: list[Id] = Field(default_factory=list, max_length=MAX_STIMULI_PER_CONCEPT)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str | None) -> str | None:
        return None if value is None else _not_blank(value)


class ConceptSummary(BaseModel):
    """A concept in a list (without its stimuli)."""

    id: int
    namespace: str
    name: str
    description: str
    tags: list[str]
    n_stimuli: int
    created_at: dt.datetime
    updated_at: dt.datetime
    revision: int = Field(description="Bumped by each edit; the ETag is its quoted value")


class ConceptPublic(ConceptSummary):
    """A concept with its current (not retired) stimuli."""

    stimuli: list[StimulusPublic]


class ConceptsPublic(BaseModel):
    """A page of concepts."""

    items: list[ConceptSummary]
    total: int
    limit: int
    offset: int


class ConceptBulkItem(BaseModel):
    """One concept of a bulk import: its id, name and whether it was created now."""

    id: int
    name: str
    created: bool


class ConceptBulkResult(BaseModel):
    """The result of a bulk import, in request order."""

    created: int
    existing: int
    items: list[ConceptBulkItem]
