"""Approximate nearest-neighbour indexes over atoms: one per (model, layer, recipe).

pgvector's HNSW indexes ``halfvec`` only up to 4,000 dimensions; LLaMA-2 7B/13B have
4,096/5,120. So each index is a Hamming HNSW over the *binary quantization* of the
atoms, stored in the row as ``code`` (``binary_quantize(vector)::varbit``, a generated
column; 512 bytes at d = 4,096) and indexed as ``code::bit(d)`` (64,000-bit limit).
The search re-ranks a candidate pool exactly on the halfvec
(:mod:`pace_service.store.search`). A **partial** index per (model, layer, recipe)
keeps each index to one dimensionality and one population. The code is a column, not
an index over ``binary_quantize(vector)``, because PostgreSQL evaluates the ORDER BY
expression again on every row an index scan returns: with the expression, each
candidate's 8 KB halfvec was detoasted and quantized for nothing (migration 0005).

Building one costs seconds per 10,000 rows, so it never runs inside an upload's
transaction: after an upload commits, :func:`ensure_search_indexes` builds the missing
ones with ``CREATE INDEX CONCURRENTLY`` (writers are not blocked). Until an index is
valid, searches fall back to exact search and say so (``"exact": true``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import psycopg
from pgvector import Bit
from psycopg import sql
from sqlalchemy import Engine

__all__ = [
    "HNSW_EF_CONSTRUCTION",
    "HNSW_M",
    "ensure_search_index",
    "ensure_search_indexes",
    "index_name",
    "quantized_expr",
    "query_code",
    "search_index_ready",
]

_log = logging.getLogger(__name__)

HNSW_M = 24
HNSW_EF_CONSTRUCTION = 128
"""Graph parameters. On activation-like data (40,000 x 4,096) m=16/ef_construction=64
gave recall@10 0.979 for queries far from any atom, m=24/128 gave 0.996 (pool 64,
ef_search 128), for a 2.3x longer build; the build runs in the background."""
_LOCK_CLASS = 0x5041  # "PA": advisory-lock namespace for index builds
_BUILD_SLOT = (0x5042, 0)  # "PB": one CREATE INDEX CONCURRENTLY on atoms at a time
_BUILD_SLOT_POLL_S = 0.2
_BUILD_SLOT_WAIT_S = 3600.0


def index_name(model_id: int, layer: int, recipe_id: int) -> str:
    """The partial index's name (migration 0002 drops every ``ix_atoms_bq_*``)."""
    return f"ix_atoms_bq_m{int(model_id)}_l{int(layer)}_r{int(recipe_id)}"


def quantized_expr(dim: int, column: sql.Composable | None = None) -> sql.Composed:
    """``<column>::bit(dim)`` (default column ``code``): the indexed expression, verbatim.

    The search must spell it exactly like the index or the planner will not use it.
    """
    col = column if column is not None else sql.Identifier("code")
    return sql.SQL("{}::bit({})").format(col, sql.Literal(int(dim)))


def query_code(half: np.ndarray[Any, Any]) -> Bit:
    """The binary quantization of a query vector, as pgvector's ``binary_quantize``
    computes it (bit i set iff value i > 0), sent as a ``bit`` parameter: computed once
    here, not per returned row by the server (the sort key of a prepared statement)."""
    # A float16 is > 0 iff its bits, read as an int16, are: sign clear and not +0 (NaN
    # never gets here). An integer compare instead of numpy's slow float16 one.
    return Bit(np.ascontiguousarray(half, dtype=np.float16).view(np.int16) > 0)


def _predicate(model_id: int, layer: int, recipe_id: int) -> sql.Composed:
    return sql.SQL("model_id = {} AND layer = {} AND recipe_id = {}").format(
        sql.Literal(int(model_id)), sql.Literal(int(layer)), sql.Literal(int(recipe_id))
    )


def search_index_ready(cursor: Any, model_id: int, layer: int, recipe_id: int) -> bool:
    """Whether the index exists and is valid (``cursor``: psycopg or SQLAlchemy)."""
    row = cursor.execute(
        "SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
        "WHERE c.relname = %s",
        (index_name(model_id, layer, recipe_id),),
    ).fetchone()
    return bool(row and row[0])


def ensure_search_index(
    conn: psycopg.Connection[Any], model_id: int, layer: int, recipe_id: int, dim: int
) -> bool:
    """Build the index if missing (``conn`` in autocommit). Returns whether it built one.

    Concurrent callers are serialized by a session advisory lock; a caller that finds
    the lock taken returns at once (the holder is building it). Builds of different
    groups take turns (see :func:`_take_build_slot`). An invalid leftover of an
    interrupted ``CONCURRENTLY`` build is dropped and rebuilt.
    """
    if not conn.autocommit:
        raise ValueError("CREATE INDEX CONCURRENTLY needs an autocommit connection")
    key = (int(model_id) * 1_000_003 + int(layer) * 7919 + int(recipe_id)) & 0x7FFFFFFF
    got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (_LOCK_CLASS, key)).fetchone()
    if not got or not got[0]:
        return False
    try:
        name = index_name(model_id, layer, recipe_id)
        row = conn.execute(
            "SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
            "WHERE c.relname = %s",
            (name,),
        ).fetchone()
        if row is not None and row[0]:
            return False
        _take_build_slot(conn)
        try:
            if row is not None:
                conn.execute(
                    sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name))
                )
            started = time.perf_counter()
            conn.execute(
                sql.SQL(
                    "CREATE INDEX CONCURRENTLY {} ON atoms USING hnsw (({}) bit_hamming_ops) "
                    "WITH (m = {}, ef_construction = {}) WHERE {}"
                ).format(
                    sql.Identifier(name),
                    quantized_expr(dim),
                    sql.Literal(HNSW_M),
                    sql.Literal(HNSW_EF_CONSTRUCTION),
                    _predicate(model_id, layer, recipe_id),
                )
            )
            _log.info("built %s (dim %d) in %.1f s", name, dim, time.perf_counter() - started)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", _BUILD_SLOT)
        return True
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_LOCK_CLASS, key))


def _take_build_slot(conn: psycopg.Connection[Any]) -> None:
    """Wait until no other ``CREATE INDEX CONCURRENTLY`` runs on ``atoms``.

    Two at once deadlock: each waits for the transactions older than its snapshot,
    the other's among them. The wait polls ``pg_try_advisory_lock`` between sleeps,
    outside any transaction: a blocking ``pg_advisory_lock`` would hold a snapshot
    while it waits, which the running build would wait for in turn.
    """
    deadline = time.monotonic() + _BUILD_SLOT_WAIT_S
    while True:
        got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", _BUILD_SLOT).fetchone()
        if got and got[0]:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("another search index build held the build slot too long")
        time.sleep(_BUILD_SLOT_POLL_S)


def ensure_search_indexes(
    engine: Engine, model_id: int, recipe_id: int, layers: Iterable[int], dim: int
) -> None:
    """Build the missing indexes for ``layers`` (a background task after an upload).

    Errors are logged, never raised: a missing index only makes searches exact.
    """
    try:
        raw = engine.raw_connection()
    except Exception:
        _log.exception("search index build: no database connection")
        return
    conn = raw.driver_connection
    if not isinstance(conn, psycopg.Connection):
        raw.close()
        raise TypeError("the service needs the psycopg 3 driver")
    try:
        conn.rollback()
        conn.autocommit = True
        for layer in sorted(set(layers)):
            try:
                ensure_search_index(conn, model_id, layer, recipe_id, dim)
            except (psycopg.Error, TimeoutError):
                _log.exception(
                    "search index build failed: model %s layer %s recipe %s",
                    model_id,
                    layer,
                    recipe_id,
                )
    finally:
        with contextlib.suppress(psycopg.Error):
            conn.autocommit = False
        raw.close()
