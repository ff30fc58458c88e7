"""Alembic environment: one source of truth for the URL (the service settings).

The URL comes from, in order: ``config.attributes["connection"]`` (an open connection,
used by tests and ``pace_service.migrate``), ``config.attributes["url"]``, then the
service settings (``DATABASE_URL``).
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from pgvector.sqlalchemy import BIT, HALFVEC, SPARSEVEC, VECTOR
from sqlalchemy import Connection

from pace_service.core.config import get_settings, sqlalchemy_url
from pace_service.core.db import create_engine
from pace_service.migrate import include_object
from pace_service.models import Base

config = context.config
target_metadata = Base.metadata

_PGVECTOR_TYPES = (VECTOR, HALFVEC, SPARSEVEC, BIT)


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render pgvector column types with their import, so migrations import cleanly."""
    if type_ == "type" and isinstance(obj, _PGVECTOR_TYPES):
        autogen_context.imports.add("import pgvector.sqlalchemy")
        dim = getattr(obj, "dim", None)
        args = "" if dim is None else str(dim)
        return f"pgvector.sqlalchemy.{type(obj).__name__}({args})"
    return False


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_item=render_item,
        include_object=include_object,
        compare_type=True,
        compare_server_default=False,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = config.attributes.get("url") or get_settings().database_url
    if not url:
        raise RuntimeError("no database URL: set DATABASE_URL or pass one to migrate.upgrade()")
    return sqlalchemy_url(str(url))


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``)."""
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        render_item=render_item,
        include_object=include_object,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against a live database, on a given connection or a NullPool engine."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    engine = create_engine(_url(), null_pool=True)
    try:
        with engine.connect() as conn:
            _configure(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
