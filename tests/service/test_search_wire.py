"""The guessed search over libpq's own calls (store/search_wire.py) gives psycopg's rows."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import psycopg
import pytest
from helpers import auth
from pgvector.psycopg import register_vector_async
from vectors_support import seed_uploaded


def _statement(app: Any, s: Any, vector: np.ndarray[Any, Any], *, model_id: int) -> Any:
    from pace_service.models import Concept
    from pace_service.store import search as store

    with app.state.session_factory() as session:
        namespace_id = session.get(Concept, s.concept_ids[0]).namespace_id
    hint = store.search_hints(app.state.search_engine)[(s.model_id, 0, None)]
    query = store.NearestQuery(model_id, 0, None, 3, vector)
    guess = store.Guess(hint, vector.astype(np.float16))
    return store.guess_statement(namespace_id, query, guess)


async def _both(url: str, statements: list[Any]) -> tuple[list[Any], int]:
    from pace_service.store.search_wire import _PREPARED, fetch_rows

    out = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await register_vector_async(conn)
        for statement, params in statements * 2:  # the second time, already prepared
            typed = await (await conn.execute(statement, params)).fetchall()
            out.append((await fetch_rows(conn, statement, params), typed))
        with pytest.raises(psycopg.OperationalError):  # a failing statement raises
            await fetch_rows(conn, b"SELECT 1/0 WHERE %(recipe)s::bigint IS NULL", params)
        return out, len(_PREPARED[conn])


@pytest.mark.parametrize("max_prepared", [64, 1])
def test_wire_rows_equal_psycopgs(
    client: Any,
    app: Any,
    write_key: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    max_prepared: int,
) -> None:
    from pace_service.store import search_wire

    monkeypatch.setattr(search_wire, "_MAX_PREPARED", max_prepared)  # 1: one named
    s, vecs = seed_uploaded(client, app, write_key, 12, prefix="Ünïcode ☃")
    r = client.post(  # leaves the hint a guessed search is made from
        "/v1/search/nearest",
        json={"model_id": s.model_id, "layer": 0, "k": 3, "vector": vecs[0].tolist()},
        headers=auth(write_key),
    )
    assert r.status_code == 200, r.text
    statements = [
        _statement(app, s, vecs[2], model_id=s.model_id),
        _statement(app, s, -vecs[5], model_id=s.model_id),
        _statement(app, s, vecs[3], model_id=s.model_id + 1000),  # no such model: NULLs
    ]
    pairs, prepared = asyncio.run(_both(database_url.replace("+psycopg", ""), statements))
    assert prepared == min(2, max_prepared)  # two shapes: beyond the bound, sent unnamed
    for wire, typed in pairs:
        assert wire == [tuple(row) for row in typed]
    assert pairs[0][0][0][7] == s.names[2] and pairs[0][0][0][6] == s.concept_ids[2]
    assert pairs[2][0][0][0] is None  # the context of a missing model
