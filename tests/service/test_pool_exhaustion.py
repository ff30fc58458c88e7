"""An exhausted database connection pool is 503 ``unavailable`` with Retry-After, not 500.

Found by the load bench: with 50 clients on a starved machine, requests waited the
pool's 30 s for a connection and got 500 ``internal``. Overload is not a bug: the
request wrote nothing and can be retried as is.
"""

from __future__ import annotations

from typing import Any

from helpers import auth, error_of


def test_a_request_that_gets_no_connection_in_time_is_503(settings: Any, admin_key: str) -> None:
    from fastapi.testclient import TestClient

    from pace_service.core.db import create_engine
    from pace_service.main import create_app

    engine = create_engine(settings.database_url, pool_size=1, max_overflow=0, pool_timeout=0.3)
    app = create_app(settings, engine=engine)
    held = engine.connect()  # the pool's only connection
    try:
        with TestClient(app) as client:
            r = client.get("/v1/me", headers=auth(admin_key))
            assert r.status_code == 503, r.text
            assert error_of(r)["code"] == "unavailable"
            assert r.headers["Retry-After"] == "1"
            held.close()
            r = client.get("/v1/me", headers=auth(admin_key))  # retried: served
            assert r.status_code == 200, r.text
    finally:
        held.close()
        engine.dispose()
