"""Schemas for tasks, partitions and labels."""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, field_validator

from .bounds import Id, RequestModel
from .common import Page, PublicModel

__all__ = [
    "LabelIn",
    "LabelPublic",
    "Labeler",
    "OverrideCreate",
    "PartitionCreate",
    "PartitionPublic",
    "PartitionSummary",
    "PartitionsPublic",
    "TaskCreate",
    "TaskPublic",
    "TaskUpdate",
    "TasksPublic",
]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


TaskName = Annotated[str, Field(min_length=1, max_length=300), AfterValidator(_not_blank)]
"""A task's name, on create and on rename alike: 1 to 300 characters, not all blank."""
MAX_LABELS = 200_000


class TaskCreate(RequestModel):
    """An alignment task: a name and a description of the goal."""

    name: TaskName
    description: str = Field(default="", max_length=20_000)


class TaskUpdate(RequestModel):
    """A partial update of a task."""

    name: TaskName | None = None
    description: str | None = Field(default=None, max_length=20_000)


class TaskPublic(PublicModel):
    """A stored task."""

    id: int
    name: str
    description: str
    created_at: dt.datetime
    revision: int = Field(description="Bumped by each PATCH; the ETag is its quoted value")


TasksPublic = Page[TaskPublic]


def _finite_score(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError("must be finite")
    return value


class Labeler(RequestModel):
    """Who gave a label: an LLM (model name), a person, or an offline classifier."""

    kind: Literal["llm", "human", "offline"]
    name: str = Field(min_length=1, max_length=300)


class LabelIn(RequestModel):
    """One concept's label."""

    concept_id: Id
    label: Literal["benign", "undesirable"]
    score: float | None = None
    rationale: str = Field(default="", max_length=20_000)
    labeler: Labeler

    _score_ok = field_validator("score")(_finite_score)


class LabelPublic(BaseModel):
    """A stored label."""

    concept_id: int
    label: Literal["benign", "undesirable"]
    score: float | None
    rationale: str
    labeler: dict[str, Any]


class PartitionCreate(RequestModel):
    """A new partition version of (task, concept-set version)."""

    task_id: Id
    concept_set_version_id: Id
    labels: list[LabelIn] = Field(max_length=MAX_LABELS)
    provenance: dict[str, Any] = Field(default_factory=dict)


class OverrideLabel(RequestModel):
    """A label given by a person."""

    concept_id: Id
    label: Literal["benign", "undesirable"]
    score: float | None = None
    rationale: str = Field(default="", max_length=20_000)
    labeler: Labeler | None = None

    _score_ok = field_validator("score")(_finite_score)


class OverrideCreate(RequestModel):
    """Human overrides: these labels replace the parent's for their concepts.

    A label's ``labeler`` defaults to ``{"kind": "human", "name": <namespace>}``.
    """

    labels: list[OverrideLabel] = Field(min_length=1, max_length=MAX_LABELS)
    note: str = Field(default="", max_length=20_000)


class PartitionSummary(BaseModel):
    """A partition in a list (without labels)."""

    id: int
    task_id: int
    concept_set_version_id: int
    version: int
    parent_id: int | None
    provenance: dict[str, Any]
    created_at: dt.datetime
    n_benign: int
    n_undesirable: int


class PartitionPublic(PartitionSummary):
    """A partition with its labels (by concept id)."""

    labels: list[LabelPublic]


PartitionsPublic = Page[PartitionSummary]
