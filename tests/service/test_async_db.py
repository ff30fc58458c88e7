"""The event loop's small pool of async connections."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from pace_service.core.async_db import AsyncConnections


def _libpq(database_url: str) -> str:
    return database_url.replace("+psycopg", "")


def test_connections_are_bounded_reused_and_dropped_after_errors(database_url: str) -> None:
    pool = AsyncConnections(_libpq(database_url), size=1, limit=2)
    live = 0
    peak = 0
    pids: list[int] = []

    async def work() -> None:
        nonlocal live, peak
        async with pool.connection() as conn:
            live += 1
            peak = max(peak, live)
            row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
            assert row is not None
            pids.append(int(row[0]))
            await asyncio.sleep(0.05)
            live -= 1

    async def scenario() -> None:
        await asyncio.gather(*(work() for _ in range(6)))
        assert peak == 2  # the limit holds callers back
        async with pool.connection() as conn:  # the one idle connection is reused
            row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
            assert row is not None and int(row[0]) in pids
        with pytest.raises(psycopg.errors.DivisionByZero):
            async with pool.connection() as conn:
                await conn.execute("SELECT 1 / 0")
        assert conn.closed  # never handed out again
        async with pool.connection() as conn:
            assert not conn.closed
            assert conn.autocommit
        await pool.close()

    asyncio.run(scenario())
