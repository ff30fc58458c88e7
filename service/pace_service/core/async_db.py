"""A small pool of psycopg ``AsyncConnection``\\ s for the event loop's own queries.

The search hot path answers a repeated query without leaving the event loop (a worker
thread hop costs as much as the query on a busy machine): it needs connections the
loop can await. Connections are autocommit, have pgvector's adapters, are opened on
first use and bound to the loop that opened them (a new loop, as under a test client
without its lifespan, starts a fresh set). A connection that saw any error is closed,
never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from pgvector.psycopg import register_vector_async
from sqlalchemy import Engine

__all__ = ["AsyncConnections", "libpq_url"]


def libpq_url(engine: Engine) -> str:
    """``engine``'s URL as libpq understands it (no SQLAlchemy driver suffix)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class AsyncConnections:
    """At most ``size`` idle connections kept, at most ``limit`` open (callers wait)."""

    def __init__(self, url: str, *, size: int, limit: int) -> None:
        self._url = url
        self._size = size
        self._limit = max(size, limit)
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection for one unit of work; returned to the pool unless it failed."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._slots is None:
            self._idle = []  # bound to a loop that is gone; dropped, closed by GC
            self._loop = loop
            self._slots = asyncio.Semaphore(self._limit)
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._open()
            try:
                yield conn
            except BaseException:
                await conn.close()
                raise
            if conn.closed or len(self._idle) >= self._size:
                await conn.close()
            else:
                self._idle.append(conn)

    async def _open(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        await register_vector_async(conn)
        return conn

    async def close(self) -> None:
        """Close the idle connections (at shutdown)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(psycopg.Error):
                await conn.close()
