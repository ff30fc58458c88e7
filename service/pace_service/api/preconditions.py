"""``If-Match`` in, ``ETag`` out: the HTTP side of :mod:`pace_service.store.revisions`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Response

from ..store.revisions import IfMatch, etag, parse_if_match

__all__ = ["IfMatchDep", "send_etag"]


def if_match_header(
    if_match: Annotated[
        str | None,
        Header(
            description='Optional. The ETag you last read (e.g. `"3"`), or `*`: the write '
            "is refused with 412 `precondition_failed` if the resource changed since."
        ),
    ] = None,
) -> IfMatch | None:
    """The parsed ``If-Match`` header (422 ``validation_error`` if malformed)."""
    return parse_if_match(if_match)


IfMatchDep = Annotated[IfMatch | None, Depends(if_match_header)]


def send_etag(response: Response, revision: int) -> None:
    """Set the response's ``ETag`` to ``revision``'s entity tag."""
    response.headers["ETag"] = etag(revision)
