"""Initial schema: the vector extension, every table, and immutability triggers.

The triggers make a published concept-set version immutable for everyone (admins
and direct SQL included): no update or delete of the version row, and no change to
its membership and stimuli snapshot (``version_concepts``).
They raise SQLSTATE ``PC409``, which the service maps to 409 ``immutable``.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 11:27:46.406059
"""

from __future__ import annotations

from collections.abc import Sequence

import pgvector.sqlalchemy
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ = (pgvector.sqlalchemy, sa)  # keep the imports a generated migration may need


IMMUTABLE_SQLSTATE = "PC409"

_TRIGGER_SQL = f"""
CREATE FUNCTION pace_guard_published_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'published' THEN
        RAISE EXCEPTION 'concept-set version % is published and immutable', OLD.id
            USING ERRCODE = '{IMMUTABLE_SQLSTATE}';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION pace_guard_published_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    vid bigint;
BEGIN
    -- statement level, over the transition tables: one check per statement, not per row
    IF TG_OP = 'INSERT' THEN
        SELECT v.id INTO vid FROM new_rows r JOIN concept_set_versions v ON v.id = r.version_id
        WHERE v.status = 'published' LIMIT 1;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT v.id INTO vid FROM old_rows r JOIN concept_set_versions v ON v.id = r.version_id
        WHERE v.status = 'published' LIMIT 1;
    ELSE
        SELECT v.id INTO vid
        FROM (SELECT version_id FROM old_rows UNION ALL SELECT version_id FROM new_rows) r
        JOIN concept_set_versions v ON v.id = r.version_id
        WHERE v.status = 'published' LIMIT 1;
    END IF;
    IF vid IS NOT NULL THEN
        RAISE EXCEPTION 'concept-set version % is published and immutable', vid
            USING ERRCODE = '{IMMUTABLE_SQLSTATE}';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER guard_published_version BEFORE UPDATE OR DELETE ON concept_set_versions
    FOR EACH ROW EXECUTE FUNCTION pace_guard_published_version();
CREATE TRIGGER guard_published_members_insert AFTER INSERT ON version_concepts
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION pace_guard_published_rows();
CREATE TRIGGER guard_published_members_update AFTER UPDATE ON version_concepts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION pace_guard_published_rows();
CREATE TRIGGER guard_published_members_delete AFTER DELETE ON version_concepts
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION pace_guard_published_rows();
"""


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "models",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("hf_id", sa.Text(), nullable=False),
        sa.Column("revision", sa.Text(), nullable=False),
        sa.Column("hidden_size", sa.Integer(), nullable=False),
        sa.Column("num_layers", sa.Integer(), nullable=False),
        sa.Column("architecture", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("hidden_size BETWEEN 1 AND 16000", name=op.f("ck_models_hidden_size")),
        sa.CheckConstraint("num_layers >= 1", name=op.f("ck_models_num_layers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("hf_id", "revision", name=op.f("uq_models_hf_id_revision")),
    )
    op.create_table(
        "namespaces",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_namespaces")),
        sa.UniqueConstraint("name", name=op.f("uq_namespaces_name")),
    )
    op.create_table(
        "recipes",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("token_position", sa.String(length=16), nullable=False),
        sa.Column("reduction", sa.String(length=16), nullable=False),
        sa.Column("prompt_template", sa.Text(), nullable=False),
        sa.Column("code_version", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("reduction IN ('mean', 'pc1')", name=op.f("ck_recipes_reduction")),
        sa.CheckConstraint(
            "token_position IN ('last', 'mean')", name=op.f("ck_recipes_token_position")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recipes")),
        sa.UniqueConstraint("content_hash", name=op.f("uq_recipes_content_hash")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("namespace_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('read', 'write', 'admin')", name=op.f("ck_api_keys_role")),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.id"],
            name=op.f("fk_api_keys_namespace_id_namespaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_namespace_id"), "api_keys", ["namespace_id"], unique=False)
    op.create_table(
        "concept_sets",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("namespace_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("public", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("forked_from_set_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["forked_from_set_id"],
            ["concept_sets.id"],
            name=op.f("fk_concept_sets_forked_from_set_id_concept_sets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.id"],
            name=op.f("fk_concept_sets_namespace_id_namespaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_concept_sets")),
        sa.UniqueConstraint("namespace_id", "name", name=op.f("uq_concept_sets_namespace_id_name")),
    )
    op.create_table(
        "concepts",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("namespace_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "tags", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.id"],
            name=op.f("fk_concepts_namespace_id_namespaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_concepts")),
        sa.UniqueConstraint("namespace_id", "name", name=op.f("uq_concepts_namespace_id_name")),
    )
    op.create_index("ix_concepts_tags", "concepts", ["tags"], unique=False, postgresql_using="gin")
    op.create_table(
        "tasks",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("namespace_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["namespaces.id"],
            name=op.f("fk_tasks_namespace_id_namespaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("namespace_id", "name", name=op.f("uq_tasks_namespace_id_name")),
    )
    op.create_table(
        "atoms",
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("layer", sa.Integer(), nullable=False),
        sa.Column("recipe_id", sa.BigInteger(), nullable=False),
        sa.Column("concept_id", sa.BigInteger(), nullable=False),
        sa.Column("vector", pgvector.sqlalchemy.HALFVEC(), nullable=False),
        sa.CheckConstraint("layer >= 0", name=op.f("ck_atoms_layer")),
        sa.ForeignKeyConstraint(
            ["concept_id"],
            ["concepts.id"],
            name=op.f("fk_atoms_concept_id_concepts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_atoms_model_id_models"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["recipe_id"],
            ["recipes.id"],
            name=op.f("fk_atoms_recipe_id_recipes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "model_id", "layer", "recipe_id", "concept_id", name=op.f("pk_atoms")
        ),
    )
    op.create_index("ix_atoms_concept_id", "atoms", ["concept_id"], unique=False)
    op.create_table(
        "concept_set_versions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("set_id", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="draft", nullable=False),
        sa.Column("parent_version_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(status = 'published') = (published_at IS NOT NULL)",
            name=op.f("ck_concept_set_versions_published_at"),
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'published')", name=op.f("ck_concept_set_versions_status")
        ),
        sa.ForeignKeyConstraint(
            ["parent_version_id"],
            ["concept_set_versions.id"],
            name=op.f("fk_concept_set_versions_parent_version_id_concept_set_versions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["set_id"],
            ["concept_sets.id"],
            name=op.f("fk_concept_set_versions_set_id_concept_sets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_concept_set_versions")),
        sa.UniqueConstraint("set_id", "number", name=op.f("uq_concept_set_versions_set_id_number")),
    )
    op.create_table(
        "stimuli",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("concept_id", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_sha256", sa.LargeBinary(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column(
            "provenance",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "source IN ('generated', 'imported', 'human')", name=op.f("ck_stimuli_source")
        ),
        sa.ForeignKeyConstraint(
            ["concept_id"],
            ["concepts.id"],
            name=op.f("fk_stimuli_concept_id_concepts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stimuli")),
        sa.UniqueConstraint(
            "concept_id", "text_sha256", name=op.f("uq_stimuli_concept_id_text_sha256")
        ),
    )
    op.create_table(
        "partitions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("concept_set_version_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "provenance",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["concept_set_version_id"],
            ["concept_set_versions.id"],
            name=op.f("fk_partitions_concept_set_version_id_concept_set_versions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["partitions.id"],
            name=op.f("fk_partitions_parent_id_partitions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_partitions_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partitions")),
        sa.UniqueConstraint(
            "task_id",
            "concept_set_version_id",
            "version",
            name=op.f("uq_partitions_task_id_concept_set_version_id_version"),
        ),
    )
    op.create_index(
        op.f("ix_partitions_concept_set_version_id"),
        "partitions",
        ["concept_set_version_id"],
        unique=False,
    )
    op.create_table(
        "version_concepts",
        sa.Column("version_id", sa.BigInteger(), nullable=False),
        sa.Column("concept_id", sa.BigInteger(), nullable=False),
        sa.Column("stimulus_ids", postgresql.ARRAY(sa.BigInteger()), nullable=True),
        sa.ForeignKeyConstraint(
            ["concept_id"],
            ["concepts.id"],
            name=op.f("fk_version_concepts_concept_id_concepts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["concept_set_versions.id"],
            name=op.f("fk_version_concepts_version_id_concept_set_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version_id", "concept_id", name=op.f("pk_version_concepts")),
    )
    op.create_index(
        op.f("ix_version_concepts_concept_id"), "version_concepts", ["concept_id"], unique=False
    )
    op.create_table(
        "dictionaries",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("inputs_hash", sa.String(length=64), nullable=False),
        sa.Column("inputs", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("concept_set_version_id", sa.BigInteger(), nullable=False),
        sa.Column("model_id", sa.BigInteger(), nullable=False),
        sa.Column("recipe_id", sa.BigInteger(), nullable=False),
        sa.Column("partition_id", sa.BigInteger(), nullable=True),
        sa.Column("layers", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column("n_concepts", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="ready", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("status IN ('ready')", name=op.f("ck_dictionaries_status")),
        sa.ForeignKeyConstraint(
            ["concept_set_version_id"],
            ["concept_set_versions.id"],
            name=op.f("fk_dictionaries_concept_set_version_id_concept_set_versions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_dictionaries_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["partition_id"],
            ["partitions.id"],
            name=op.f("fk_dictionaries_partition_id_partitions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["recipe_id"],
            ["recipes.id"],
            name=op.f("fk_dictionaries_recipe_id_recipes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_dictionaries")),
    )
    op.create_index(
        op.f("ix_dictionaries_concept_set_version_id"),
        "dictionaries",
        ["concept_set_version_id"],
        unique=False,
    )
    op.create_index("ix_dictionaries_inputs_hash", "dictionaries", ["inputs_hash"], unique=False)
    op.create_table(
        "labels",
        sa.Column("partition_id", sa.BigInteger(), nullable=False),
        sa.Column("concept_id", sa.BigInteger(), nullable=False),
        sa.Column("label", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("rationale", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "labeler",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.CheckConstraint("label IN ('benign', 'undesirable')", name=op.f("ck_labels_label")),
        sa.ForeignKeyConstraint(
            ["concept_id"],
            ["concepts.id"],
            name=op.f("fk_labels_concept_id_concepts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["partition_id"],
            ["partitions.id"],
            name=op.f("fk_labels_partition_id_partitions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("partition_id", "concept_id", name=op.f("pk_labels")),
    )
    op.create_index(op.f("ix_labels_concept_id"), "labels", ["concept_id"], unique=False)
    op.execute(_TRIGGER_SQL)


def downgrade() -> None:
    op.execute("DROP TRIGGER guard_published_members_insert ON version_concepts")
    op.execute("DROP TRIGGER guard_published_members_update ON version_concepts")
    op.execute("DROP TRIGGER guard_published_members_delete ON version_concepts")
    op.execute("DROP TRIGGER guard_published_version ON concept_set_versions")
    op.execute("DROP FUNCTION pace_guard_published_rows()")
    op.execute("DROP FUNCTION pace_guard_published_version()")
    op.drop_index(op.f("ix_labels_concept_id"), table_name="labels")
    op.drop_table("labels")
    op.drop_index("ix_dictionaries_inputs_hash", table_name="dictionaries")
    op.drop_index(op.f("ix_dictionaries_concept_set_version_id"), table_name="dictionaries")
    op.drop_table("dictionaries")
    op.drop_index(op.f("ix_version_concepts_concept_id"), table_name="version_concepts")
    op.drop_table("version_concepts")
    op.drop_index(op.f("ix_partitions_concept_set_version_id"), table_name="partitions")
    op.drop_table("partitions")
    op.drop_table("stimuli")
    op.drop_table("concept_set_versions")
    op.drop_index("ix_atoms_concept_id", table_name="atoms")
    op.drop_table("atoms")
    op.drop_table("tasks")
    op.drop_index("ix_concepts_tags", table_name="concepts", postgresql_using="gin")
    op.drop_table("concepts")
    op.drop_table("concept_sets")
    op.drop_index(op.f("ix_api_keys_namespace_id"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("recipes")
    op.drop_table("namespaces")
    op.drop_table("models")
    op.execute("DROP EXTENSION IF EXISTS vector")
