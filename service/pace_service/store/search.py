"""Nearest concepts to an activation: Hamming HNSW candidates, exact cosine re-rank.

The approximate path (see :mod:`pace_service.store.search_index`) asks the partial
Hamming HNSW index over the atoms' stored binary codes (``code::bit(d)``) of the
(model, layer, recipe) for a candidate pool, the query's code sent as a parameter, then
orders the pool by exact cosine distance on the stored halfvec.
With a concept-set filter, ``hnsw.iterative_scan`` keeps the index scan going until
the pool is full of members. Exact search (``exact=True``, or while no valid index
exists) scans every atom of the (model, layer, recipe) with ``<=>``.

Pool size and ``ef_search`` were tuned on activation-like data (bench/service_nearest.py,
docs/benchmarks.md): 40,000 x 4,096 atoms give recall@10 >= 0.98 against exact search.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pgvector import HalfVector
from psycopg import sql
from sqlalchemy.orm import Session

from ..core.config import DEFAULT_SEARCH_POOL
from ..errors import DimensionMismatch, NonFinite, NotFound, ServiceError, ValidationFailed
from ..models import Partition
from .access import owned_task, readable_partition, readable_version
from .search_index import quantized_expr, query_code
from .vectors import FLOAT16_MAX, driver_connection

__all__ = [
    "CONTEXT",
    "MIN_POOL",
    "POOL_PER_K",
    "SHORT_CODE_BITS",
    "Guess",
    "NearestQuery",
    "Neighbor",
    "check_context",
    "context_params",
    "guess_for",
    "guess_rows",
    "guess_settings",
    "guess_stands",
    "guess_statement",
    "nearest",
    "neighbor",
    "pool_size",
    "search_hints",
]

MIN_POOL = DEFAULT_SEARCH_POOL
"""Smallest candidate pool re-ranked exactly, unless a query asks for another
(:attr:`NearestQuery.min_pool`, the service's ``search_pool`` setting);
``hnsw.ef_search`` is the pool size.

Measured at 40,000 x 4,096 (bench/service_nearest.py data, near / fresh queries):
pool 64 gives recall@10 0.999 / 0.9945, pool 48 0.990 / 0.9925 for ~0.6 ms less
PostgreSQL CPU per search (of ~2.5), pool 40 0.983 / 0.986, pool 32 0.954 / 0.974."""
POOL_PER_K = 4
"""The pool grows with k: ``max(MIN_POOL, POOL_PER_K * k)`` (at most 1,000)."""
SHORT_CODE_BITS = 2048
"""Below this many dimensions the pool is widened (see :func:`pool_size`)."""
_MAX_EF = 1000  # pgvector's hnsw.ef_search limit


@dataclass(frozen=True)
class NearestQuery:
    """A validated nearest-concepts request."""

    model_id: int
    layer: int
    recipe_id: int | None
    k: int
    vector: Sequence[float] | np.ndarray[Any, Any]
    concept_set_version_id: int | None = None
    partition_id: int | None = None
    task_id: int | None = None
    exact: bool = False
    min_pool: int = MIN_POOL
    """Smallest candidate pool of the index path (see :func:`pool_size`)."""


@dataclass(frozen=True)
class Neighbor:
    """One result row."""

    concept_id: int
    name: str
    similarity: float
    label: str | None


def pool_size(k: int, dim: int = 4096, min_pool: int = MIN_POOL) -> int:
    """How many Hamming candidates are re-ranked for a top-``k`` query at ``dim``.

    A d-dimensional atom quantizes to d bits; below 2,048 dimensions the codes say less,
    so the pool grows in proportion (re-ranking small vectors is cheap).
    """
    widen = max(1, -(-SHORT_CODE_BITS // max(1, dim)))
    return min(_MAX_EF, max(min_pool, POOL_PER_K * k) * widen)


def _check_vector(
    vector: Sequence[float] | np.ndarray[Any, Any], hidden_size: int
) -> np.ndarray[Any, Any]:
    if len(vector) != hidden_size:
        raise DimensionMismatch(
            f"vector has {len(vector)} values; the model's hidden size is {hidden_size}",
            field="vector",
        )
    v = np.asarray(vector)
    if v.dtype not in (np.float16, np.float32, np.float64):
        v = v.astype(np.float64)
    # float32 holds float16's range exactly; one reduction on the happy path
    if not np.abs(v).max() <= FLOAT16_MAX:  # also catches NaN
        bad = np.flatnonzero(~np.isfinite(v) | (np.abs(v) > FLOAT16_MAX))
        raise NonFinite(
            f"vector has NaN, Inf or values beyond float16's range (first at {int(bad[0])})",
            field=f"vector.{int(bad[0])}",
        )
    half = v.astype(np.float16)
    if not np.any(half):
        raise ValidationFailed("vector is zero: cosine similarity is undefined", field="vector")
    return half


def _labels_partition(
    session: Session, namespace_id: int, q: NearestQuery
) -> tuple[int | None, int | None]:
    """(concept-set version to filter by, partition giving labels)."""
    version_id = q.concept_set_version_id
    partition_id: int | None = None
    if q.partition_id is not None:
        partition = readable_partition(session, namespace_id, q.partition_id)
        if version_id is not None and partition.concept_set_version_id != version_id:
            raise ValidationFailed(
                f"partition {q.partition_id} labels concept-set version "
                f"{partition.concept_set_version_id}, not {version_id}",
                field="partition_id",
            )
        version_id, partition_id = partition.concept_set_version_id, partition.id
    elif q.task_id is not None:
        owned_task(session, namespace_id, q.task_id)
        if version_id is None:
            raise ValidationFailed(
                "task_id needs concept_set_version_id (labels are per version)", field="task_id"
            )
        latest = (
            session.query(Partition.id)
            .filter(Partition.task_id == q.task_id, Partition.concept_set_version_id == version_id)
            .order_by(Partition.version.desc())
            .first()
        )
        if latest is None:
            raise NotFound(
                f"task {q.task_id} has no partition of concept-set version {version_id}",
                field="task_id",
            )
        partition_id = int(latest[0])
    if version_id is not None:
        readable_version(session, namespace_id, version_id)
    return version_id, partition_id


def _readable(namespace_id: int) -> sql.Composed:
    return sql.SQL(
        "(c.namespace_id = {} OR EXISTS (SELECT 1 FROM version_concepts vc "
        "JOIN concept_set_versions v ON v.id = vc.version_id "
        "JOIN concept_sets s ON s.id = v.set_id WHERE vc.concept_id = c.id AND s.public))"
    ).format(sql.Literal(namespace_id))


CONTEXT = """
WITH r AS MATERIALIZED (
    SELECT COALESCE(
        %(recipe)s::bigint,
        (SELECT recipe_id FROM atoms WHERE model_id = %(model)s AND layer = %(layer)s
         ORDER BY recipe_id LIMIT 1)
    ) AS id
)
SELECT m.hidden_size, m.num_layers, r.id,
    (SELECT recipe_id FROM atoms WHERE model_id = %(model)s AND layer = %(layer)s
     AND recipe_id > r.id ORDER BY recipe_id LIMIT 1),
    EXISTS (SELECT 1 FROM recipes WHERE id = r.id),
    COALESCE((SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid =
              to_regclass(format('ix_atoms_bq_m%%s_l%%s_r%%s', m.id, %(layer)s, r.id))),
             false)
FROM r LEFT JOIN models m ON m.id = %(model)s
"""
"""One round trip: the model, the recipe (given or the layer's only one), and whether
the layer's index is valid (``r`` materialized: the recipe is looked up once, not once
per use)."""
_CONTEXT_COLUMNS = 6


@dataclass(frozen=True)
class _Hint:
    recipe_id: int
    dim: int


_HINTS: weakref.WeakKeyDictionary[Any, dict[tuple[int, int, int | None], _Hint]] = (
    weakref.WeakKeyDictionary()
)
"""Per engine (ids restart in every database): (model, layer, requested recipe) -> the
recipe and dimension an index search last used there. Only a guess that lets the
search go out with the context query in the same round trip; the context read with it
decides whether its answer stands."""
_MAX_HINTS = 4096


def _index_search(
    hidden_size: int,
    pool: int,
    k: int,
    where: sql.Composable,
    readable: sql.Composable,
    label_col: sql.Composable,
    label_join: sql.Composable,
) -> sql.Composed:
    # The pool is ranked before the concepts are joined, so that only the rows taken
    # (k when all are readable) look up their concept, not the whole pool.
    return sql.SQL(
        "WITH p AS MATERIALIZED (SELECT a.concept_id, a.vector FROM atoms a WHERE {where} "
        "ORDER BY {qa} <~> %(code)s::bit({dim}) LIMIT {pool}) "
        "SELECT x.concept_id, c.name, x.dist, {label} "
        "FROM (SELECT concept_id, vector <=> %(q)s AS dist FROM p ORDER BY dist) x "
        "JOIN concepts c ON c.id = x.concept_id {label_join} "
        "WHERE {readable} ORDER BY x.dist LIMIT {k}"
    ).format(
        where=where,
        qa=quantized_expr(hidden_size, sql.SQL("a.code")),
        dim=sql.Literal(int(hidden_size)),
        pool=sql.Literal(pool),
        label=label_col,
        label_join=label_join,
        readable=readable,
        k=sql.Literal(k),
    )


_POOL_SETTINGS = (
    "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', %s, true)"
)


def _scope(model_id: int, layer: int, recipe_id: int, alias: str) -> sql.Composed:
    a = sql.Identifier(alias)
    return sql.SQL("{a}.model_id = {} AND {a}.layer = {} AND {a}.recipe_id = {}").format(
        sql.Literal(model_id), sql.Literal(layer), sql.Literal(recipe_id), a=a
    )


def search_hints(engine: Any) -> dict[tuple[int, int, int | None], Any]:
    """The guess registry of ``engine`` (ids are per database, so hints are too)."""
    hints = _HINTS.get(engine)
    if hints is None:
        hints = _HINTS.setdefault(engine, {})
    return hints


def _hints(session: Session) -> dict[tuple[int, int, int | None], _Hint]:
    bind = session.get_bind()
    return search_hints(getattr(bind, "engine", bind))


@dataclass(frozen=True)
class Guess:
    """A search sent with the context query, on the strength of a hint."""

    hint: _Hint
    half: np.ndarray[Any, Any]


@dataclass(frozen=True)
class _Resolved:
    hidden_size: int
    recipe_id: int
    ready: bool
    half: np.ndarray[Any, Any]


def guess_for(hints: dict[tuple[int, int, int | None], _Hint], q: NearestQuery) -> Guess | None:
    """The guess for an unfiltered index search of a (model, layer) seen before, if any."""
    if q.exact or q.concept_set_version_id or q.partition_id or q.task_id:
        return None
    hint = hints.get((q.model_id, q.layer, q.recipe_id))
    if hint is None or len(q.vector) != hint.dim:
        return None
    try:
        return Guess(hint, _check_vector(q.vector, hint.dim))
    except ServiceError:
        return None  # reported in the usual order by check_context


def context_params(q: NearestQuery) -> dict[str, Any]:
    """Parameters of :data:`CONTEXT`."""
    return {"recipe": q.recipe_id, "model": q.model_id, "layer": q.layer}


def guess_settings(q: NearestQuery, guess: Guess) -> tuple[str, tuple[str, str]]:
    """The pool settings (``hnsw.ef_search``, no iterative scan) of a guessed search,
    transaction-local, as (statement, params)."""
    return _POOL_SETTINGS, (str(guess_ef_search(q, guess)), "off")


def guess_ef_search(q: NearestQuery, guess: Guess) -> int:
    """The ``hnsw.ef_search`` a guessed search needs (its candidate pool)."""
    return pool_size(q.k, guess.hint.dim, q.min_pool)


def guess_statement(
    namespace_id: int, q: NearestQuery, guess: Guess
) -> tuple[bytes, dict[str, Any]]:
    """The guessed search as **one** statement: the :data:`CONTEXT` row joined with the
    index search's rows (see :func:`guess_rows`), as (statement, params)."""
    statement = _guess_statement(
        guess.hint.dim,
        pool_size(q.k, guess.hint.dim, q.min_pool),
        q.k,
        q.model_id,
        q.layer,
        guess.hint.recipe_id,
        namespace_id,
    )
    params = {
        **context_params(q),
        "q": HalfVector(guess.half),
        "code": query_code(guess.half),
    }
    return statement, params


@functools.lru_cache(maxsize=1024)
def _guess_statement(
    dim: int, pool: int, k: int, model_id: int, layer: int, recipe_id: int, namespace_id: int
) -> bytes:
    # Composed once per shape: building and rendering it cost ~0.3 ms a request. One
    # statement, not a pipeline of two: each statement costs the service ~0.3 ms of
    # psycopg's Python and PostgreSQL a parse/bind/execute of its own.
    search = _index_search(
        dim,
        pool,
        k,
        _scope(model_id, layer, recipe_id, "a"),
        _readable(namespace_id),
        sql.SQL("NULL::text"),
        sql.SQL(""),
    ).as_bytes(None)
    return (
        b"SELECT ctx.*, s.* FROM (" + CONTEXT.encode() + b") ctx "
        b"LEFT JOIN LATERAL (" + search + b") s ON true ORDER BY s.dist"
    )


def guess_rows(rows: list[Any]) -> tuple[Any, list[Any]]:
    """(context row, search rows) of :func:`guess_statement`'s answer."""
    if not rows:
        return None, []
    return rows[0][:_CONTEXT_COLUMNS], [
        r[_CONTEXT_COLUMNS:] for r in rows if r[_CONTEXT_COLUMNS] is not None
    ]


def check_context(q: NearestQuery, ctx: Any, guess: Guess | None) -> _Resolved:
    """Validate the request against its :data:`CONTEXT` row (raises the API's errors)."""
    assert ctx is not None
    hidden_size, num_layers, recipe_id, other_recipe, recipe_exists, ready = ctx[:6]
    if hidden_size is None:
        raise NotFound(f"model {q.model_id} not found", field="model_id")
    if q.layer >= num_layers:
        raise ValidationFailed(
            f"layer {q.layer} is outside [0, {num_layers}) for this model", field="layer"
        )
    if guess is not None and guess.hint.dim == hidden_size:
        half = guess.half
    else:
        half = _check_vector(q.vector, hidden_size)
    if q.recipe_id is not None and not recipe_exists:
        raise NotFound(f"recipe {q.recipe_id} not found", field="recipe_id")
    if recipe_id is None:
        raise NotFound(f"model {q.model_id} has no atoms at layer {q.layer}", field="layer")
    if q.recipe_id is None and other_recipe is not None:
        raise ValidationFailed(
            f"layer {q.layer} of model {q.model_id} has atoms of several recipes "
            f"({recipe_id}, {other_recipe}, ...): name one",
            field="recipe_id",
        )
    return _Resolved(int(hidden_size), int(recipe_id), bool(ready), half)


def guess_stands(guess: Guess, resolved: _Resolved, rows: list[Any], k: int) -> bool:
    """Whether a guessed search's rows are the answer the full path would give."""
    return (
        resolved.ready
        and guess.hint == _Hint(resolved.recipe_id, resolved.hidden_size)
        and len(rows) == k
    )


def nearest(session: Session, namespace_id: int, q: NearestQuery) -> tuple[list[Neighbor], bool]:
    """The ``k`` nearest readable concepts, and whether the search was exact.

    A repeated unfiltered search of a (model, layer) whose index served before goes out
    in **one** round trip: pool settings and the context query joined with the index
    search, pipelined (the transaction-local settings hold until the pipeline's sync,
    autocommit or not); the context then validates the guess, and any mismatch falls
    back to the full path.
    """
    conn = driver_connection(session)
    hints = _hints(session)
    guess = guess_for(hints, q)
    if guess is None:
        ctx = conn.execute(CONTEXT, context_params(q)).fetchone()
        spec_rows: list[Any] = []
    else:
        with conn.pipeline():
            conn.execute(*guess_settings(q, guess))
            cursor = conn.execute(*guess_statement(namespace_id, q, guess))
        ctx, spec_rows = guess_rows(cursor.fetchall())
    resolved = check_context(q, ctx, guess)
    if guess is not None and guess_stands(guess, resolved, spec_rows, q.k):
        return [neighbor(r) for r in spec_rows], False
    hidden_size, recipe_id, ready, half = (
        resolved.hidden_size,
        resolved.recipe_id,
        resolved.ready,
        resolved.half,
    )
    version_id, partition_id = _labels_partition(session, namespace_id, q)

    def scope(alias: str) -> sql.Composed:
        clause = _scope(q.model_id, q.layer, recipe_id, alias)
        if version_id is None:
            return clause
        return sql.SQL(
            "{} AND {a}.concept_id IN "
            "(SELECT concept_id FROM version_concepts WHERE version_id = {})"
        ).format(clause, sql.Literal(version_id), a=sql.Identifier(alias))

    readable: sql.Composable = (
        sql.SQL("TRUE") if version_id is not None else _readable(namespace_id)
    )
    if partition_id is not None:
        label_join: sql.Composable = sql.SQL(
            "LEFT JOIN labels l ON l.partition_id = {} AND l.concept_id = x.concept_id"
        ).format(sql.Literal(partition_id))
        label_col: sql.Composable = sql.SQL("l.label")
    else:
        label_join, label_col = sql.SQL(""), sql.SQL("NULL::text")
    params: dict[str, Any] = {"q": HalfVector(half)}

    if not q.exact and ready:
        pool = pool_size(q.k, hidden_size, q.min_pool)
        query = _index_search(hidden_size, pool, q.k, scope("a"), readable, label_col, label_join)
        iterative = "relaxed_order" if version_id is not None else "off"
        with conn.pipeline():  # the settings and the search in one round trip
            conn.execute(_POOL_SETTINGS, (str(pool), iterative))
            cursor = conn.execute(query, {**params, "code": query_code(half)})
        rows = cursor.fetchall()
        # Unreadable atoms can crowd the pool out (or a small concept set run past the
        # iterative scan's budget): never answer with fewer than k then.
        if len(rows) == q.k:
            if len(hints) >= _MAX_HINTS:
                hints.clear()
            hints[(q.model_id, q.layer, q.recipe_id)] = _Hint(int(recipe_id), int(hidden_size))
            return [neighbor(r) for r in rows], False
    query = sql.SQL(
        "SELECT x.concept_id, c.name, x.vector <=> %(q)s AS dist, {label} "
        "FROM atoms x JOIN concepts c ON c.id = x.concept_id {label_join} "
        "WHERE {where} AND {readable} ORDER BY dist LIMIT {k}"
    ).format(
        where=scope("x"),
        label=label_col,
        label_join=label_join,
        readable=readable,
        k=sql.Literal(q.k),
    )
    rows = conn.execute(query, params).fetchall()
    return [neighbor(r) for r in rows], True


def neighbor(row: Any) -> Neighbor:
    """A result row as a :class:`Neighbor`."""
    return Neighbor(
        concept_id=int(row[0]),
        name=str(row[1]),
        similarity=float(1.0 - row[2]),
        label=row[3],
    )
