"""``?limit=&offset=`` query parameters shared by every list endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query

from ..schemas.bounds import INT64_MAX

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "PageDep", "PageParams"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True)
class PageParams:
    """Validated page parameters."""

    limit: int
    offset: int


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
) -> PageParams:
    """Read ``limit`` (1..1000, default 100) and ``offset`` (>= 0)."""
    return PageParams(limit=limit, offset=offset)


PageDep = Annotated[PageParams, Depends(page_params)]
