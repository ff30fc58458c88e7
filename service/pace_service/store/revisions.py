"""Optimistic concurrency: revision counters, ``ETag`` values and ``If-Match`` checks.

Concepts, concept sets, draft concept-set versions and tasks carry ``revision``
(migration 0003): 1 when created, plus one on each write through the API. The API
sends it as a strong entity tag (``ETag: "3"``) and in the JSON body (``revision``).
A write may send ``If-Match``; :func:`claim` then locks the row (``SELECT ... FOR
UPDATE``: concurrent writers of one row queue behind each other), compares, and
bumps the counter in the same transaction, so of two writers holding the same ETag
exactly one succeeds and the other gets 412 ``precondition_failed``. Without
``If-Match`` the write is still atomic (it holds the same row lock), it just does not
check what the client last saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session

from ..errors import NotFound, PreconditionFailed, ValidationFailed

__all__ = ["IfMatch", "Revisioned", "check", "claim", "etag", "parse_if_match"]

_FIELD = "If-Match"


class Revisioned(Protocol):
    """An ORM row with a revision counter."""

    revision: int


@dataclass(frozen=True)
class IfMatch:
    """A parsed ``If-Match`` header: ``*`` (any current revision) or a set of them."""

    any: bool
    revisions: frozenset[int]
    header: str


def etag(revision: int) -> str:
    """The strong entity tag of ``revision`` (``"3"``, quotes included)."""
    return f'"{revision}"'


def parse_if_match(value: str | None) -> IfMatch | None:
    """Parse an ``If-Match`` header (``None`` when absent).

    Accepts ``*`` and a comma-separated list of entity tags. If-Match compares strongly
    (RFC 9110 13.1.1), so a weak tag (``W/"3"``) is well-formed but never matches.
    Anything else is 422 ``validation_error`` on field ``If-Match``.
    """
    if value is None:
        return None
    tags = [t.strip() for t in value.split(",")]
    if tags == ["*"]:
        return IfMatch(any=True, revisions=frozenset(), header=value)
    revisions: set[int] = set()
    for tag in tags:
        weak = tag.startswith("W/")
        opaque = tag[2:] if weak else tag
        inner = opaque[1:-1] if len(opaque) >= 2 and opaque[0] == opaque[-1] == '"' else ""
        if not inner.isascii() or not inner.isdigit() or len(inner) > 18:
            raise ValidationFailed(
                f"If-Match must be '*' or entity tags as this API sends them "
                f'(e.g. "3"); got {value[:100]!r}',
                field=_FIELD,
            )
        if not weak:
            revisions.add(int(inner))
    return IfMatch(any=False, revisions=frozenset(revisions), header=value)


def check(current: int, if_match: IfMatch | None, what: str) -> None:
    """Raise 412 ``precondition_failed`` unless ``if_match`` admits ``current``."""
    if if_match is None or if_match.any or current in if_match.revisions:
        return
    raise PreconditionFailed(
        f"{what} is at revision {current} (ETag {etag(current)}), not {if_match.header}; "
        "someone changed it since you read it: GET it again, reapply your change and "
        "retry with the new ETag",
        field=_FIELD,
    )


def claim(session: Session, row: Revisioned, if_match: IfMatch | None, what: str) -> None:
    """Lock ``row``, check ``if_match`` against its latest revision, and bump it.

    The refresh under ``FOR UPDATE`` reads the latest committed row (READ COMMITTED
    re-reads it after waiting for the lock), so the check sees every earlier writer.
    """
    try:
        session.refresh(row, with_for_update=True)
    except InvalidRequestError:  # deleted by a writer that held the lock before us
        raise NotFound(f"{what} was deleted") from None
    check(row.revision, if_match, what)
    row.revision = row.revision + 1
