"""Small frozen value types for the responses the SDK reads field by field.

Resources that users mostly pass back to the service (concepts, concept sets,
versions, tasks, partitions) stay plain ``dict``s, so new service fields need no
SDK release.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Generic, Self, TypeVar

from pace.errors import UnexpectedResponseError

__all__ = ["Me", "Model", "NearestResult", "Neighbor", "Page", "Recipe", "UploadResult"]

T = TypeVar("T")


class _FromJson:
    """Build a dataclass from a response object, ignoring unknown fields."""

    @classmethod
    def from_json(cls, data: Any) -> Self:
        if not isinstance(data, Mapping):
            raise UnexpectedResponseError(f"expected a JSON object for {cls.__name__}: {data!r}")
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        missing = [n for n in names if n not in data]
        if missing:
            raise UnexpectedResponseError(f"{cls.__name__} response lacks {missing}: {data!r}")
        return cls(**{n: data[n] for n in names})


@dataclass(frozen=True)
class Me(_FromJson):
    """Who an API key is: its namespace and role (read, write or admin)."""

    namespace: str
    role: str


@dataclass(frozen=True)
class Model(_FromJson):
    """A registered model: a Hugging Face id at a revision, with its shape."""

    id: int
    hf_id: str
    revision: str
    hidden_size: int
    num_layers: int
    architecture: str


@dataclass(frozen=True)
class Recipe(_FromJson):
    """How atoms were read from activations (see docs/dictionary-format.md)."""

    id: int
    token_position: str
    reduction: str
    prompt_template: str
    code_version: str


@dataclass(frozen=True)
class UploadResult:
    """Rows stored by a vectors upload, and identical rows that were already there."""

    inserted: int
    skipped: int

    def __add__(self, other: UploadResult) -> UploadResult:
        return UploadResult(self.inserted + other.inserted, self.skipped + other.skipped)


@dataclass(frozen=True)
class Neighbor(_FromJson):
    """One nearest concept: cosine similarity, and its label when a partition was given."""

    concept_id: int
    name: str
    similarity: float
    label: str | None


@dataclass(frozen=True)
class NearestResult:
    """Nearest concepts, most similar first; ``exact`` says whether the search was exact."""

    results: list[Neighbor]
    exact: bool


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list endpoint."""

    items: list[T]
    total: int
    limit: int
    offset: int
