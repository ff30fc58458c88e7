"""Engine and session factories. Nothing connects at import time.

Every engine built here registers pgvector's psycopg adapters on each new DBAPI
connection (so raw ``COPY ... (FORMAT BINARY)`` and ``cursor.execute`` see
``Vector``/``HalfVector`` objects), through SQLAlchemy's ``connect`` event.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from sqlalchemy import Engine, event
from sqlalchemy import create_engine as _sa_create_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from .config import sqlalchemy_url

__all__ = ["SessionFactory", "create_engine", "create_session_factory", "register_pgvector"]

_log = logging.getLogger(__name__)

SessionFactory = sessionmaker[Session]


def register_pgvector(dbapi_connection: Any, _connection_record: Any = None) -> None:
    """Register pgvector's types on a psycopg connection (a SQLAlchemy ``connect`` hook).

    A database without the ``vector`` extension (before the first migration) is left
    as is: there is nothing to register yet.
    """
    if not isinstance(dbapi_connection, psycopg.Connection):
        return
    try:
        register_vector(dbapi_connection)
    except psycopg.ProgrammingError:
        _log.debug("vector extension not installed yet; pgvector adapters not registered")
    finally:
        # TypeInfo.fetch opened a transaction; hand the connection back idle.
        if dbapi_connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            dbapi_connection.rollback()


def create_engine(
    url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    null_pool: bool = False,
    **kwargs: Any,
) -> Engine:
    """Build an engine for ``url`` (any ``postgres``/``postgresql`` URL is accepted).

    ``null_pool=True`` opens a connection per checkout (migrations, CLI one-shots).
    """
    options: dict[str, Any] = {"pool_pre_ping": True, **kwargs}
    if null_pool:
        options["poolclass"] = NullPool
    else:
        options.update(pool_size=pool_size, max_overflow=max_overflow)
    engine = _sa_create_engine(sqlalchemy_url(url), **options)
    event.listen(engine, "connect", register_pgvector)
    return engine


def create_session_factory(engine: Engine) -> SessionFactory:
    """A session factory whose objects stay readable after commit (for responses)."""
    return sessionmaker(engine, expire_on_commit=False, autoflush=True)
