"""Bounded path and query parameters shared by the routes.

An id outside PostgreSQL's ``bigint`` range, or a filter string with a NUL character,
would otherwise fail in the database; here it is a 422 naming the parameter.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from ..schemas.bounds import INT64_MAX

__all__ = ["MAX_FILTER_CHARS", "IdPath", "IdQuery", "IdQueryRequired", "RefPath", "TextQuery"]

MAX_FILTER_CHARS = 500
"""The longest name any resource has (a concept name)."""

_NO_NUL = r"^[^\x00]*$"

IdPath = Annotated[int, Path(ge=1, le=INT64_MAX)]
IdQuery = Annotated[int | None, Query(ge=1, le=INT64_MAX)]
TextQuery = Annotated[str | None, Query(max_length=MAX_FILTER_CHARS, pattern=_NO_NUL)]
IdQueryRequired = Annotated[int, Query(ge=1, le=INT64_MAX)]
RefPath = Annotated[
    str, Path(max_length=20, description="A version number, 'latest' or 'published'")
]
