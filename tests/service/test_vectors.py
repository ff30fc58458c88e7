"""Binary vector uploads: storage round trip, write-once semantics, and every bad input."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, MutableMapping
from typing import Any

import numpy as np
import psycopg
import pytest
from helpers import auth, error_of
from vectors_support import activation_like, safetensors_bytes, seed, upload_body


def _url(model_id: int, recipe_id: int) -> str:
    return f"/v1/models/{model_id}/vectors?recipe_id={recipe_id}"


def _stored(database_url: str, model_id: int) -> dict[tuple[int, int], np.ndarray[Any, Any]]:
    from pgvector.psycopg import register_vector

    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        register_vector(conn)
        rows = conn.execute(
            "SELECT layer, concept_id, vector FROM atoms WHERE model_id = %s", (model_id,)
        ).fetchall()
    return {(int(r[0]), int(r[1])): r[2].to_numpy() for r in rows}


@pytest.mark.parametrize("ids_first", [False, True], ids=["buffered", "streamed"])
def test_upload_round_trips_and_repeats_are_skipped(
    client: Any, app: Any, write_key: str, database_url: str, ids_first: bool, monkeypatch: Any
) -> None:
    from pace_service.store import upload_stream

    monkeypatch.setattr(upload_stream, "_BATCH_BYTES", 1000)  # many COPY batches
    s = seed(app, n_concepts=50, hidden_size=64, num_layers=5)
    vecs = activation_like(200, 64).astype(np.float16)
    ids = [s.concept_ids[i % 50] for i in range(200)]
    layers = [i // 50 for i in range(200)]
    r = client.post(
        _url(s.model_id, s.recipe_id),
        content=upload_body(vecs, ids, layers),
        headers=auth(write_key),
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"inserted": 200, "skipped": 0}
    stored = _stored(database_url, s.model_id)
    assert len(stored) == 200
    for i in (0, 77, 199):
        np.testing.assert_array_equal(stored[(layers[i], ids[i])], vecs[i])

    # The same rows again plus 10 new ones: identical rows are skipped, not duplicated.
    more = activation_like(10, 64, seed=3).astype(np.float16)
    body = upload_body(
        np.concatenate([vecs, more]),
        ids + s.concept_ids[:10],
        layers + [4] * 10,
        ids_first=ids_first,
    )
    r = client.post(_url(s.model_id, s.recipe_id), content=body, headers=auth(write_key))
    assert r.json() == {"inserted": 10, "skipped": 200}
    assert len(_stored(database_url, s.model_id)) == 210


@pytest.mark.parametrize("dtype", ["F32", "BF16"])
def test_float32_and_bfloat16_are_stored_as_float16(
    client: Any, app: Any, write_key: str, database_url: str, dtype: str
) -> None:
    s = seed(app, n_concepts=3, hidden_size=16)
    v32 = activation_like(3, 16)
    if dtype == "BF16":
        bits = (v32.view(np.uint32) >> 16).astype(np.uint16)
        tensor: Any = ("BF16", bits)
        expect = (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float16)
    else:
        tensor, expect = v32, v32.astype(np.float16)
    body = safetensors_bytes(
        {
            "vectors": tensor,
            "concept_ids": np.asarray(s.concept_ids, np.int64),
            "layers": np.zeros(3, np.int64),
        }
    )
    r = client.post(_url(s.model_id, s.recipe_id), content=body, headers=auth(write_key))
    assert r.json() == {"inserted": 3, "skipped": 0}
    stored = _stored(database_url, s.model_id)
    for i, cid in enumerate(s.concept_ids):
        np.testing.assert_array_equal(stored[(0, cid)], expect[i])


@pytest.mark.parametrize("ids_first", [False, True], ids=["buffered", "streamed"])
def test_a_different_vector_for_a_stored_key_is_a_conflict_and_stores_nothing(
    client: Any, app: Any, write_key: str, database_url: str, ids_first: bool
) -> None:
    s = seed(app, n_concepts=4, hidden_size=8)
    vecs = activation_like(2, 8).astype(np.float16)
    client.post(
        _url(s.model_id, s.recipe_id),
        content=upload_body(vecs, s.concept_ids[:2], 0),
        headers=auth(write_key),
    )
    changed = vecs.copy()
    changed[1, 3] += 1
    # two new rows first, then the conflicting one: the whole request must roll back
    body = upload_body(
        np.concatenate([activation_like(2, 8, seed=5).astype(np.float16), changed]),
        s.concept_ids[2:4] + s.concept_ids[:2],
        0,
        ids_first=ids_first,
    )
    r = client.post(_url(s.model_id, s.recipe_id), content=body, headers=auth(write_key))
    assert r.status_code == 409
    err = error_of(r)
    assert err["code"] == "conflict" and err["field"] == "vectors.3"
    assert set(_stored(database_url, s.model_id)) == {(0, s.concept_ids[0]), (0, s.concept_ids[1])}


def _bad_bodies(ids: list[int]) -> Iterator[tuple[str, bytes, int, str, str | None]]:
    good = activation_like(2, 8).astype(np.float16)
    nan = good.copy()
    nan[1, 2] = np.nan
    inf32 = good.astype(np.float32)
    inf32[0, 0] = np.inf
    huge = good.astype(np.float32)
    huge[1, 7] = 1e6  # beyond float16
    yield (
        "dimension",
        upload_body(activation_like(2, 9), ids, 0),
        422,
        "dimension_mismatch",
        "vectors",
    )
    yield "nan", upload_body(nan, ids, 0), 422, "non_finite", "vectors.1"
    yield "inf", upload_body(inf32, ids, 0), 422, "non_finite", "vectors.0"
    yield "overflow", upload_body(huge, ids, 0), 422, "non_finite", "vectors.1"
    yield "layer", upload_body(good, ids, [0, 4]), 422, "validation_error", "layers.1"
    yield "negative layer", upload_body(good, ids, [-1, 0]), 422, "validation_error", "layers.0"
    yield "repeat", upload_body(good, [ids[0], ids[0]], 0), 422, "validation_error", "concept_ids"
    yield "unknown concept", upload_body(good, [ids[0], 10**12], 0), 404, "not_found", "concept_ids"
    yield "garbage", b"\x00\x01definitely not safetensors", 400, "malformed_safetensors", "body"
    full = upload_body(good, ids, 0)
    yield "truncated", full[:-5], 400, "malformed_safetensors", "layers"
    missing = safetensors_bytes({"vectors": good, "concept_ids": np.asarray(ids, np.int64)})
    yield "missing tensor", missing, 400, "malformed_safetensors", "layers"
    short = safetensors_bytes(
        {
            "vectors": good,
            "concept_ids": np.asarray(ids[:1], np.int64),
            "layers": np.zeros(2, np.int64),
        }
    )
    yield "short ids", short, 400, "malformed_safetensors", "concept_ids"
    flat = safetensors_bytes(
        {
            "vectors": good.ravel(),
            "concept_ids": np.asarray(ids, np.int64),
            "layers": np.zeros(2, np.int64),
        }
    )
    yield "1-D vectors", flat, 400, "malformed_safetensors", "vectors"
    floats = safetensors_bytes(
        {
            "vectors": good,
            "concept_ids": np.asarray(ids, np.float32),
            "layers": np.zeros(2, np.int64),
        }
    )
    yield "float ids", floats, 400, "malformed_safetensors", "concept_ids"


def test_bad_uploads_get_precise_errors_and_store_nothing(
    client: Any, app: Any, write_key: str, database_url: str
) -> None:
    s = seed(app, n_concepts=2, hidden_size=8, num_layers=4)
    for name, body, status, code, field in _bad_bodies(s.concept_ids):
        r = client.post(_url(s.model_id, s.recipe_id), content=body, headers=auth(write_key))
        assert r.status_code == status, (name, r.text)
        err = error_of(r)
        assert (err["code"], err["field"]) == (code, field), (name, err)
    assert _stored(database_url, s.model_id) == {}


def test_empty_unknown_ids_and_roles(client: Any, app: Any, write_key: str, read_key: str) -> None:
    s = seed(app, n_concepts=2, hidden_size=8)
    body = upload_body(activation_like(2, 8), s.concept_ids, 0)
    r = client.post(_url(s.model_id, s.recipe_id), content=b"", headers=auth(write_key))
    assert (r.status_code, error_of(r)["code"]) == (400, "empty_body")
    r = client.post(_url(10**9, s.recipe_id), content=body, headers=auth(write_key))
    assert (r.status_code, error_of(r)["field"]) == (404, "model_id")
    r = client.post(_url(s.model_id, 10**9), content=body, headers=auth(write_key))
    assert (r.status_code, error_of(r)["field"]) == (404, "recipe_id")
    r = client.post(f"/v1/models/{s.model_id}/vectors", content=body, headers=auth(write_key))
    assert (r.status_code, error_of(r)["field"]) == (422, "recipe_id")
    r = client.post(_url(s.model_id, s.recipe_id), content=body, headers=auth(read_key))
    assert (r.status_code, error_of(r)["code"]) == (403, "forbidden")
    r = client.post(_url(s.model_id, s.recipe_id), content=body)
    assert r.status_code == 401


def test_other_namespaces_concepts(client: Any, app: Any, make_key: Any) -> None:
    private = seed(app, namespace="team-b", n_concepts=2, hidden_size=8, prefix="secret")
    public = seed(app, namespace="team-b", n_concepts=2, hidden_size=8, prefix="open", public=True)
    key_a = make_key("team-a", "write")
    url = _url(private.model_id, private.recipe_id)
    vecs = activation_like(2, 8)
    r = client.post(url, content=upload_body(vecs, private.concept_ids, 0), headers=auth(key_a))
    assert (r.status_code, error_of(r)["code"], error_of(r)["field"]) == (
        404,
        "not_found",
        "concept_ids",
    )
    r = client.post(url, content=upload_body(vecs, public.concept_ids, 0), headers=auth(key_a))
    assert (r.status_code, error_of(r)["code"]) == (403, "forbidden")


def test_streamed_body_over_the_limit_is_refused_while_streaming(
    settings: Any, write_key: str
) -> None:
    """Driven at the ASGI level: count how much of a chunked body the app pulls."""
    import asyncio

    from pace_service.main import create_app

    settings.max_upload_bytes = 64 * 1024
    application = create_app(settings)
    s = seed(application, n_concepts=1, hidden_size=8)
    chunk, n_chunks = 16 * 1024, 1000  # 16 MB if it were all read
    pulled = 0
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"\0" * chunk, "more_body": pulled < n_chunks}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/v1/models/{s.model_id}/vectors",
        "raw_path": f"/v1/models/{s.model_id}/vectors".encode(),
        "query_string": f"recipe_id={s.recipe_id}".encode(),
        "root_path": "",
        "headers": [
            (b"content-type", b"application/octet-stream"),
            (b"transfer-encoding", b"chunked"),
            (b"authorization", f"Bearer {write_key}".encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    try:
        asyncio.run(application(scope, receive, send))
    finally:
        application.state.engine.dispose()
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 413, body
    assert b"payload_too_large" in body
    assert pulled <= 64 * 1024 // chunk + 1  # stopped right after the limit


def test_declared_length_over_the_limit_is_refused(settings: Any, write_key: str) -> None:
    from fastapi.testclient import TestClient

    from pace_service.main import create_app

    settings.max_upload_bytes = 64 * 1024
    application = create_app(settings)
    s = seed(application, n_concepts=1, hidden_size=8)
    try:
        with TestClient(application) as c:
            body = upload_body(activation_like(1, 8), s.concept_ids, 0) + b" " * 70_000
            r = c.post(_url(s.model_id, s.recipe_id), content=body, headers=auth(write_key))
            assert (r.status_code, error_of(r)["code"]) == (413, "payload_too_large")
    finally:
        application.state.engine.dispose()


def test_present_lists_concepts_with_all_layers(client: Any, app: Any, write_key: str) -> None:
    s = seed(app, n_concepts=3, hidden_size=8)
    c0, c1, c2 = s.concept_ids
    body = upload_body(activation_like(3, 8), [c0, c0, c1], [0, 1, 0])
    client.post(_url(s.model_id, s.recipe_id), content=body, headers=auth(write_key))
    url = f"/v1/models/{s.model_id}/vectors:present"
    r = client.post(
        url,
        json={"recipe_id": s.recipe_id, "layers": [0, 1], "concept_ids": [c0, c1, c2]},
        headers=auth(write_key),
    )
    assert r.json() == {"present": [c0]}
    r = client.post(
        url,
        json={"recipe_id": s.recipe_id, "layers": [0], "concept_ids": [c0, c1, c2]},
        headers=auth(write_key),
    )
    assert r.json() == {"present": [c0, c1]}


@pytest.mark.parametrize("dim", [4096, 5120])
def test_upload_builds_the_search_index_above_the_halfvec_hnsw_limit(
    client: Any, app: Any, write_key: str, database_url: str, dim: int
) -> None:
    s = seed(app, n_concepts=4, hidden_size=dim, num_layers=2, hf_id=f"test/d{dim}")
    body = upload_body(activation_like(4, dim).astype(np.float16), s.concept_ids, 1)
    r = client.post(_url(s.model_id, s.recipe_id), content=body, headers=auth(write_key))
    assert r.json() == {"inserted": 4, "skipped": 0}
    # TestClient returns after the background task: the index must be there and valid.
    name = f"ix_atoms_bq_m{s.model_id}_l1_r{s.recipe_id}"
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        row = conn.execute(
            "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_class c "
            "JOIN pg_index i ON i.indexrelid = c.oid WHERE c.relname = %s",
            (name,),
        ).fetchone()
    assert row is not None and row[0] is True
    assert f"bit({dim})" in row[1] and "hnsw" in row[1]


def test_streamed_uploads_fail_mid_stream_with_the_same_errors(
    client: Any, app: Any, write_key: str, database_url: str, monkeypatch: Any
) -> None:
    """Errors found after the COPY has started still roll everything back."""
    from pace_service.store import upload_stream

    monkeypatch.setattr(upload_stream, "_BATCH_BYTES", 64)  # one 32-dim row per batch
    s = seed(app, n_concepts=40, hidden_size=32, num_layers=2)
    vecs = activation_like(40, 32).astype(np.float16)
    bad = vecs.copy()
    bad[33, 5] = np.inf
    url = _url(s.model_id, s.recipe_id)
    r = client.post(
        url, content=upload_body(bad, s.concept_ids, 0, ids_first=True), headers=auth(write_key)
    )
    assert (r.status_code, error_of(r)["code"], error_of(r)["field"]) == (
        422,
        "non_finite",
        "vectors.33",
    )
    full = upload_body(vecs, s.concept_ids, 0, ids_first=True)
    r = client.post(url, content=full[:-100], headers=auth(write_key))
    assert (r.status_code, error_of(r)["code"], error_of(r)["field"]) == (
        400,
        "malformed_safetensors",
        "vectors",
    )
    r = client.post(
        url,
        content=upload_body(vecs, s.concept_ids, [0, 2] * 20, ids_first=True),
        headers=auth(write_key),
    )
    assert (r.status_code, error_of(r)["field"]) == (422, "layers.1")
    assert _stored(database_url, s.model_id) == {}
    r = client.post(url, content=full, headers=auth(write_key))
    assert r.json() == {"inserted": 40, "skipped": 0}
    stored = _stored(database_url, s.model_id)
    np.testing.assert_array_equal(stored[(0, s.concept_ids[39])], vecs[39])


def test_the_sdk_layout_is_streamed(app: Any) -> None:
    """safetensors.numpy.save puts int64 tensors before float16 ones: the streaming case."""
    from safetensors.numpy import save

    from pace_service.store.upload_stream import StreamPlan, plan_stream

    body = save(
        {
            "vectors": np.zeros((3, 8), np.float16),
            "concept_ids": np.arange(3, dtype=np.int64),
            "layers": np.zeros(3, np.int64),
        }
    )
    plan = plan_stream(body, hidden_size=8)
    assert isinstance(plan, StreamPlan) and plan.m == 3 and plan.concept_ids.tolist() == [0, 1, 2]
    assert plan_stream(body, hidden_size=9) is None  # wrong dimension: buffered, precise 422
    assert (
        plan_stream(upload_body(np.zeros((3, 8), np.float16), [0, 1, 2], 0), hidden_size=8) is None
    )


@pytest.mark.parametrize("ids_first", [False, True], ids=["buffered", "streamed"])
def test_an_interrupted_upload_stores_nothing(
    app: Any, write_key: str, database_url: str, ids_first: bool, monkeypatch: Any
) -> None:
    """The client goes away after half the body (ASGI ``http.disconnect``)."""
    import asyncio

    from pace_service.store import upload_stream

    monkeypatch.setattr(upload_stream, "_BATCH_BYTES", 256)  # rows reach the COPY early
    s = seed(app, n_concepts=64, hidden_size=32)
    body = upload_body(
        activation_like(64, 32).astype(np.float16), s.concept_ids, 0, ids_first=ids_first
    )
    parts = [body[i : i + 512] for i in range(0, len(body) // 2, 512)]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if parts:
            return {"type": "http.request", "body": parts.pop(0), "more_body": True}
        await asyncio.sleep(0.05)
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    path = f"/v1/models/{s.model_id}/vectors"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": f"recipe_id={s.recipe_id}".encode(),
        "root_path": "",
        "headers": [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Bearer {write_key}".encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    with contextlib.suppress(Exception):
        asyncio.run(app(scope, receive, send))
    assert not parts  # the route read the body up to the disconnect
    assert not any(m.get("status") == 200 for m in sent)
    assert _stored(database_url, s.model_id) == {}
