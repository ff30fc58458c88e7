"""The guessed nearest search on an async connection (no worker thread).

Same statements and checks as :func:`pace_service.store.search.nearest`'s one-round-trip
path: the context query, the pool settings and the index search are pipelined, then the
context validates the guess. Answers ``None`` whenever the full path must decide (no
hint for this (model, layer), a filter, or a guess the context refutes); raises the
API's errors when the context shows the request itself is wrong.
"""

from __future__ import annotations

from typing import Any

import psycopg

from .search import (
    CONTEXT,
    Guess,
    NearestQuery,
    Neighbor,
    check_context,
    context_params,
    guess_stands,
    guess_statements,
    neighbor,
)

__all__ = ["nearest_guessed"]


async def nearest_guessed(
    conn: psycopg.AsyncConnection[Any], guess: Guess, namespace_id: int, q: NearestQuery
) -> list[Neighbor] | None:
    """The index search's answer, or ``None`` if only the full path can give it.

    ``guess``: :func:`~pace_service.store.search.guess_for` of ``q`` (not None).
    """
    settings, search = guess_statements(namespace_id, q, guess)
    async with conn.pipeline():
        ctx_cursor = await conn.execute(CONTEXT, context_params(q))
        await conn.execute(*settings)
        spec_cursor = await conn.execute(*search)
    resolved = check_context(q, await ctx_cursor.fetchone(), guess)
    rows = await spec_cursor.fetchall()
    if not guess_stands(guess, resolved, rows, q.k):
        return None
    return [neighbor(r) for r in rows]
