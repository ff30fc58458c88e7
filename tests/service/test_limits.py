"""Limits: every bound is a clear 4xx naming its field, and stalled bodies time out.

The module's ``settings`` are tightened (1 s body idle timeout, 2,000 B/s minimum
rate, 4 vectors per upload, 1 MiB JSON bodies) so that the bounds are cheap to
reach; the timeouts are tested over real sockets against a live uvicorn server.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import numpy as np
import pytest
from helpers import auth, error_of
from vectors_support import seed, upload_body

IDLE_S = 1.0
INT64_MAX = 2**63 - 1


@pytest.fixture
def settings(settings: Any) -> Any:
    settings.upload_idle_timeout_s = IDLE_S
    settings.upload_min_bytes_per_s = 2000
    settings.max_upload_vectors = 4
    settings.max_json_bytes = 1 << 20
    return settings


def _field_error(response: Any, status: int = 422) -> tuple[str, str | None]:
    assert response.status_code == status, response.text
    error = error_of(response)
    return error["code"], error["field"]


# -- per-field bounds --------------------------------------------------------------

LONG = {"concept": 501, "set": 301, "task": 301, "model": 301, "tag": 101, "stimulus": 8001}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/concepts", {"name": "x" * LONG["concept"]}, "name"),
        ("/v1/concepts", {"name": "c", "description": "x" * 10_001}, "description"),
        ("/v1/concepts", {"name": "c", "tags": ["x" * LONG["tag"]]}, "tags.0"),
        ("/v1/concepts", {"name": "c", "tags": [f"t{i}" for i in range(101)]}, "tags"),
        ("/v1/concepts", {"name": "c", "stimuli": [{"text": "x" * 8001}]}, "stimuli.0.text"),
        ("/v1/concept-sets", {"name": "x" * LONG["set"]}, "name"),
        ("/v1/tasks", {"name": "x" * LONG["task"]}, "name"),
        ("/v1/tasks", {"name": "t", "description": "x" * 20_001}, "description"),
        (
            "/v1/models",
            {"hf_id": "x" * 301, "hidden_size": 8, "num_layers": 2, "architecture": "a"},
            "hf_id",
        ),
        (
            "/v1/models",
            {"hf_id": "m", "hidden_size": 16_001, "num_layers": 2, "architecture": "a"},
            "hidden_size",
        ),
        (
            "/v1/models",
            {"hf_id": "m", "hidden_size": 8, "num_layers": 10_001, "architecture": "a"},
            "num_layers",
        ),
        ("/v1/recipes", {"code_version": "x" * 101}, "code_version"),
        ("/v1/search/nearest", {"model_id": 1, "layer": 0, "k": 1001, "vector": [1.0]}, "k"),
        ("/v1/search/nearest", {"model_id": 1, "layer": 0, "k": 0, "vector": [1.0]}, "k"),
        ("/v1/search/nearest", {"model_id": 1, "layer": 10_000, "vector": [1.0]}, "layer"),
        ("/v1/search/nearest", {"model_id": 1, "layer": 0, "vector": [0.5] * 16_001}, "vector"),
        (
            "/v1/dictionaries",
            {"concept_set_version_id": 1, "model_id": 1, "recipe_id": 1, "layers": [0] * 1001},
            "layers",
        ),
        (
            "/v1/dictionaries",
            {"concept_set_version_id": 1, "model_id": 1, "recipe_id": 1, "layers": [10_000]},
            "layers.0",
        ),
        (
            "/v1/models/1/vectors:present",
            {"recipe_id": 1, "layers": list(range(1001)), "concept_ids": [1]},
            "layers",
        ),
        (
            "/v1/partitions",
            {"task_id": INT64_MAX + 1, "concept_set_version_id": 1, "labels": []},
            "task_id",
        ),
        ("/v1/concept-set-versions/1/concepts", {"concept_ids": [0]}, "concept_ids.0"),
        ("/v1/concept-sets/1/versions", {"from_version": 2**31}, "from_version"),
        ("/v1/concepts", {"name": "a\x00b"}, "name"),
        (
            "/v1/concepts",
            {"name": "c", "stimuli": [{"text": "t", "provenance": {"k": "\x00"}}]},
            "stimuli.0.provenance",
        ),
    ],
)
def test_each_body_bound_names_its_field(
    client: Any, write_key: str, path: str, body: Any, field: str
) -> None:
    response = client.post(path, json=body, headers=auth(write_key))
    assert _field_error(response) == ("validation_error", field)


def test_list_bounds_of_ids(client: Any, write_key: str) -> None:
    too_many = client.post(
        "/v1/concept-set-versions/1/concepts",
        json={"concept_ids": list(range(1, 100_002))},
        headers=auth(write_key),
    )
    assert _field_error(too_many) == ("validation_error", "concept_ids")


@pytest.mark.parametrize(
    ("url", "field"),
    [
        (f"/v1/concepts/{INT64_MAX + 1}", "concept_id"),
        ("/v1/concepts/0", "concept_id"),
        (f"/v1/concept-set-versions/1/diff/{INT64_MAX + 1}", "b"),
        (f"/v1/concepts?concept_set_version_id={INT64_MAX + 1}", "concept_set_version_id"),
        (f"/v1/concepts?offset={INT64_MAX + 1}", "offset"),
        ("/v1/concepts?limit=1001", "limit"),
        ("/v1/concepts?name=" + "x" * 501, "name"),
        ("/v1/concepts?tag=%00", "tag"),
        ("/v1/models?hf_id=%00", "hf_id"),
        ("/v1/concept-sets/1/versions/" + "9" * 21, "ref"),
        (f"/v1/partitions/latest?task_id={INT64_MAX + 1}", "task_id"),
    ],
)
def test_each_parameter_bound_names_its_field(
    client: Any, read_key: str, url: str, field: str
) -> None:
    response = client.get(url, headers=auth(read_key))
    assert _field_error(response) == ("validation_error", field)


@pytest.mark.parametrize("ids_first", [False, True])
def test_vectors_per_upload(client: Any, app: Any, write_key: str, ids_first: bool) -> None:
    s = seed(app, n_concepts=5, hidden_size=8)
    vectors = np.ones((5, 8), np.float32)
    body = upload_body(vectors, s.concept_ids, 0, ids_first=ids_first)
    response = client.post(
        f"/v1/models/{s.model_id}/vectors?recipe_id={s.recipe_id}",
        content=body,
        headers={**auth(write_key), "content-type": "application/octet-stream"},
    )
    assert _field_error(response, 413) == ("payload_too_large", "vectors")
    assert "at most 4" in error_of(response)["message"]
    assert _atoms(app) == 0
    ok = client.post(
        f"/v1/models/{s.model_id}/vectors?recipe_id={s.recipe_id}",
        content=upload_body(vectors[:4], s.concept_ids[:4], 0, ids_first=ids_first),
        headers={**auth(write_key), "content-type": "application/octet-stream"},
    )
    assert ok.status_code == 200 and ok.json()["inserted"] == 4


# -- stalled and trickled bodies, over real sockets ------------------------------------


def _atoms(app: Any) -> int:
    from sqlalchemy import text

    with app.state.session_factory() as session:
        return int(session.execute(text("SELECT count(*) FROM atoms")).scalar_one())


def _open(base_url: str) -> socket.socket:
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10 * IDLE_S)
    return sock


def _request_head(path: str, key: str, content_type: str, length: int | None) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: test",
        f"Authorization: Bearer {key}",
        f"Content-Type: {content_type}",
        f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_response(sock: socket.socket) -> tuple[int, bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, head, rest


def _assert_timed_out(status: int, head: bytes, body: bytes, elapsed: float) -> None:
    import json

    assert status == 408, (status, body)
    error = json.loads(body)["error"]
    assert error["code"] == "request_timeout" and error["field"] == "body", error
    assert b"connection: close" in head.lower()
    assert IDLE_S * 0.9 <= elapsed < IDLE_S * 8, elapsed


@pytest.mark.parametrize("ids_first", [False, True], ids=["buffered", "streamed-into-copy"])
def test_a_stalled_upload_times_out_and_stores_nothing(
    live_service: tuple[str, str], app: Any, ids_first: bool
) -> None:
    base_url, key = live_service
    s = seed(app, n_concepts=4, hidden_size=8)
    body = upload_body(np.ones((4, 8), np.float32), s.concept_ids, 0, ids_first=ids_first)
    path = f"/v1/models/{s.model_id}/vectors?recipe_id={s.recipe_id}"
    with _open(base_url) as sock:
        sock.sendall(_request_head(path, key, "application/octet-stream", len(body)))
        sock.sendall(body[: len(body) - 40])  # the header and ids, part of the vectors
        started = time.monotonic()
        status, head, payload = _read_response(sock)
        _assert_timed_out(status, head, payload, time.monotonic() - started)
        assert sock.recv(1) == b""  # the server closed the connection
    assert _atoms(app) == 0
    with _open(base_url) as sock:  # the same upload, sent whole, is stored
        sock.sendall(_request_head(path, key, "application/octet-stream", len(body)) + body)
        status, _, payload = _read_response(sock)
    assert status == 200, payload
    assert _atoms(app) == 4


def test_a_trickled_body_times_out(live_service: tuple[str, str], app: Any) -> None:
    base_url, key = live_service
    body = b'{"name": "trickled", "description": "' + b"x" * 400 + b'"}'
    with _open(base_url) as sock:
        sock.sendall(_request_head("/v1/concepts", key, "application/json", len(body)))
        started = time.monotonic()
        sock.settimeout(0.25)
        status = None
        for byte in body:  # one byte every 0.2 s: never idle for 1 s, but too slow
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.2)
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break
            except TimeoutError:
                continue
        sock.settimeout(10)
        status, head, payload = _read_response(sock)
        elapsed = time.monotonic() - started
    _assert_timed_out(status, head, payload, elapsed)
    assert elapsed < 4 * IDLE_S  # 1 s of grace + a few bytes at 2,000 B/s: not 80 s


def test_a_stalled_chunked_json_body_times_out(live_service: tuple[str, str], app: Any) -> None:
    base_url, key = live_service
    with _open(base_url) as sock:
        sock.sendall(_request_head("/v1/concepts", key, "application/json", None))
        part = b'{"name": "stall'
        sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")  # one chunk, then nothing
        started = time.monotonic()
        status, head, payload = _read_response(sock)
        _assert_timed_out(status, head, payload, time.monotonic() - started)
    from sqlalchemy import text

    with app.state.session_factory() as session:
        assert session.execute(text("SELECT count(*) FROM concepts")).scalar_one() == 0


def test_a_chunked_body_over_the_limit_is_refused(live_service: tuple[str, str]) -> None:
    base_url, key = live_service
    chunk = b"x" * (128 << 10)
    with _open(base_url) as sock:
        sock.sendall(_request_head("/v1/concepts", key, "application/json", None))
        try:
            for _ in range(10):  # 1.25 MiB > the module's 1 MiB JSON limit; no Content-Length
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        except OSError:
            pass  # the server answered and closed while we were still sending
        status, _, payload = _read_response(sock)
    assert status == 413, payload


def test_a_slow_but_steady_body_is_accepted(live_service: tuple[str, str]) -> None:
    base_url, key = live_service
    body = b'{"name": "steady"}'
    with _open(base_url) as sock:
        sock.sendall(_request_head("/v1/concepts", key, "application/json", len(body)))
        for part in (body[:9], body[9:]):
            time.sleep(IDLE_S * 0.4)  # pauses under the idle bound, done within the grace
            sock.sendall(part)
        status, _, payload = _read_response(sock)
    assert status == 201, payload


def test_uvicorn_timeouts_come_from_settings(monkeypatch: Any, tmp_path: Any) -> None:
    from pace_service import cli
    from pace_service.core.config import Settings

    seen: dict[str, Any] = {}
    monkeypatch.setattr(cli, "_prepare", lambda settings: ("postgresql://u@h/db", None))
    monkeypatch.setattr("pace_service.main.create_app", lambda settings, on_shutdown: None)
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: seen.update(kwargs))
    monkeypatch.setenv("PACE_KEEP_ALIVE_TIMEOUT_S", "7")
    monkeypatch.setenv("PACE_DATA_DIR", str(tmp_path))
    assert Settings().upload_idle_timeout_s == 30.0
    assert cli.main(["serve", "--port", "1"]) == 0
    assert seen["timeout_keep_alive"] == 7
    assert seen["timeout_graceful_shutdown"] == 30


def test_a_raw_driver_error_is_mapped_like_a_wrapped_one() -> None:
    """The binary COPY and search paths use psycopg directly: a data error there is a
    422, as through SQLAlchemy, not a 500 (schemathesis found 'bigint out of range')."""
    import psycopg
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from pace_service.api.errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise")
    def _raise() -> None:
        raise psycopg.errors.NumericValueOutOfRange("bigint out of range")

    response = TestClient(app, raise_server_exceptions=False).get("/raise")
    assert _field_error(response) == ("validation_error", None)


def test_nearest_search_buffers_at_most_its_own_bound(client: Any, read_key: str) -> None:
    """A binary body may be 1 GiB for uploads, but search reads its body into memory:
    it stops at 1 MiB with 413 instead."""
    from pace_service.api.routes.search import MAX_BODY_BYTES

    def chunks() -> Any:
        for _ in range(MAX_BODY_BYTES // (64 << 10) + 1):
            yield b"\x00" * (64 << 10)

    response = client.post(
        "/v1/search/nearest?model_id=1&layer=0",
        content=chunks(),
        headers={**auth(read_key), "content-type": "application/octet-stream"},
    )
    assert _field_error(response, 413) == ("payload_too_large", "body")
