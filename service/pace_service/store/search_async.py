"""The guessed nearest search on an async connection (no worker thread).

Same statement and checks as :func:`pace_service.store.search.nearest`'s one-round-trip
path: the context query joined with the index search, then the context validates the
guess. Answers ``None`` whenever the full path must decide (no hint for this (model,
layer), a filter, or a guess the context refutes); raises the API's errors when the
context shows the request itself is wrong.

These connections serve only this search (autocommit), so the pool size
(``hnsw.ef_search``) is set once per connection, at session level, and a search whose
pool matches sends **one** statement, prepared once per connection and run through
libpq's own calls (:mod:`.search_wire`: psycopg's Python per statement cost as much
service CPU as the rest of the hot path).
"""

from __future__ import annotations

import weakref
from typing import Any

import psycopg

from .search import (
    Guess,
    NearestQuery,
    Neighbor,
    check_context,
    guess_ef_search,
    guess_rows,
    guess_stands,
    guess_statement,
    neighbor,
)
from .search_wire import fetch_rows

__all__ = ["nearest_guessed"]

_EF_SEARCH: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], int] = (
    weakref.WeakKeyDictionary()
)
"""The session-level ``hnsw.ef_search`` set on each connection by this module."""


async def nearest_guessed(
    conn: psycopg.AsyncConnection[Any], guess: Guess, namespace_id: int, q: NearestQuery
) -> list[Neighbor] | None:
    """The index search's answer, or ``None`` if only the full path can give it.

    ``conn``: an autocommit connection used for nothing but these searches.
    ``guess``: :func:`~pace_service.store.search.guess_for` of ``q`` (not None).
    """
    ef = guess_ef_search(q, guess)
    statement, params = guess_statement(namespace_id, q, guess)
    if _EF_SEARCH.get(conn) != ef:  # a connection's first search (or a new pool size)
        await conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(ef),))
        _EF_SEARCH[conn] = ef
    ctx, rows = guess_rows(await fetch_rows(conn, statement, params))
    resolved = check_context(q, ctx, guess)
    if not guess_stands(guess, resolved, rows, q.k):
        return None
    return [neighbor(r) for r in rows]
