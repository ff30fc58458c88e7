"""The embedded server's settings: shared_buffers is raised from PostgreSQL's 128 MB."""

from __future__ import annotations

from typing import Any

from pace_service.core.embedded import SHARED_BUFFERS_MB, EmbeddedPostgres


def test_fresh_embedded_server_runs_with_the_configured_shared_buffers(pg_server: Any) -> None:
    # the test run's server is started from an empty data dir: configured, then restarted
    assert isinstance(pg_server, EmbeddedPostgres)
    assert SHARED_BUFFERS_MB > 128
    assert pg_server.shared_buffers_mb() == SHARED_BUFFERS_MB
