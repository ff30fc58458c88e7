"""Create namespaces and first keys (used by ``serve`` and ``keys create``)."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.orm import Session

from .store.keys import create_key, get_or_create_namespace

__all__ = ["ensure_namespace", "write_key_file"]


def ensure_namespace(session: Session, name: str) -> str | None:
    """Create namespace ``name`` with an admin key if it does not exist.

    Returns the new admin key (shown once) when the namespace was created now, or None
    if it already existed. Flushes; the caller commits.
    """
    namespace, created = get_or_create_namespace(session, name)
    if not created:
        return None
    return create_key(session, namespace, "admin").key


def write_key_file(path: Path, key: str) -> None:
    """Write ``key`` to ``path`` with mode 0600, atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (key + "\n").encode("utf-8"))
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
