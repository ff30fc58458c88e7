"""Nearest search's hot path: binary bodies, the key cache, the one-round-trip guess,
and a pool the server dropped."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
from helpers import auth, error_of, post_binary_nearest
from vectors_support import activation_like, create_pc1_recipe, seed, upload_body

DIM = 64


def _upload(client: Any, key: str, s: Any, vecs: Any, recipe_id: int | None = None) -> None:
    r = client.post(
        f"/v1/models/{s.model_id}/vectors?recipe_id={recipe_id or s.recipe_id}",
        content=upload_body(vecs, s.concept_ids, 0),
        headers=auth(key),
    )
    assert r.status_code == 200, r.text


def _json(client: Any, key: str, **body: Any) -> Any:
    return client.post("/v1/search/nearest", json=body, headers=auth(key))


def _ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.text
    return [int(r["concept_id"]) for r in response.json()["results"]]


def test_binary_body_answers_like_json(client: Any, app: Any, write_key: str) -> None:
    s = seed(app, n_concepts=60, hidden_size=DIM, num_layers=1)
    vecs = activation_like(60, DIM)
    _upload(client, write_key, s, vecs)
    q = vecs[11] + 0.05
    want = _ids(_json(client, write_key, model_id=s.model_id, layer=0, k=5, vector=q.tolist()))
    assert want[0] == s.concept_ids[11]
    f32 = post_binary_nearest(
        client, write_key, q.astype("<f4").tobytes(), model_id=s.model_id, layer=0, k=5
    )
    f16 = post_binary_nearest(
        client,
        write_key,
        q.astype("<f2").tobytes(),
        model_id=s.model_id,
        layer=0,
        k=5,
        dtype="float16",
    )
    assert _ids(f32) == want and _ids(f16) == want  # stored as float16 anyway
    assert f32.json()["exact"] is False
    sims = [r["similarity"] for r in f32.json()["results"]]
    assert sims == sorted(sims, reverse=True)
    exact = post_binary_nearest(
        client, write_key, q.astype("<f4").tobytes(), model_id=s.model_id, layer=0, k=5, exact=True
    )
    assert _ids(exact) == want and exact.json()["exact"] is True


def test_binary_body_errors_name_the_field(client: Any, app: Any, write_key: str) -> None:
    s = seed(app, n_concepts=3, hidden_size=8, num_layers=1)
    _upload(client, write_key, s, activation_like(3, 8))
    ok = np.full(8, 0.5, "<f4")
    nan = ok.copy()
    nan[3] = np.nan
    inf16 = np.full(8, 0.5, "<f2")
    inf16[5] = np.inf
    where = {"model_id": s.model_id, "layer": 0, "k": 2}
    cases: list[tuple[bytes, dict[str, Any], int, str, str]] = [
        (np.full(9, 0.5, "<f4").tobytes(), {}, 422, "dimension_mismatch", "vector"),
        (ok.astype("<f2").tobytes(), {}, 422, "dimension_mismatch", "vector"),  # f16 as f32
        (nan.tobytes(), {}, 422, "non_finite", "vector.3"),
        (inf16.tobytes(), {"dtype": "float16"}, 422, "non_finite", "vector.5"),
        (np.full(8, 1e6, "<f4").tobytes(), {}, 422, "non_finite", "vector.0"),
        (np.zeros(8, "<f4").tobytes(), {}, 422, "validation_error", "vector"),
        (ok.tobytes(), {"dtype": "int8"}, 422, "validation_error", "dtype"),
        (ok.tobytes(), {"dtype": "float64"}, 422, "validation_error", "dtype"),
        (ok.tobytes()[:-1], {}, 422, "validation_error", "vector"),
        (b"", {}, 400, "empty_body", "vector"),
        (np.full(16001, 0.5, "<f4").tobytes(), {}, 422, "validation_error", "vector"),
        (ok.tobytes(), {"k": 0}, 422, "validation_error", "k"),
        (ok.tobytes(), {"layer": "x"}, 422, "validation_error", "layer"),
        (ok.tobytes(), {"model_id": 10**9}, 404, "not_found", "model_id"),
        (ok.tobytes(), {"vector": "1"}, 422, "validation_error", "vector"),  # unknown param
    ]
    for body, change, status, code, field in cases:
        r = post_binary_nearest(client, write_key, body, **{**where, **change})
        assert r.status_code == status, (change, len(body), r.text)
        assert (error_of(r)["code"], error_of(r)["field"]) == (code, field), (change, r.text)
    r = post_binary_nearest(client, write_key, ok.tobytes(), layer=0)
    assert (r.status_code, error_of(r)["field"]) == (422, "model_id")
    r = client.post(
        "/v1/search/nearest",
        content=ok.tobytes(),
        headers={**auth(write_key), "Content-Type": "text/plain"},
    )
    assert (r.status_code, error_of(r)["code"]) == (415, "unsupported_media_type")
    r = client.post(
        "/v1/search/nearest",
        params=where,
        content=ok.tobytes(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert (r.status_code, error_of(r)["code"]) == (401, "unauthenticated")
    r = client.post(
        "/v1/search/nearest",
        content=b'{"model_id": 1, "layer": 0, "vector": [0.5, ',
        headers={**auth(write_key), "Content-Type": "application/json"},
    )
    assert (r.status_code, error_of(r)["code"]) == (422, "validation_error")
    assert _ids(
        post_binary_nearest(client, write_key, ok.tobytes(), **where)
    )  # the good request works


def test_revoking_a_key_stops_it_at_once(
    client: Any, app: Any, write_key: str, admin_key: str
) -> None:
    s = seed(app, n_concepts=4, hidden_size=8, num_layers=1)
    _upload(client, write_key, s, activation_like(4, 8))
    body = {"model_id": s.model_id, "layer": 0, "k": 1, "vector": [0.5] * 8}
    assert _json(client, write_key, **body).status_code == 200  # now cached
    me = client.get("/v1/me", headers=auth(write_key))
    assert me.status_code == 200
    keys = client.get("/v1/keys", headers=auth(admin_key)).json()["items"]
    write_id = next(k["id"] for k in keys if k["role"] == "write")
    assert client.delete(f"/v1/keys/{write_id}", headers=auth(admin_key)).status_code == 200
    r = _json(client, write_key, **body)
    assert (r.status_code, error_of(r)["code"]) == (401, "unauthenticated")
    assert client.get("/v1/me", headers=auth(write_key)).status_code == 401


def test_a_key_revoked_elsewhere_stops_within_the_cache_bound(
    client: Any, app: Any, write_key: str, database_url: str
) -> None:
    from pace_service.api.key_cache import KeyCache

    now = [1000.0]
    app.state.key_cache = KeyCache(5.0, clock=lambda: now[0])
    s = seed(app, n_concepts=4, hidden_size=8, num_layers=1)
    _upload(client, write_key, s, activation_like(4, 8))
    body = {"model_id": s.model_id, "layer": 0, "k": 1, "vector": [0.5] * 8}
    assert _json(client, write_key, **body).status_code == 200
    # another service process (here: SQL) revokes it
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        done = conn.execute("UPDATE api_keys SET revoked_at = now() WHERE role = 'write'")
        assert done.rowcount == 1
    now[0] += 4.9
    assert _json(client, write_key, **body).status_code == 200  # trusted for 5 s
    now[0] += 0.2
    r = _json(client, write_key, **body)
    assert (r.status_code, error_of(r)["code"]) == (401, "unauthenticated")
    assert client.get("/v1/me", headers=auth(write_key)).status_code == 401
    assert _json(client, "pace_unknown", **body).status_code == 401


def test_repeated_searches_take_the_one_round_trip_path_and_stay_correct(
    client: Any, app: Any, write_key: str
) -> None:
    s = seed(app, n_concepts=40, hidden_size=DIM, num_layers=1)
    vecs = activation_like(40, DIM)
    _upload(client, write_key, s, vecs)
    first = [
        _ids(_json(client, write_key, model_id=s.model_id, layer=0, k=3, vector=v.tolist()))
        for v in vecs[:5]
    ]
    again = [
        _ids(_json(client, write_key, model_id=s.model_id, layer=0, k=3, vector=v.tolist()))
        for v in vecs[:5]
    ]
    assert first == again and [f[0] for f in first] == s.concept_ids[:5]
    # the guess must never hide what changed: a second recipe on the layer, a bad vector
    other_recipe = create_pc1_recipe(client, auth(write_key))
    _upload(client, write_key, s, activation_like(40, DIM, seed=3), recipe_id=other_recipe)
    r = _json(client, write_key, model_id=s.model_id, layer=0, k=3, vector=vecs[0].tolist())
    assert (r.status_code, error_of(r)["field"]) == (422, "recipe_id")
    bad = vecs[0].copy()
    bad[7] = 1e6
    r = _json(
        client,
        write_key,
        model_id=s.model_id,
        layer=0,
        k=3,
        recipe_id=s.recipe_id,
        vector=bad.tolist(),
    )
    assert (r.status_code, error_of(r)["field"]) == (422, "vector.7")


def test_a_search_survives_dropped_connections(
    client: Any, app: Any, write_key: str, database_url: str
) -> None:
    s = seed(app, n_concepts=10, hidden_size=8, num_layers=1)
    _upload(client, write_key, s, activation_like(10, 8))
    body = {"model_id": s.model_id, "layer": 0, "k": 2, "vector": [0.5] * 8}
    want = _ids(_json(client, write_key, **body))  # the thread path's pool holds one
    assert _ids(_json(client, write_key, **body)) == want  # and the event loop's pool
    with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as conn:
        killed = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    assert _ids(_json(client, write_key, **body)) == want
