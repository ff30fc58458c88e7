"""Run the Alembic migrations programmatically.

The migrations live in ``migrations/`` at the repository root (an editable or
checkout install); :func:`migrations_dir` finds them relative to this package.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from .core.config import sqlalchemy_url

__all__ = [
    "RUNTIME_INDEX_PREFIXES",
    "alembic_config",
    "downgrade",
    "include_object",
    "migrations_dir",
    "upgrade",
]

RUNTIME_INDEX_PREFIXES = ("ix_atoms_bq_",)
"""Indexes the service creates at runtime (per-group search indexes), not in the models."""


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object | None
) -> bool:
    """Alembic autogenerate filter: ignore the runtime-created search indexes."""
    if type_ == "index" and reflected and compare_to is None and name is not None:
        return not name.startswith(RUNTIME_INDEX_PREFIXES)
    return True


def migrations_dir() -> Path:
    """The ``migrations/`` folder of the checkout this package was installed from."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "migrations"
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError(
        "migrations/ not found above pace_service; install the service from a checkout "
        "(pip install -e .[service]) so the migrations are available"
    )


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """An Alembic config for ``url`` (or an open ``connection``) without alembic.ini."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        cfg.attributes["url"] = sqlalchemy_url(url)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (default: the latest)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Downgrade the database at ``url`` to ``revision`` (default: an empty schema)."""
    command.downgrade(alembic_config(url), revision)
