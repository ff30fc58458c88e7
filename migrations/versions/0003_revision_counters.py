"""Revision counters for optimistic concurrency (``ETag`` / ``If-Match``).

Every resource that is edited in place (concepts, concept sets, concept-set versions
while they are drafts, tasks) gets ``revision``: 1 when created, plus one on each
write the API makes to it. The API sends it as ``ETag: "<revision>"`` and refuses a
write whose ``If-Match`` names another revision (412 ``precondition_failed``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 14:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("concepts", "concept_sets", "concept_set_versions", "tasks")


def upgrade() -> None:
    for table in _TABLES:
        # A constant default: PostgreSQL adds the column without rewriting the table
        # (and without firing the published-version guard, which is row-level UPDATE).
        op.add_column(
            table, sa.Column("revision", sa.Integer(), server_default="1", nullable=False)
        )


def downgrade() -> None:
    for table in reversed(_TABLES):
        op.drop_column(table, "revision")
