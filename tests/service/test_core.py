"""Core plumbing: pgvector adapters on every connection, re-owning an embedded data dir."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from pgvector import HalfVector

from pace_service.core.db import create_engine
from pace_service.core.embedded import EMBEDDED_SYSTEM_USER, _reown_data_dir


def test_engine_connections_have_pgvector_adapters(database_url: str) -> None:
    engine = create_engine(database_url, null_pool=True)
    try:
        with engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            value = raw.execute("SELECT '[1.5, -2, 0.25]'::halfvec").fetchone()
            assert value is not None and isinstance(value[0], HalfVector)
            np.testing.assert_array_equal(value[0].to_numpy(), [1.5, -2, 0.25])
            # and HalfVector parameters are dumped to the server type
            back = raw.execute(
                "SELECT %s::halfvec <=> '[1, 0]'::halfvec", (HalfVector([0.0, 1.0]),)
            ).fetchone()
            assert back is not None and back[0] == pytest.approx(1.0)
    finally:
        engine.dispose()


@pytest.mark.skipif(os.geteuid() != 0, reason="re-owning applies when run as root")
def test_reown_data_dir_after_the_system_user_changed() -> None:
    parent = Path(tempfile.mkdtemp(prefix="pace-reown-"))
    pgdata = parent / "pgdata"
    try:
        (pgdata / "global").mkdir(parents=True)
        (pgdata / "PG_VERSION").write_text("18\n")
        (pgdata / "global" / "pg_control").write_bytes(b"x")
        os.chown(pgdata / "global" / "pg_control", 0, 0)  # as if the uid had changed
        _reown_data_dir(pgdata)
        uid = pwd.getpwnam(EMBEDDED_SYSTEM_USER).pw_uid
        for path in (pgdata, pgdata / "global", pgdata / "global" / "pg_control"):
            assert path.stat().st_uid == uid, path
    finally:
        shutil.rmtree(parent, ignore_errors=True)
