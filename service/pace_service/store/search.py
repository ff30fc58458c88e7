"""Nearest concepts to an activation: Hamming HNSW candidates, exact cosine re-rank.

The approximate path (see :mod:`pace_service.store.search_index`) asks the partial
``binary_quantize(vector)::bit(d)`` HNSW index of the (model, layer, recipe) for a
candidate pool, then orders the pool by exact cosine distance on the stored halfvec.
With a concept-set filter, ``hnsw.iterative_scan`` keeps the index scan going until
the pool is full of members. Exact search (``exact=True``, or while no valid index
exists) scans every atom of the (model, layer, recipe) with ``<=>``.

Pool size and ``ef_search`` were tuned on activation-like data (bench/service_nearest.py,
docs/benchmarks.md): 40,000 x 4,096 atoms give recall@10 >= 0.98 against exact search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pgvector import HalfVector
from psycopg import sql
from sqlalchemy.orm import Session

from ..errors import DimensionMismatch, NonFinite, NotFound, ValidationFailed
from ..models import Partition
from . import models as model_store
from .access import owned_task, readable_partition, readable_version
from .search_index import quantized_expr, search_index_ready
from .vectors import FLOAT16_MAX, driver_connection

__all__ = [
    "MIN_POOL",
    "POOL_PER_K",
    "NearestQuery",
    "Neighbor",
    "nearest",
    "pool_size",
]

MIN_POOL = 64
"""Smallest candidate pool re-ranked exactly."""
POOL_PER_K = 4
"""The pool grows with k: ``max(MIN_POOL, POOL_PER_K * k)`` (at most 1,000)."""
_MAX_EF = 1000  # pgvector's hnsw.ef_search limit


@dataclass(frozen=True)
class NearestQuery:
    """A validated nearest-concepts request."""

    model_id: int
    layer: int
    recipe_id: int | None
    k: int
    vector: list[float]
    concept_set_version_id: int | None = None
    partition_id: int | None = None
    task_id: int | None = None
    exact: bool = False


@dataclass(frozen=True)
class Neighbor:
    """One result row."""

    concept_id: int
    name: str
    similarity: float
    label: str | None


def pool_size(k: int) -> int:
    """How many Hamming candidates are re-ranked for a top-``k`` query."""
    return min(1000, max(MIN_POOL, POOL_PER_K * k))


def _check_vector(vector: list[float], hidden_size: int) -> np.ndarray[Any, Any]:
    if len(vector) != hidden_size:
        raise DimensionMismatch(
            f"vector has {len(vector)} values; the model's hidden size is {hidden_size}",
            field="vector",
        )
    v = np.asarray(vector, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(v) | (np.abs(v) > FLOAT16_MAX))
    if len(bad):
        raise NonFinite(
            f"vector has NaN, Inf or values beyond float16's range (first at {int(bad[0])})",
            field=f"vector.{int(bad[0])}",
        )
    half = v.astype(np.float16)
    if not np.any(half):
        raise ValidationFailed("vector is zero: cosine similarity is undefined", field="vector")
    return half


def _resolve_recipe(conn: Any, model_id: int, layer: int, recipe_id: int | None) -> int:
    if recipe_id is not None:
        return recipe_id
    first = conn.execute(
        "SELECT recipe_id FROM atoms WHERE model_id = %s AND layer = %s ORDER BY recipe_id LIMIT 1",
        (model_id, layer),
    ).fetchone()
    if first is None:
        raise NotFound(f"model {model_id} has no atoms at layer {layer}", field="layer")
    second = conn.execute(
        "SELECT recipe_id FROM atoms WHERE model_id = %s AND layer = %s AND recipe_id > %s "
        "ORDER BY recipe_id LIMIT 1",
        (model_id, layer, first[0]),
    ).fetchone()
    if second is not None:
        raise ValidationFailed(
            f"layer {layer} of model {model_id} has atoms of several recipes "
            f"({first[0]}, {second[0]}, ...): name one",
            field="recipe_id",
        )
    return int(first[0])


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


def nearest(session: Session, namespace_id: int, q: NearestQuery) -> tuple[list[Neighbor], bool]:
    """The ``k`` nearest readable concepts, and whether the search was exact."""
    model = model_store.get_model(session, q.model_id)
    if q.layer >= model.num_layers:
        raise ValidationFailed(
            f"layer {q.layer} is outside [0, {model.num_layers}) for this model", field="layer"
        )
    half = _check_vector(q.vector, model.hidden_size)
    conn = driver_connection(session)
    recipe_id = _resolve_recipe(conn, model.id, q.layer, q.recipe_id)
    if q.recipe_id is not None:
        model_store.get_recipe(session, recipe_id)
    version_id, partition_id = _labels_partition(session, namespace_id, q)

    def scope(alias: str) -> sql.Composed:
        a = sql.Identifier(alias)
        clause = sql.SQL("{a}.model_id = {} AND {a}.layer = {} AND {a}.recipe_id = {}").format(
            sql.Literal(model.id), sql.Literal(q.layer), sql.Literal(recipe_id), a=a
        )
        if version_id is None:
            return clause
        return sql.SQL(
            "{} AND {a}.concept_id IN "
            "(SELECT concept_id FROM version_concepts WHERE version_id = {})"
        ).format(clause, sql.Literal(version_id), a=a)

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
    params = {"q": HalfVector(half)}

    use_index = not q.exact and search_index_ready(conn, model.id, q.layer, recipe_id)
    if use_index:
        pool = pool_size(q.k)
        conn.execute(
            sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(min(_MAX_EF, 2 * pool)))
        )
        if version_id is not None:
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        query = sql.SQL(
            "WITH x AS MATERIALIZED (SELECT a.concept_id, a.vector FROM atoms a WHERE {where} "
            "ORDER BY {qa} <~> {qq} LIMIT {pool}) "
            "SELECT x.concept_id, c.name, x.vector <=> %(q)s AS dist, {label} "
            "FROM x JOIN concepts c ON c.id = x.concept_id {label_join} "
            "WHERE {readable} ORDER BY dist LIMIT {k}"
        ).format(
            where=scope("a"),
            qa=quantized_expr(model.hidden_size, sql.SQL("a.vector")),
            qq=quantized_expr(model.hidden_size, sql.SQL("%(q)s::halfvec")),
            pool=sql.Literal(pool),
            label=label_col,
            label_join=label_join,
            readable=readable,
            k=sql.Literal(q.k),
        )
        rows = conn.execute(query, params).fetchall()
        # Unreadable atoms can crowd the pool out; never answer with fewer than k then.
        if len(rows) == q.k or version_id is not None:
            return [_neighbor(r) for r in rows], False
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
    return [_neighbor(r) for r in rows], True


def _neighbor(row: Any) -> Neighbor:
    return Neighbor(
        concept_id=int(row[0]),
        name=str(row[1]),
        similarity=float(1.0 - row[2]),
        label=row[3],
    )
