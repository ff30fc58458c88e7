"""The Alembic migrations: up, down, up again; and nothing left to autogenerate."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from pace_service.core.db import create_engine
from pace_service.migrate import downgrade, include_object, upgrade
from pace_service.models import Base

EXPECTED = set(Base.metadata.tables)
# 0001: the version and its membership (4); 0004: names, stimuli, partitions, labels, atoms (9)
GUARDS = 13


def _state(url: str) -> tuple[set[str], bool, int]:
    engine = create_engine(url, null_pool=True)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names()) - {"alembic_version"}
            has_vector = bool(
                conn.execute(
                    text("SELECT count(*) FROM pg_extension WHERE extname = 'vector'")
                ).scalar()
            )
            triggers = conn.execute(
                text("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'guard_published%'")
            ).scalar()
    finally:
        engine.dispose()
    return tables, has_vector, int(triggers or 0)


def test_upgrade_downgrade_upgrade(pg_server: Any) -> None:
    url = pg_server.ensure_database("migration_roundtrip")
    upgrade(url)
    assert _state(url) == (EXPECTED, True, GUARDS)
    downgrade(url, "base")
    assert _state(url) == (set(), False, 0)
    upgrade(url)
    assert _state(url) == (EXPECTED, True, GUARDS)


def test_models_match_migrations(database_url: str) -> None:
    engine = create_engine(database_url, null_pool=True)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_object": include_object}
            )
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_halfvec_accepts_any_dimension_up_to_16000(database_url: str) -> None:
    """Atoms have no fixed dimension: 4,096, 5,120 and 16,000 fit in one table."""
    engine = create_engine(database_url, null_pool=True)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO namespaces (name) VALUES ('n')"))
        conn.execute(text("INSERT INTO concepts (namespace_id, name) VALUES (1, 'c')"))
        conn.execute(
            text(
                "INSERT INTO recipes (token_position, reduction, prompt_template, code_version, "
                "content_hash) VALUES ('last', 'mean', '{stimulus}', 'v', 'h')"
            )
        )
        for i, dim in enumerate((4096, 5120, 16000)):
            conn.execute(
                text(
                    "INSERT INTO models (hf_id, revision, hidden_size, num_layers, architecture) "
                    "VALUES (:h, 'main', :d, 1, 'x')"
                ),
                {"h": f"m{i}", "d": dim},
            )
            conn.execute(
                text(
                    "INSERT INTO atoms (model_id, layer, recipe_id, concept_id, vector) "
                    "VALUES (:m, 0, 1, 1, array_fill(0.5::real, ARRAY[:d])::halfvec)"
                ),
                {"m": i + 1, "d": dim},
            )
        dims = conn.execute(
            text("SELECT vector_dims(vector) FROM atoms ORDER BY model_id")
        ).scalars()
        assert list(dims) == [4096, 5120, 16000]
    engine.dispose()
