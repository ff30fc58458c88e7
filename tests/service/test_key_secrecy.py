"""Keys are shown once: never returned after creation, never logged, stored only hashed."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from helpers import auth
from live_server import serve_in_thread

SERVER_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "pace_service",
    "fastapi",
    "starlette",
    "sqlalchemy.engine",
    "sqlalchemy.pool",
    "psycopg",
)


class _Collect(logging.Handler):
    """Every record, formatted with its arguments and any traceback."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("httpx", "httpcore")):  # the test's own client
            return
        self.lines.append(self.format(record))


@pytest.fixture
def debug_logs() -> Iterator[_Collect]:
    """Every server-side logger at DEBUG, into one handler on the root logger.

    Each logger is also made to propagate and enabled for the test: an earlier server in
    the same run (uvicorn's default log config sets ``uvicorn.access`` not to propagate)
    or a logging file config (alembic's disables existing loggers) may have changed them.
    """
    handler = _Collect()
    root = logging.getLogger()
    loggers = [logging.getLogger(name) for name in SERVER_LOGGERS]
    saved = [(lg, lg.level, lg.propagate, lg.disabled) for lg in loggers]
    root_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.propagate, lg.disabled = True, False
    yield handler
    root.removeHandler(handler)
    root.setLevel(root_level)
    for lg, level, propagate, disabled in saved:
        lg.setLevel(level)
        lg.propagate, lg.disabled = propagate, disabled


@pytest.fixture
def debug_server(app: Any, debug_logs: _Collect) -> Iterator[str]:
    """uvicorn at log level debug with access logs, its loggers propagating to root."""
    with serve_in_thread(app, log_level="debug", log_config=None, access_log=True) as base_url:
        yield base_url


def _dump_database(url: str) -> str:
    """Every row of every table as text."""
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        return "\n".join(
            str(row) for table in tables for row in conn.execute(f'SELECT * FROM "{table}"')
        )


def test_secrets_are_never_returned_logged_or_stored(
    debug_server: str,
    debug_logs: _Collect,
    make_key: Callable[[str, str], str],
    database_url: str,
) -> None:
    admin = make_key("team-a", "admin")
    other = make_key("team-b", "admin")
    seen: list[httpx.Response] = []
    with httpx.Client(base_url=debug_server, timeout=30) as http:

        def req(method: str, path: str, key: str | None, **kw: Any) -> httpx.Response:
            response = http.request(method, path, headers=auth(key) if key else {}, **kw)
            seen.append(response)
            return response

        created = [req("POST", "/v1/keys", admin, json={"role": r}) for r in ("read", "write")]
        assert [c.status_code for c in created] == [201, 201]
        read_key, write_key = (c.json()["key"] for c in created)
        secrets = [admin, other, read_key, write_key]
        # successful calls with each key, in the Authorization header
        for key in secrets:
            assert req("GET", "/v1/me", key).status_code == 200
        listed = req("GET", "/v1/keys", admin)
        assert listed.status_code == 200 and listed.json()["total"] == 3
        for item in listed.json()["items"]:
            assert set(item) == {"id", "role", "prefix", "created_at", "revoked_at"}
            assert len(item["prefix"]) == len("pace_") + 6
        assert req("POST", "/v1/concepts", write_key, json={"name": "x"}).status_code == 201
        # failing calls: too low a role, another namespace's key, a mangled key, bad input
        assert req("POST", "/v1/keys", read_key, json={"role": "admin"}).status_code == 403
        mine = created[0].json()["id"]
        assert req("DELETE", f"/v1/keys/{mine}", other).status_code == 404
        assert req("GET", "/v1/me", read_key + "x").status_code == 401
        assert req("GET", "/v1/me", read_key[:-1]).status_code == 401
        assert req("POST", "/v1/concepts", write_key, json={"name": ""}).status_code == 422
        # revoked: the revocation answer and later refusals show no secret
        revoked = req("DELETE", f"/v1/keys/{mine}", admin)
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        assert req("GET", "/v1/me", read_key).status_code == 401

    creations = {c.json()["key"]: c for c in created}
    for response in seen:
        text = response.text + str(response.headers)
        for secret in secrets:
            if creations.get(secret) is response:
                continue  # the one response that shows it
            assert secret not in text, (response.request.url, response.text)
    logged = "\n".join(debug_logs.lines)
    assert any("uvicorn" in line for line in debug_logs.lines)  # the capture works
    assert any(line.startswith("sqlalchemy.engine") for line in debug_logs.lines)
    for secret in secrets:
        assert secret not in logged
        assert secret[len("pace_") :] not in logged
    dump = _dump_database(database_url.replace("postgresql+psycopg://", "postgresql://"))
    for secret in secrets:
        assert secret not in dump
        assert secret[len("pace_") + 6 :] not in dump  # not even past the shown prefix
        assert hashlib.sha256(secret.encode()).hexdigest() in dump
