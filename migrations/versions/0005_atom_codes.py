"""Atom codes: the binary quantization of each atom, stored, and the search indexes on it.

The search indexes of 0002 are Hamming HNSW indexes over the expression
``binary_quantize(vector)::bit(d)``. PostgreSQL evaluates an index scan's ORDER BY
expression again on every row it returns (to project the sort key), so each of the
search's 64 candidates had its 8 KB halfvec detoasted and quantized twice over: 1.2 of
4.7 ms of PostgreSQL CPU per search at 40,000 x 4,096 (bench/service_nearest.py).

This migration stores the code (``code varbit``, generated from ``vector``, 512 bytes
at d = 4,096, kept in the row: no TOAST) and rebuilds every ``ix_atoms_bq_*`` index on
``code::bit(d)``; the sort key is then a cast of an in-row value. The downgrade drops
the column (and with it the indexes on it) and rebuilds the 0002 indexes.

Adding a stored generated column rewrites ``atoms``: minutes for millions of atoms.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 17:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Kept in step with pace_service.store.search_index (a migration must not import the app).
_PREFIX = "ix_atoms_bq_"
_M, _EF_CONSTRUCTION = 24, 128


def _groups() -> list[tuple[int, int, int, int]]:
    rows = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT model_id, layer, recipe_id, max(vector_dims(vector)) FROM atoms "
                "GROUP BY model_id, layer, recipe_id ORDER BY 1, 2, 3"
            )
        )
        .all()
    )
    return [(int(m), int(layer), int(r), int(d)) for m, layer, r, d in rows]


def _drop_search_indexes() -> None:
    names = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'atoms' "
                "AND schemaname = current_schema() AND indexname LIKE :pattern"
            ),
            {"pattern": _PREFIX.replace("_", r"\_") + "%"},
        )
        .scalars()
    )
    for name in list(names):
        op.execute(f'DROP INDEX IF EXISTS "{name}"')


def _build_search_indexes(expression: str) -> None:
    for model_id, layer, recipe_id, dim in _groups():
        op.execute(
            f"CREATE INDEX IF NOT EXISTS {_PREFIX}m{model_id}_l{layer}_r{recipe_id} "
            f"ON atoms USING hnsw (({expression.format(dim=dim)}) bit_hamming_ops) "
            f"WITH (m = {_M}, ef_construction = {_EF_CONSTRUCTION}) "
            f"WHERE model_id = {model_id} AND layer = {layer} AND recipe_id = {recipe_id}"
        )


def upgrade() -> None:
    _drop_search_indexes()
    op.execute(
        "ALTER TABLE atoms ADD COLUMN code varbit "
        "GENERATED ALWAYS AS (binary_quantize(vector)::varbit) STORED"
    )
    _build_search_indexes("code::bit({dim})")


def downgrade() -> None:
    _drop_search_indexes()
    op.execute("ALTER TABLE atoms DROP COLUMN code")
    _build_search_indexes("binary_quantize(vector)::bit({dim})")
