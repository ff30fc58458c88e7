"""Atom codes (migration 0005): the stored binary quantization the search indexes use.

The code is a generated column, so PostgreSQL keeps it equal to
``binary_quantize(vector)``; these tests check that it does through every way atoms
change (upload, a draft concept's deletion, a direct update, the published-row guard),
that the service quantizes a query exactly as pgvector does, that the index path
answers like exact search, and that the migration moves the indexes both ways.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
import pytest
from helpers import auth, error_of
from vectors_support import activation_like, seed, upload_body

from pace_service.migrate import downgrade, upgrade
from pace_service.store.search_index import index_name, query_code


def _libpq(database_url: str) -> str:
    return database_url.replace("+psycopg", "")


def _upload(client: Any, key: str, s: Any, vecs: Any, layer: int = 0) -> None:
    r = client.post(
        f"/v1/models/{s.model_id}/vectors?recipe_id={s.recipe_id}",
        content=upload_body(vecs, s.concept_ids, layer),
        headers=auth(key),
    )
    assert r.status_code == 200, r.text


def _stale_codes(database_url: str) -> int:
    with psycopg.connect(_libpq(database_url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM atoms WHERE code IS DISTINCT FROM binary_quantize(vector)::varbit"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _search(client: Any, key: str, s: Any, q: Any, **extra: Any) -> dict[str, Any]:
    r = client.post(
        "/v1/search/nearest",
        json={"model_id": s.model_id, "layer": 0, "k": 10, "vector": q.tolist(), **extra},
        headers=auth(key),
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_query_code_matches_pgvector_binary_quantize(database_url: str) -> None:
    """Zeros of both signs, float16 subnormals and extremes quantize alike on both sides."""
    tiny = float(np.float16(6e-8))  # float16's smallest subnormal
    edge = [0.0, -0.0, tiny, -tiny, 65504.0, -65504.0, 1e-3, -1e-3, 0.5, -0.5, 0.0]
    rng = np.random.default_rng(3)
    vectors = [np.asarray(edge, np.float16), rng.standard_normal(4096).astype(np.float16)]
    with psycopg.connect(_libpq(database_url)) as conn:
        for v in vectors:
            text = "[" + ",".join(repr(float(x)) for x in v) + "]"
            row = conn.execute("SELECT binary_quantize(%s::halfvec)::text", (text,)).fetchone()
            assert row is not None
            assert query_code(v).to_text() == row[0]


def test_upload_stores_codes_and_index_search_equals_exact(
    client: Any, app: Any, write_key: str, database_url: str
) -> None:
    # 4,096 dims: a pool of 64 Hamming candidates out of 160 atoms, then the exact re-rank
    s = seed(app, n_concepts=160, hidden_size=4096, num_layers=1, hf_id="test/codes")
    vecs = activation_like(160, 4096)
    _upload(client, write_key, s, vecs)
    assert _stale_codes(database_url) == 0
    rng = np.random.default_rng(11)
    for i in range(0, 160, 16):
        q = vecs[i] + 0.5 * float(np.abs(vecs).mean()) * rng.standard_normal(4096)
        approx = _search(client, write_key, s, q)
        exact = _search(client, write_key, s, q, exact=True)
        assert approx["exact"] is False and exact["exact"] is True
        assert [r["concept_id"] for r in approx["results"]] == [
            r["concept_id"] for r in exact["results"]
        ]
        for a, e in zip(approx["results"], exact["results"], strict=True):
            assert a["similarity"] == pytest.approx(e["similarity"], abs=1e-6)
        assert approx["results"][0]["concept_id"] == s.concept_ids[i]


def test_codes_follow_draft_changes_and_deletes(
    client: Any, app: Any, write_key: str, database_url: str
) -> None:
    s = seed(app, n_concepts=40, hidden_size=2048, num_layers=1, publish=False, hf_id="t/d")
    vecs = activation_like(40, 2048)
    _upload(client, write_key, s, vecs)
    victim, changed = s.concept_ids[5], s.concept_ids[6]
    assert _search(client, write_key, s, vecs[5])["results"][0]["concept_id"] == victim
    # a draft member's atom may be rewritten in SQL (the API never does): its code follows
    with psycopg.connect(_libpq(database_url)) as conn:
        conn.execute(
            "UPDATE atoms SET vector = (SELECT vector FROM atoms WHERE concept_id = %s) "
            "WHERE concept_id = %s",
            (s.concept_ids[7], changed),
        )
    assert _stale_codes(database_url) == 0
    # deleting a draft concept deletes its atom and its code with it
    r = client.delete(f"/v1/concepts/{victim}", headers=auth(write_key))
    assert r.status_code == 204, r.text
    with psycopg.connect(_libpq(database_url)) as conn:
        left = conn.execute("SELECT count(*) FROM atoms WHERE concept_id = %s", (victim,))
        assert left.fetchone() == (0,)
    answer = _search(client, write_key, s, vecs[5])
    assert answer["exact"] is False
    assert victim not in {r["concept_id"] for r in answer["results"]}
    assert _stale_codes(database_url) == 0


def test_published_codes_cannot_change(
    client: Any, app: Any, write_key: str, database_url: str
) -> None:
    s = seed(app, n_concepts=20, hidden_size=2048, num_layers=1, hf_id="t/p")
    vecs = activation_like(20, 2048)
    _upload(client, write_key, s, vecs)
    target = s.concept_ids[3]
    with psycopg.connect(_libpq(database_url)) as conn:
        before = conn.execute("SELECT code FROM atoms WHERE concept_id = %s", (target,)).fetchone()
    with psycopg.connect(_libpq(database_url)) as conn, pytest.raises(psycopg.Error) as exc:
        conn.execute(
            "UPDATE atoms SET vector = (SELECT vector FROM atoms WHERE concept_id = %s) "
            "WHERE concept_id = %s",
            (s.concept_ids[4], target),
        )
    assert exc.value.sqlstate == "PC409"  # migration 0004's guard
    with psycopg.connect(_libpq(database_url)) as conn, pytest.raises(psycopg.Error) as exc:
        conn.execute("UPDATE atoms SET code = B'1' WHERE concept_id = %s", (target,))
    assert exc.value.sqlstate == "428C9"  # a generated column takes no value
    with psycopg.connect(_libpq(database_url)) as conn:
        after = conn.execute("SELECT code FROM atoms WHERE concept_id = %s", (target,)).fetchone()
    assert after == before
    r = client.delete(f"/v1/concepts/{target}", headers=auth(write_key))
    assert r.status_code == 409 and error_of(r)["code"] == "immutable"


def _index_def(conn: psycopg.Connection[Any], name: str) -> str | None:
    row = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", (name,)).fetchone()
    return None if row is None else str(row[0])


def _has_code(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_name = 'atoms' AND column_name = 'code'"
    ).fetchone()
    return row == (1,)


def test_migration_moves_search_indexes_both_ways(pg_server: Any) -> None:
    """0005 on a database holding atoms: indexes rebuilt on the code, and back."""
    url = pg_server.ensure_database("atom_codes_migration")
    upgrade(url, "0004")
    libpq = pg_server.libpq_url("atom_codes_migration")
    vecs = activation_like(12, 4096)
    with psycopg.connect(libpq) as conn:
        conn.execute("INSERT INTO namespaces (name) VALUES ('n')")
        conn.execute(
            "INSERT INTO models (hf_id, revision, hidden_size, num_layers, architecture) "
            "VALUES ('m', 'main', 4096, 2, 'x')"
        )
        conn.execute(
            "INSERT INTO recipes (token_position, reduction, prompt_template, code_version, "
            "content_hash) VALUES ('last', 'mean', '{stimulus}', 'v', 'h')"
        )
        for i, v in enumerate(vecs):
            conn.execute("INSERT INTO concepts (namespace_id, name) VALUES (1, %s)", (f"c{i}",))
            text = "[" + ",".join(repr(float(x)) for x in v.astype(np.float16)) + "]"
            conn.execute(
                "INSERT INTO atoms (model_id, layer, recipe_id, concept_id, vector) "
                "VALUES (1, %s, 1, %s, %s::halfvec)",
                (i % 2, i + 1, text),
            )
        # what the service builds at 0004 (search_index.ensure_search_index of then)
        for layer in (0, 1):
            conn.execute(
                f"CREATE INDEX {index_name(1, layer, 1)} ON atoms USING hnsw "
                "((binary_quantize(vector)::bit(4096)) bit_hamming_ops) "
                f"WHERE model_id = 1 AND layer = {layer} AND recipe_id = 1"
            )
    upgrade(url)
    with psycopg.connect(libpq) as conn:
        assert _has_code(conn)
        for layer in (0, 1):
            definition = _index_def(conn, index_name(1, layer, 1))
            assert definition is not None and "(code)::bit(4096)" in definition
            assert f"layer = {layer}" in definition
    assert _stale_codes(url) == 0
    downgrade(url, "0004")
    with psycopg.connect(libpq) as conn:
        assert not _has_code(conn)
        for layer in (0, 1):
            definition = _index_def(conn, index_name(1, layer, 1))
            assert definition is not None and "binary_quantize(vector)" in definition
    upgrade(url)
    with psycopg.connect(libpq) as conn:
        assert _has_code(conn)
        definition = _index_def(conn, index_name(1, 0, 1))
        assert definition is not None and "(code)::bit(4096)" in definition
