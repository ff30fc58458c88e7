"""Shared schema pieces: the page envelope and the error envelope."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

__all__ = ["ErrorDetail", "ErrorPublic", "Page", "PublicModel"]

T = TypeVar("T")


class PublicModel(BaseModel):
    """Base of response schemas: readable from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    """One page of a list: ``{"items", "total", "limit", "offset"}``."""

    items: list[T]
    total: int
    limit: int
    offset: int


class ErrorDetail(BaseModel):
    """The body of every error response (``{"error": ...}``)."""

    code: str
    message: str
    field: str | None = None


class ErrorPublic(BaseModel):
    """Every 4xx/5xx response body."""

    error: ErrorDetail
