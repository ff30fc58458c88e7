"""Schemas for concept sets, their versions, diffs and forks."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator

from .bounds import Id, RequestModel, VersionNumber
from .common import Page

__all__ = [
    "ConceptIds",
    "ConceptRef",
    "ConceptSetCreate",
    "ConceptSetFork",
    "ConceptSetPublic",
    "ConceptSetUpdate",
    "ConceptSetsPublic",
    "LineageEntry",
    "StimuliChange",
    "VersionCreate",
    "VersionDiff",
    "VersionPublic",
    "VersionSummary",
    "VersionsPublic",
]

SetName = Annotated[str, Field(min_length=1, max_length=300)]
MAX_MEMBERS_PER_REQUEST = 100_000


def _not_blank(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("must not be blank")
    return value


class ConceptSetCreate(RequestModel):
    """A new concept set (private unless ``public``)."""

    name: SetName
    description: str = Field(default="", max_length=10_000)
    public: bool = False

    _name_ok = field_validator("name")(_not_blank)


class ConceptSetUpdate(RequestModel):
    """A partial update of a set's metadata (versions have their own rules)."""

    name: SetName | None = None
    description: str | None = Field(default=None, max_length=10_000)
    public: bool | None = None

    _name_ok = field_validator("name")(_not_blank)


class ConceptSetFork(RequestModel):
    """Fork a readable set into the caller's namespace.

    ``from_version`` is a version *number* of the source set; by default its latest
    published version, or its latest version if none is published.
    """

    name: SetName
    description: str | None = Field(default=None, max_length=10_000)
    public: bool = False
    from_version: VersionNumber | None = None

    _name_ok = field_validator("name")(_not_blank)


class VersionSummary(BaseModel):
    """A version in a list."""

    id: int
    set_id: int
    number: int
    status: Literal["draft", "published"]
    parent_version_id: int | None
    n_concepts: int
    created_at: dt.datetime
    published_at: dt.datetime | None
    revision: int = Field(
        description="Bumped by each edit of the draft (members, publish); the ETag's value"
    )


class VersionPublic(VersionSummary):
    """A version with its set's identity and its member concept ids (ascending)."""

    set_name: str
    namespace: str
    concept_ids: list[int]


VersionsPublic = Page[VersionSummary]


class ConceptSetPublic(BaseModel):
    """A concept set with a summary of its versions (ascending numbers)."""

    id: int
    namespace: str
    name: str
    description: str
    public: bool
    forked_from_set_id: int | None
    created_at: dt.datetime
    revision: int = Field(description="Bumped by each PATCH; the ETag is its quoted value")
    versions: list[VersionSummary]


ConceptSetsPublic = Page[ConceptSetPublic]


class VersionCreate(RequestModel):
    """A new draft version of a set.

    Its members are copied from ``from_version`` (a version number of the same set),
    by default from the set's latest version; ``empty: true`` starts with none.
    """

    from_version: VersionNumber | None = None
    empty: bool = False


class ConceptIds(RequestModel):
    """Concept ids to add to or remove from a draft."""

    concept_ids: list[Id] = Field(min_length=1, max_length=MAX_MEMBERS_PER_REQUEST)


class ConceptRef(BaseModel):
    """A concept named in a diff."""

    id: int
    name: str


class StimuliChange(BaseModel):
    """How one concept's stimuli differ between two versions (texts)."""

    concept_id: int
    name: str
    added: list[str]
    removed: list[str]


class VersionDiff(BaseModel):
    """What changed from version ``from_version_id`` to ``to_version_id``."""

    from_version_id: int
    to_version_id: int
    added: list[ConceptRef]
    removed: list[ConceptRef]
    stimuli_changed: list[StimuliChange]


class LineageEntry(BaseModel):
    """One ancestor of a version (nearest first); fields are null where not readable."""

    version_id: int
    set_id: int | None
    set_name: str | None
    namespace: str | None
    number: int | None
    status: str | None
