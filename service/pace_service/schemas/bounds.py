"""Bounds every request field shares: ids, layers, version numbers, storable text.

Values outside them would reach PostgreSQL and fail there (``bigint out of range``,
``text fields cannot contain NUL``), as a 422 that names no field or, on the raw
driver paths, as a 500. Checked here they are a 422 ``validation_error`` whose
``field`` is the offending one, before any database work.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator

__all__ = [
    "INT32_MAX",
    "INT64_MAX",
    "MAX_LAYER",
    "Id",
    "Layer",
    "RequestModel",
    "VersionNumber",
    "check_storable",
]

INT64_MAX = 2**63 - 1
"""Every id column is a PostgreSQL ``bigint``."""

INT32_MAX = 2**31 - 1
"""Version numbers are PostgreSQL ``integer``."""

MAX_LAYER = 9_999
"""A model has at most 10,000 layers (``ModelCreate.num_layers``)."""

Id = Annotated[int, Field(ge=1, le=INT64_MAX)]
Layer = Annotated[int, Field(ge=0, le=MAX_LAYER)]
VersionNumber = Annotated[int, Field(ge=1, le=INT32_MAX)]


def check_storable(value: Any) -> None:
    """Raise ``ValueError`` if ``value`` holds text or JSON PostgreSQL cannot store.

    Strings (also inside lists and JSON objects, keys included) must have no NUL
    character and no lone surrogate; numbers inside JSON objects must be finite
    (``jsonb`` has no NaN or Infinity). Validated models inside are skipped: their
    own fields were checked, with a more precise location.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is int or kind is bool or item is None or isinstance(item, BaseModel):
            continue
        if kind is str:
            if "\x00" in item:
                raise ValueError("must not contain NUL characters (\\u0000)")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("must be valid Unicode (no lone surrogates)") from None
        elif kind is float:
            if not math.isfinite(item):
                raise ValueError("numbers must be finite")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)


class RequestModel(BaseModel):
    """Base of request bodies: every field's text must be storable (see above)."""

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        check_storable(value)
        return value
