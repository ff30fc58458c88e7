"""The guessed nearest search in libpq's own calls (``psycopg.pq``), on the event loop.

psycopg's ``AsyncConnection.execute`` spends about 0.2 ms of Python per search on this
one statement (named-placeholder conversion, dumper lookup, the prepare-threshold
bookkeeping, its generator-driven wait, typed row loading): as much as the rest of the
hot path together. The statement never changes shape, so this module prepares it once
per connection under its own name, sends the five parameters already encoded
(pgvector's binary ``halfvec`` and ``bit``, the ids as text) and reads the ten rows'
text fields itself. Answers are the same rows, typed as psycopg would type them;
``tests/service/test_search_wire.py`` checks that against psycopg on the same
statement.

Any failure raises (after draining the connection's results): the caller's pool closes
that connection, and the request goes the full path.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import pq

__all__ = ["WIRE_PARAMS", "fetch_rows", "wire_statement"]

WIRE_PARAMS = ("recipe", "model", "layer", "q", "code")
"""The statement's parameters, in ``$n`` order (see :func:`wire_statement`)."""
_TYPES = (20, 20, 20, 0, 0)  # int8 for the ids; halfvec and bit inferred by the server
_FORMATS = (0, 0, 0, 1, 1)  # ids as text, the vector and its code in binary

_MAX_PREPARED = 64
"""Statements prepared per connection (one per model, layer, recipe, k and namespace
searched); beyond that a statement is sent unnamed, parsed and planned each time."""
_PREPARED: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], dict[bytes, bytes]] = (
    weakref.WeakKeyDictionary()
)
"""Per connection: statement -> the name it was prepared under."""


@functools.lru_cache(maxsize=256)
def wire_statement(statement: bytes) -> bytes:
    """``statement`` (psycopg's ``%(name)s`` placeholders) with libpq's ``$n`` ones."""
    out = statement
    for i, name in enumerate(WIRE_PARAMS, start=1):
        out = out.replace(b"%(" + name.encode() + b")s", b"$%d" % i)
    if b"%(" in out:
        raise ValueError("statement has a parameter the wire search does not send")
    return out.replace(b"%%", b"%")


def _encode(params: Mapping[str, Any]) -> list[bytes | None]:
    recipe = params["recipe"]
    return [
        None if recipe is None else b"%d" % int(recipe),
        b"%d" % int(params["model"]),
        b"%d" % int(params["layer"]),
        params["q"].to_binary(),
        params["code"].to_binary(),
    ]


async def _results(pgconn: pq.abc.PGconn) -> list[pq.abc.PGresult]:
    """Send what is buffered and collect every result of the command (never blocks)."""
    loop = asyncio.get_running_loop()
    fd = pgconn.socket
    while pgconn.flush():  # rare: a socket buffer full of parameters
        await _ready(loop, fd, write=True)
    results: list[pq.abc.PGresult] = []
    while True:
        pgconn.consume_input()
        while pgconn.is_busy():
            await _ready(loop, fd, write=False)
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            return results
        results.append(result)


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, *, write: bool) -> None:
    done: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not done.done():
            done.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await done
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


def _check(results: list[pq.abc.PGresult], want: pq.ExecStatus) -> pq.abc.PGresult:
    if len(results) != 1 or results[0].status != want:
        message = b"; ".join(r.error_message for r in results).decode("utf-8", "replace")
        raise psycopg.OperationalError(f"nearest search on the wire: {message or 'no result'}")
    return results[0]


async def fetch_rows(
    conn: psycopg.AsyncConnection[Any], statement: bytes, params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """The rows of the guessed search ``statement`` (:func:`..search.guess_statement`),
    typed: (hidden_size, num_layers, recipe_id, other_recipe, recipe_exists, ready,
    concept_id, name, dist, label)."""
    pgconn = conn.pgconn
    names = _PREPARED.setdefault(conn, {})
    name = names.get(statement)
    if name is None and len(names) < _MAX_PREPARED:
        name = b"pace_nearest_%d" % len(names)
        pgconn.send_prepare(name, wire_statement(statement), _TYPES)
        _check(await _results(pgconn), pq.ExecStatus.COMMAND_OK)
        names[statement] = name
    if name is None:
        pgconn.send_query_params(wire_statement(statement), _encode(params), _TYPES, _FORMATS)
    else:
        pgconn.send_query_prepared(name, _encode(params), _FORMATS)
    result = _check(await _results(pgconn), pq.ExecStatus.TUPLES_OK)
    return [_row(result, i) for i in range(result.ntuples)]


def _int(value: bytes | None) -> int | None:
    return None if value is None else int(value)


def _row(result: pq.abc.PGresult, i: int) -> tuple[Any, ...]:
    v = result.get_value
    name, dist, label = v(i, 7), v(i, 8), v(i, 9)
    return (
        _int(v(i, 0)),
        _int(v(i, 1)),
        _int(v(i, 2)),
        _int(v(i, 3)),
        v(i, 4) == b"t",
        v(i, 5) == b"t",
        _int(v(i, 6)),
        None if name is None else bytes(name).decode(),
        None if dist is None else float(dist),
        None if label is None else bytes(label).decode(),
    )
