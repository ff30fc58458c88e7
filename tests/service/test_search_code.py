"""The query's binary code, computed by the service, is pgvector's ``binary_quantize``."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
from pgvector import HalfVector
from pgvector.psycopg import register_vector


def test_query_code_is_binary_quantize(database_url: str) -> None:
    from pace_service.store.search_index import query_code

    rng = np.random.default_rng(3)
    special = [0.0, -0.0, 6e-8, -6e-8, 1.0, -1.0, 65504.0, -65504.0]
    half = np.concatenate([special, rng.standard_normal(101)]).astype(np.float16)
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        register_vector(conn)
        row: Any = conn.execute(
            "SELECT binary_quantize(%s::halfvec)::text", (HalfVector(half),)
        ).fetchone()
    assert query_code(half).to_text() == row[0]
    assert query_code(half.astype(np.float32)).to_text() == row[0]
