"""Atom search indexes: one Hamming HNSW over binary-quantized atoms per group.

The service builds a partial index ``ix_atoms_bq_m<model>_l<layer>_r<recipe>`` on
``binary_quantize(vector)::bit(<hidden size>)`` (``bit_hamming_ops``) for each
(model, layer, recipe) group once atoms are uploaded, with ``CREATE INDEX
CONCURRENTLY`` after the upload commits (pace_service.store.search_index). This
migration builds them for the groups already stored when it runs, and its downgrade
drops every such index, so that ``downgrade`` leaves no object 0001 does not know.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 11:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import pgvector.sqlalchemy
import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ = (pgvector.sqlalchemy, sa)

# Kept in step with pace_service.store.search_index (a migration must not import the app).
_PREFIX = "ix_atoms_bq_"
_M, _EF_CONSTRUCTION = 24, 128


def upgrade() -> None:
    bind = op.get_bind()
    groups = bind.execute(
        sa.text(
            "SELECT model_id, layer, recipe_id, max(vector_dims(vector)) FROM atoms "
            "GROUP BY model_id, layer, recipe_id ORDER BY 1, 2, 3"
        )
    ).all()
    for model_id, layer, recipe_id, dim in groups:
        name = f"{_PREFIX}m{int(model_id)}_l{int(layer)}_r{int(recipe_id)}"
        op.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON atoms USING hnsw "
            f"((binary_quantize(vector)::bit({int(dim)})) bit_hamming_ops) "
            f"WITH (m = {_M}, ef_construction = {_EF_CONSTRUCTION}) "
            f"WHERE model_id = {int(model_id)} AND layer = {int(layer)} "
            f"AND recipe_id = {int(recipe_id)}"
        )


def downgrade() -> None:
    bind = op.get_bind()
    names = bind.execute(
        sa.text(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'atoms' "
            "AND schemaname = current_schema() AND indexname LIKE :pattern"
        ),
        {"pattern": _PREFIX.replace("_", r"\_") + "%"},
    ).scalars()
    for name in list(names):
        op.execute(f'DROP INDEX IF EXISTS "{name}"')
