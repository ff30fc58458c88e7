"""The Client against a scripted HTTP server on loopback: error mapping, retries,
configuration, uploads and dictionary downloads.

The server is real (``http.server`` in a thread); only its answers are scripted, so
that faults the real service never produces on purpose (503s, 429s, a connection
dropped mid-body, a wrong ETag) can be tested. ``test_client_live.py`` runs the
Client against the real service.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from test_cache import make_dictionary_bytes

from pace import errors
from pace.client import Client, Me, RetryPolicy
from pace.client._retry import parse_retry_after
from pace.dictionary import ConceptDictionary


# -- the scripted server ---------------------------------------------------------------
@dataclass
class Reply:
    status: int = 200
    body: bytes | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    cut_after: int | None = None
    """Announce the whole body, send only this many bytes, then drop the connection."""


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


class Script:
    """Routes (method, path) to a queue of replies; the last reply repeats."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Reply | Callable[[Seen], Reply]]] = {}
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    def on(self, method: str, path: str, *replies: Reply | Callable[[Seen], Reply]) -> None:
        self.routes[(method, path)] = list(replies)

    def count(self, method: str, path: str) -> int:
        return sum(1 for s in self.seen if (s.method, s.path) == (method, path))

    def next_reply(self, seen: Seen) -> Reply:
        with self.lock:
            self.seen.append(seen)
            queue = self.routes.get((seen.method, seen.path))
            if not queue:
                return Reply(404, {"error": {"code": "not_found", "message": "no route"}})
            item = queue.pop(0) if len(queue) > 1 else queue[0]
        return item(seen) if callable(item) else item


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            seen = Seen(
                self.command,
                url.path,
                parse_qs(url.query),
                {k.lower(): v for k, v in self.headers.items()},
                body,
            )
            reply = script.next_reply(seen)
            if reply.delay:
                time.sleep(reply.delay)
            payload = reply.body
            ctype = "application/octet-stream"
            if not isinstance(payload, bytes):
                payload, ctype = json.dumps(payload).encode(), "application/json"
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.headers.get("Content-Type", ctype))
            self.send_header("Content-Length", str(len(payload)))
            for k, v in reply.headers.items():
                if k != "Content-Type":
                    self.send_header(k, v)
            self.end_headers()
            if reply.cut_after is not None:
                self.wfile.write(payload[: reply.cut_after])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


class Sleeps(list[float]):
    """A RetryPolicy.sleep that records the waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(base: str, tmp_path: Path, retries: int = 3, **kw: Any) -> tuple[Client, Sleeps]:
    sleeps = Sleeps()
    policy = RetryPolicy(retries=retries, backoff_base=0.5, backoff_max=4.0, sleep=sleeps)
    client = Client(base, "pace_testkey", retries=policy, cache_dir=tmp_path, **kw)
    return client, sleeps


def err(code: str | None, status: int, field_: str | None = None) -> Reply:
    body = {"error": {"code": code, "message": f"{code} happened", "field": field_}}
    return Reply(status, body)


# -- error mapping ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [
        ("unauthenticated", 401, errors.AuthenticationError),
        ("forbidden", 403, errors.PermissionDeniedError),
        ("not_found", 404, errors.NotFoundError),
        ("duplicate", 409, errors.DuplicateError),
        ("immutable", 409, errors.ImmutableError),
        ("conflict", 409, errors.ConflictError),
        ("precondition_failed", 412, errors.PreconditionFailedError),
        ("payload_too_large", 413, errors.PayloadTooLargeError),
        ("empty_body", 400, errors.BadRequestError),
        ("malformed_safetensors", 400, errors.BadRequestError),
        ("dimension_mismatch", 422, errors.DimensionMismatchError),
        ("non_finite", 422, errors.NonFiniteError),
        ("validation_error", 422, errors.ValidationError),
        ("request_timeout", 408, errors.SlowBodyError),
        ("internal", 500, errors.ServerError),
        ("brand_new_code", 409, errors.ConflictError),  # unknown code: by status
        ("brand_new_code", 418, errors.ServiceError),
        (None, 404, errors.NotFoundError),
    ],
)
def test_error_codes_map_to_exception_classes(
    server: tuple[str, Script], tmp_path: Path, code: str | None, status: int, cls: type
) -> None:
    base, script = server
    script.on("GET", "/v1/models/5", err(code, status, "body.hf_id"))
    client, _ = make_client(base, tmp_path, retries=0)
    with client, pytest.raises(cls) as info:
        client.get_model(5)
    e = info.value
    assert type(e) is cls
    assert isinstance(e, errors.ServiceError) and isinstance(e, errors.PaceError)
    assert (e.status, e.code, e.field) == (status, code, "body.hf_id")
    assert e.message == f"{code} happened"
    assert e.response is not None and e.response.status_code == status
    assert e.request is not None and e.request.url.path == "/v1/models/5"
    assert str(status) in str(e) and "body.hf_id" in str(e)


def test_stdlib_bases_let_callers_catch_broadly(server: tuple[str, Script], tmp_path: Path) -> None:
    base, script = server
    script.on("GET", "/v1/concepts/1", err("not_found", 404))
    script.on("GET", "/v1/concepts/2", err("non_finite", 422, "body.vector.3"))
    client, _ = make_client(base, tmp_path)
    with client:
        with pytest.raises(LookupError):
            client.get_concept(1)
        with pytest.raises(ValueError, match="non_finite"):
            client.get_concept(2)


def test_a_non_json_error_page_keeps_its_text(server: tuple[str, Script], tmp_path: Path) -> None:
    base, script = server
    script.on("GET", "/v1/me", Reply(502, b"<html>Bad Gateway from nginx</html>"))
    client, sleeps = make_client(base, tmp_path, retries=0)
    with client, pytest.raises(errors.ServerError) as info:
        client.me()
    assert info.value.code is None and info.value.status == 502
    assert "Bad Gateway from nginx" in info.value.message
    assert sleeps == []


# -- retries ---------------------------------------------------------------------------
def test_idempotent_calls_retry_5xx_with_backoff(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    base, script = server
    ok = Reply(200, {"namespace": "default", "role": "admin"})
    script.on("GET", "/v1/me", Reply(503), Reply(502), Reply(504), ok)
    client, sleeps = make_client(base, tmp_path, retries=3)
    with client:
        assert client.me() == Me("default", "admin")
    assert script.count("GET", "/v1/me") == 4
    assert len(sleeps) == 3
    for attempt, s in enumerate(sleeps):  # full jitter within the exponential cap
        assert 0.0 <= s <= min(4.0, 0.5 * 2**attempt)


def test_retries_give_up_with_the_last_error(server: tuple[str, Script], tmp_path: Path) -> None:
    base, script = server
    script.on("GET", "/v1/me", Reply(503, {"error": {"code": "unavailable", "message": "m"}}))
    client, sleeps = make_client(base, tmp_path, retries=2)
    with client, pytest.raises(errors.ServerError) as info:
        client.me()
    assert info.value.status == 503 and info.value.code == "unavailable"
    assert script.count("GET", "/v1/me") == 3 and len(sleeps) == 2


def test_429_honours_retry_after(server: tuple[str, Script], tmp_path: Path) -> None:
    base, script = server
    ok = Reply(200, {"namespace": "n", "role": "read"})
    script.on("GET", "/v1/me", Reply(429, headers={"Retry-After": "7"}), ok)
    client, sleeps = make_client(base, tmp_path)
    with client:
        assert client.me().role == "read"
    assert sleeps == [7.0]


def test_a_408_slow_body_is_retried_on_idempotent_calls(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    base, script = server
    slow = Reply(408, {"error": {"code": "request_timeout", "message": "m", "field": "body"}})
    script.on("GET", "/v1/me", slow, Reply(200, {"namespace": "n", "role": "read"}))
    client, sleeps = make_client(base, tmp_path)
    with client:
        assert client.me().role == "read"
    assert script.count("GET", "/v1/me") == 2 and len(sleeps) == 1


def test_a_retry_after_beyond_the_cap_is_not_waited_for(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    base, script = server
    script.on("GET", "/v1/me", Reply(429, headers={"Retry-After": "3600"}))
    client, sleeps = make_client(base, tmp_path)
    with client, pytest.raises(errors.RateLimitedError):
        client.me()
    assert sleeps == [] and script.count("GET", "/v1/me") == 1


def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_700_000_000.0
    date = "Tue, 14 Nov 2023 22:13:40 GMT"  # now + 20 s
    assert parse_retry_after(date, now=now) == pytest.approx(20.0)
    assert parse_retry_after(date, now=now + 100) == 0.0


def test_non_idempotent_posts_are_not_retried_on_5xx(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    base, script = server
    script.on("POST", "/v1/concepts", Reply(503), Reply(201, {"id": 1}))
    client, sleeps = make_client(base, tmp_path)
    with client, pytest.raises(errors.ServerError):
        client.create_concept("hatred", stimuli=["You hate it."])
    assert script.count("POST", "/v1/concepts") == 1 and sleeps == []


def test_posts_marked_idempotent_are_retried(server: tuple[str, Script], tmp_path: Path) -> None:
    base, script = server
    recipe = {
        "id": 4,
        "token_position": "mean",
        "reduction": "pc1",
        "prompt_template": "Q: {stimulus}",
        "code_version": "0.1.0",
        "created_at": "2026-01-01",
    }
    script.on("POST", "/v1/recipes", Reply(503), Reply(200, recipe))
    client, sleeps = make_client(base, tmp_path)
    with client:
        r = client.get_or_create_recipe(
            token_position="mean", reduction="pc1", prompt_template="Q: {stimulus}"
        )
    assert (r.id, r.reduction, r.prompt_template) == (4, "pc1", "Q: {stimulus}")
    assert len(sleeps) == 1
    sent = json.loads(script.seen[-1].body)
    assert sent == {
        "token_position": "mean",
        "reduction": "pc1",
        "prompt_template": "Q: {stimulus}",
        "code_version": "0.1.0",
    }


def test_refused_connections_are_retried_even_for_posts(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client, sleeps = make_client(f"http://127.0.0.1:{port}", tmp_path, retries=2)
    with client, pytest.raises(errors.TransportError) as info:
        client.create_task("detox")
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(sleeps) == 2


def test_timeouts_raise_a_timeout_error_and_are_retried_when_idempotent(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    base, script = server
    script.on("GET", "/v1/me", Reply(200, {"namespace": "n", "role": "r"}, delay=0.5))
    client, sleeps = make_client(base, tmp_path, retries=1, timeout=httpx.Timeout(0.1))
    with client, pytest.raises(errors.RequestTimeoutError) as info:
        client.me()
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, errors.TransportError)
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert script.count("GET", "/v1/me") == 2 and len(sleeps) == 1


# -- configuration and lifetime -------------------------------------------------------
def test_key_and_url_fall_back_to_env_then_key_file(
    server: tuple[str, Script], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, script = server
    script.on("GET", "/v1/me", Reply(200, {"namespace": "default", "role": "admin"}))
    monkeypatch.setenv("PACE_URL", base)
    monkeypatch.setenv("PACE_API_KEY", "pace_fromenv")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    with Client(cache_dir=tmp_path) as c:
        c.me()
    assert script.seen[-1].headers["authorization"] == "Bearer pace_fromenv"
    assert script.seen[-1].headers["user-agent"].startswith("pace-sdk/")

    monkeypatch.delenv("PACE_API_KEY")
    key_file = tmp_path / "data" / "pace" / "api-key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text("pace_fromfile\n")
    with Client(cache_dir=tmp_path) as c:
        c.me()
    assert script.seen[-1].headers["authorization"] == "Bearer pace_fromfile"

    key_file.unlink()
    with Client(cache_dir=tmp_path) as c:
        c.me()
    assert "authorization" not in script.seen[-1].headers
    with Client(base, "pace_explicit", cache_dir=tmp_path) as c:
        c.me()
    assert script.seen[-1].headers["authorization"] == "Bearer pace_explicit"


def test_a_closed_client_refuses_to_work(server: tuple[str, Script], tmp_path: Path) -> None:
    base, script = server
    script.on("GET", "/v1/me", Reply(200, {"namespace": "n", "role": "r"}))
    client, _ = make_client(base, tmp_path)
    with client as c:
        assert c.me().namespace == "n"
    assert client.is_closed
    with pytest.raises(errors.ClientClosedError):
        client.me()
    with pytest.raises(errors.ClientClosedError):
        client.pull_dictionary_by_hash("a" * 64)
    with pytest.raises(errors.ClientClosedError), client:
        pass
    client.close()  # idempotent


def test_unexpected_success_bodies_are_reported(server: tuple[str, Script], tmp_path: Path) -> None:
    base, script = server
    script.on("GET", "/v1/me", Reply(200, b"not json", headers={"Content-Type": "text/plain"}))
    script.on("GET", "/v1/models/1", Reply(200, {"id": 1}))
    client, _ = make_client(base, tmp_path)
    with client:
        with pytest.raises(errors.UnexpectedResponseError, match="expected JSON"):
            client.me()
        with pytest.raises(errors.UnexpectedResponseError, match="lacks"):
            client.get_model(1)


# -- pagination and request shapes ----------------------------------------------------
def test_iter_concepts_walks_every_page(server: tuple[str, Script], tmp_path: Path) -> None:
    base, script = server
    everything = [{"id": i, "name": f"c{i}"} for i in range(7)]

    def page(seen: Seen) -> Reply:
        limit, offset = int(seen.query["limit"][0]), int(seen.query["offset"][0])
        items = everything[offset : offset + limit]
        return Reply(200, {"items": items, "total": 7, "limit": limit, "offset": offset})

    script.on("GET", "/v1/concepts", page)
    client, _ = make_client(base, tmp_path)
    with client:
        got = list(client.iter_concepts(tag="harm", page_size=3))
        first = client.list_concepts(name="c1", limit=2)
    assert got == everything
    assert [s.query["offset"] for s in script.seen[:3]] == [["0"], ["3"], ["6"]]
    assert all(s.query["tag"] == ["harm"] for s in script.seen[:3])
    assert "name" not in script.seen[0].query  # None filters are not sent
    assert first.total == 7 and first.items == everything[:2]


def test_upload_vectors_splits_into_bounded_requests(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    base, script = server
    bodies: list[bytes] = []

    def accept(seen: Seen) -> Reply:
        bodies.append(seen.body)
        n = st_load(seen.body)["vectors"].shape[0]
        return Reply(201, {"inserted": n - 1, "skipped": 1})

    script.on("POST", "/v1/models/9/vectors", accept)
    vectors = np.random.default_rng(0).standard_normal((10, 8)).astype(np.float64)
    ids = np.arange(10) + 50
    row = 8 * 4 + 16  # fp32 payload plus the id and the layer
    client, _ = make_client(base, tmp_path, max_upload_bytes=3 * row)
    with client:
        result = client.upload_vectors(9, 2, vectors, ids, layers=4)
    assert len(bodies) == 4  # 3 + 3 + 3 + 1 rows
    assert (result.inserted, result.skipped) == (6, 4)
    parts = [st_load(b) for b in bodies]
    assert all(p["vectors"].dtype == torch.float32 for p in parts)
    got = torch.cat([p["vectors"] for p in parts])
    assert torch.equal(got, torch.as_tensor(vectors, dtype=torch.float32))
    assert torch.cat([p["concept_ids"] for p in parts]).tolist() == ids.tolist()
    assert torch.cat([p["layers"] for p in parts]).tolist() == [4] * 10
    seen = script.seen[0]
    assert seen.query == {"recipe_id": ["2"]}
    assert seen.headers["content-type"] == "application/octet-stream"


def test_upload_keeps_half_precision_and_checks_shapes(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    base, script = server
    script.on("POST", "/v1/models/1/vectors", Reply(201, {"inserted": 2, "skipped": 0}))
    client, _ = make_client(base, tmp_path)
    with client:
        v = torch.randn(2, 4, dtype=torch.bfloat16)
        client.upload_vectors(1, 1, v, [1, 2], [0, 1])
        assert torch.equal(st_load(script.seen[-1].body)["vectors"], v)
        with pytest.raises(ValueError, match="2-D"):
            client.upload_vectors(1, 1, torch.randn(4), [1], [0])
        with pytest.raises(ValueError, match="concept_ids"):
            client.upload_vectors(1, 1, torch.randn(2, 4), [1, 2, 3], [0, 0])
        with pytest.raises(TypeError, match="layers"):
            client.upload_vectors(1, 1, torch.randn(2, 4), [1, 2], torch.tensor([0.5, 1.5]))
    assert len(script.seen) == 1  # bad input never reached the wire


# -- dictionary downloads -------------------------------------------------------------
def serve_dictionary(script: Script, h: str, data: bytes, *first: Reply) -> str:
    path = f"/v1/dictionaries/{h}"
    script.on("GET", path, *first, Reply(200, data, headers={"ETag": f'"{h}"'}))
    return path


def parts_left(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "dictionaries" / "blobs").glob(".*.part"))


def test_second_pull_makes_no_request(server: tuple[str, Script], tmp_path: Path) -> None:
    base, script = server
    h, data = make_dictionary_bytes(11, n=6, d=32)
    path = serve_dictionary(script, h, data)
    reference = ConceptDictionary.from_bytes(data)
    client, _ = make_client(base, tmp_path)
    with client:
        first = client.pull_dictionary_by_hash(h)
        second = client.pull_dictionary_by_hash(h, dtype=torch.bfloat16)
    assert script.count("GET", path) == 1
    assert first.content_hash == second.content_hash == h
    assert first.layers == reference.layers == [3, 7]
    for layer in reference.layers:
        assert torch.equal(first.atoms[layer], reference.atoms[layer])
        assert second.atoms[layer].dtype == torch.bfloat16
        assert torch.equal(second.atoms[layer], reference.atoms[layer].to(torch.bfloat16))
    assert first.labels is not None and reference.labels is not None
    assert torch.equal(first.labels, reference.labels)
    # A new client on the same cache, with no server at all, still loads it.
    with Client("http://127.0.0.1:9", "k", cache_dir=tmp_path, retries=0) as offline:
        third = offline.pull_dictionary_by_hash(h, dtype=torch.float32)
    assert torch.equal(third.atoms[3], reference.atoms[3].float())


def test_pull_dictionary_materializes_then_downloads(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    base, script = server
    h, data = make_dictionary_bytes(12)
    serve_dictionary(script, h, data)
    script.on("POST", "/v1/dictionaries", Reply(200, {"hash": h, "n_concepts": 5}))
    client, _ = make_client(base, tmp_path)
    with client:
        d = client.pull_dictionary(
            concept_set_version_id=3, model_id=1, layers=[3, 7], recipe_id=2, partition_id=None
        )
        client.pull_dictionary(concept_set_version_id=3, model_id=1, layers=[3, 7], recipe_id=2)
    assert d.content_hash == h
    assert json.loads(script.seen[0].body) == {
        "concept_set_version_id": 3,
        "model_id": 1,
        "layers": [3, 7],
        "recipe_id": 2,
        "partition_id": None,
    }
    assert script.count("POST", "/v1/dictionaries") == 2
    assert script.count("GET", f"/v1/dictionaries/{h}") == 1


def test_a_connection_dropped_mid_download_never_corrupts_the_cache(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    base, script = server
    h, data = make_dictionary_bytes(13, n=50, d=512)
    cut = Reply(200, data, headers={"ETag": f'"{h}"'}, cut_after=len(data) // 2)
    path = serve_dictionary(script, h, data, cut, cut)
    client, sleeps = make_client(base, tmp_path, retries=0)
    with client, pytest.raises(errors.TransportError) as info:
        client.pull_dictionary_by_hash(h)
    assert isinstance(info.value.__cause__, httpx.RemoteProtocolError)
    assert client.cache.get(h) is None and parts_left(tmp_path) == []

    retrying, sleeps = make_client(base, tmp_path, retries=2)
    with retrying:  # the second cut, then the whole file
        d = retrying.pull_dictionary_by_hash(h)
    assert len(sleeps) == 1 and script.count("GET", path) == 3
    assert d.content_hash == h and len(d) == 50
    assert retrying.cache.get(h) is not None and parts_left(tmp_path) == []


def test_a_mismatched_etag_or_body_is_refused(server: tuple[str, Script], tmp_path: Path) -> None:
    base, script = server
    h, data = make_dictionary_bytes(14)
    other, _ = make_dictionary_bytes(15)
    script.on("GET", f"/v1/dictionaries/{h}", Reply(200, data, headers={"ETag": f'"{other}"'}))
    script.on("GET", f"/v1/dictionaries/{other}", Reply(200, data))  # no ETag, wrong body
    client, _ = make_client(base, tmp_path)
    with client:
        with pytest.raises(errors.IntegrityError, match="ETag"):
            client.pull_dictionary_by_hash(h)
        with pytest.raises(errors.IntegrityError, match="content hash"):
            client.pull_dictionary_by_hash(other)
    assert client.cache.hashes() == [] and parts_left(tmp_path) == []


def test_a_corrupt_cached_blob_is_downloaded_again(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    base, script = server
    h, data = make_dictionary_bytes(16)
    path = serve_dictionary(script, h, data)
    client, _ = make_client(base, tmp_path)
    with client:
        client.pull_dictionary_by_hash(h)
        blob = client.cache.blob_path(h)
        blob.write_bytes(blob.read_bytes()[:-3])
        d = client.pull_dictionary_by_hash(h)
    assert script.count("GET", path) == 2
    assert blob.read_bytes() == data and d.content_hash == h


def test_concurrent_pulls_download_once(server: tuple[str, Script], tmp_path: Path) -> None:
    base, script = server
    h, data = make_dictionary_bytes(17, n=40, d=256)
    path = f"/v1/dictionaries/{h}"
    slow = Reply(200, data, headers={"ETag": f'"{h}"'}, delay=0.2)
    script.on("GET", path, slow)
    results: list[ConceptDictionary] = []
    failures: list[BaseException] = []
    gate = threading.Barrier(4)

    def pull() -> None:
        # One client per thread, as separate processes would have; the lock is on disk.
        try:
            with Client(base, "k", cache_dir=tmp_path) as c:
                gate.wait()
                results.append(c.pull_dictionary_by_hash(h))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert script.count("GET", path) == 1
    assert len(results) == 4
    assert all(torch.equal(r.atoms[7], results[0].atoms[7]) for r in results)
    assert parts_left(tmp_path) == []


def test_bad_hashes_and_dtypes_are_refused_before_any_request(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    base, script = server
    client, _ = make_client(base, tmp_path)
    with client:
        with pytest.raises(ValueError, match="content hash"):
            client.pull_dictionary_by_hash("../../etc/passwd")
        with pytest.raises(ValueError, match="floating"):
            client.pull_dictionary_by_hash("a" * 64, dtype=torch.int8)
    assert script.seen == []


def test_large_downloads_show_a_progress_bar_unless_disabled(
    server: tuple[str, Script], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    base, script = server
    h, data = make_dictionary_bytes(18, n=1200, d=1024)  # 2 layers x 2.4 MB in fp16
    assert len(data) > 4 * 1024 * 1024
    serve_dictionary(script, h, data)
    quiet, _ = make_client(base, tmp_path / "quiet", progress=False)
    with quiet:
        quiet.pull_dictionary_by_hash(h)
    assert f"dictionary {h[:12]}" not in capfd.readouterr().err
    loud, _ = make_client(base, tmp_path / "loud")
    with loud:
        loud.pull_dictionary_by_hash(h)
    assert f"dictionary {h[:12]}" in capfd.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pull_lands_on_cuda_in_the_requested_dtype(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    base, script = server
    h, data = make_dictionary_bytes(19)
    serve_dictionary(script, h, data)
    client, _ = make_client(base, tmp_path)
    with client:
        d = client.pull_dictionary_by_hash(h, device="cuda", dtype=torch.bfloat16)
    reference = ConceptDictionary.from_bytes(data)
    for layer in reference.layers:
        assert d.atoms[layer].is_cuda and d.atoms[layer].dtype == torch.bfloat16
        assert torch.equal(d.atoms[layer].cpu(), reference.atoms[layer].to(torch.bfloat16))
    assert d.undesirable.is_cuda
