"""Nearest concepts at 40,000 x 4,096: latency (p50/p99) and recall@10 vs exact search.

Atoms are activation-like (service_harness.activation_like: offset + outlier dims +
clustered low-rank structure + noise), loaded with a raw binary COPY; the service's
own index builder (``ensure_search_index``) then builds the binary-quantization HNSW
index. Two query sets, 200 each:

- ``near``: a stored atom plus heavy noise (an activation where a concept is present);
- ``fresh``: new draws from the same distribution (no stored atom is close).

Ground truth is exact cosine over the stored float16 values (NumPy). Timed per query,
interleaved (so every path sees the same machine load), each from the client's call to
the decoded answer, over one persistent httpx connection:

- ``json``: ``POST /v1/search/nearest`` with a JSON body (the client encodes 4,096
  floats: ``json=`` of ``vector.tolist()``, as the SDK does);
- ``binary``: the same request with the raw float32 vector as
  ``application/octet-stream`` (the other fields in the query string);
- ``floor``: ``GET /docs`` over the same connection and server (a small page built on
  the event loop, no database): what any request costs on this HTTP stack;
- ``me``: ``GET /v1/me`` (a plain sync route with the session and auth dependencies);
- ``db``: the search through the store function in this process (no HTTP/JSON);
- ``pg``: PostgreSQL's own execution time of the index query (``EXPLAIN ANALYZE``
  of the same SQL shape: HNSW pool + exact re-rank), i.e. without any round trips;
- ``select 1``: one raw psycopg round trip from this process.

The baseline in the same run is exact search (``exact: true``, a scan of all 40,000
atoms), on a subset of the queries. ``--baseline-src DIR`` also starts the service of
an older checkout (``DIR/service``, e.g. a ``git worktree``) on the same database and
times its JSON and binary paths interleaved with the others, for a before/after under
equal load; for a checkout older than migration 0005 it also builds the index that
checkout's query is written for (over ``binary_quantize(vector)``, same graph
parameters). Both services then share one PostgreSQL, with this checkout's embedded
settings (``shared_buffers``).

The candidate pool is the service's setting (``PACE_SEARCH_POOL``, default 48), read
from the environment by the service under test and by this script's ``db`` and ``pg``
rows alike (the ``--baseline-src`` service gets it too, if it knows the setting).

Run: ``.venv/bin/python bench/service_nearest.py [--n 40000 --dim 4096 --queries 200]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from pgvector import HalfVector
from pgvector.psycopg import register_vector
from psycopg import sql
from service_harness import (
    activation_like,
    machine,
    seed_concepts,
    service_under_test,
    wait_until_serving,
)

from pace_service.copy import copy_in
from pace_service.core.config import Settings
from pace_service.core.db import create_engine, create_session_factory
from pace_service.store.search import NearestQuery, nearest, pool_size
from pace_service.store.search_index import (
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    ensure_search_index,
    quantized_expr,
    query_code,
)
from pace_service.store.vectors import atom_layout

POOL = Settings().search_pool
"""The service's smallest candidate pool (``PACE_SEARCH_POOL``)."""


def _pct(xs: list[float], q: float) -> float:
    return float(np.quantile(np.asarray(xs), q) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40_000)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--exact-queries", type=int, default=10)
    parser.add_argument("--baseline-src", default=None, help="an older checkout to compare")
    args = parser.parse_args()
    print(f"machine: {machine()}; search pool {POOL} (PACE_SEARCH_POOL)")
    t = time.perf_counter()
    gen = activation_like(args.n, args.dim)
    x16 = gen.x.astype(np.float16)
    print(f"generated {args.n} x {args.dim} in {time.perf_counter() - t:.1f} s", flush=True)
    xn = x16.astype(np.float32)
    xn /= np.linalg.norm(xn, axis=1, keepdims=True)
    sets = {"near": gen.near(args.queries), "fresh": gen.fresh(args.queries)}

    with service_under_test() as sut, sut.client() as http:
        model_id, recipe_id, ids, _ = seed_concepts(
            sut, n=args.n, hidden_size=args.dim, hf_id="nearest"
        )
        cids = np.asarray(ids, np.int64)
        layout = atom_layout(args.dim)
        t = time.perf_counter()
        with psycopg.connect(sut.libpq_url) as conn:
            for s in range(0, args.n, 10_000):
                e = min(args.n, s + 10_000)
                stream = layout.encode(
                    {
                        "model_id": model_id,
                        "layer": np.zeros(e - s, np.int32),
                        "recipe_id": recipe_id,
                        "concept_id": cids[s:e],
                        "vector": x16[s:e],
                    }
                )
                copy_in(conn, "atoms", layout, stream)
            conn.commit()
        print(f"loaded in {time.perf_counter() - t:.1f} s", flush=True)
        with psycopg.connect(sut.libpq_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE atoms")
            t = time.perf_counter()
            ensure_search_index(conn, model_id, 0, recipe_id, args.dim)
            print(f"HNSW (binary quantized) index built in {time.perf_counter() - t:.1f} s")
            if args.baseline_src:
                t = time.perf_counter()
                _expression_index(conn, model_id, recipe_id, args.dim)
                print(f"the baseline's expression index built in {time.perf_counter() - t:.1f} s")

        engine = create_engine(sut.app_settings.database_url, pool_size=1)
        factory = create_session_factory(engine)
        ns_id = _namespace_id(sut.libpq_url)
        with contextlib.ExitStack() as stack:
            old = None
            if args.baseline_src:
                old = stack.enter_context(_older_service(args.baseline_src, sut))
            ping = stack.enter_context(psycopg.connect(sut.libpq_url, autocommit=True))
            procs = _service_processes(sut)
            for name, queries in sets.items():
                _run_set(name, queries, xn, cids, http, old, ping, factory, ns_id, model_id, args)
                pg_ms = _server_side_ms(sut.libpq_url, model_id, recipe_id, args.dim, queries)
                print(
                    f"  pg       p50 / p99 : {np.quantile(pg_ms, 0.5):6.2f} / "
                    f"{np.quantile(pg_ms, 0.99):6.2f} ms (server-side execution)"
                )
                if procs is not None:
                    _cpu_per_request(queries, http, old, model_id, procs)
        engine.dispose()
        print(f"\nload average at end: {os.getloadavg()[0]:.1f}")


def _run_set(
    name: str,
    queries: np.ndarray[Any, Any],
    xn: np.ndarray[Any, Any],
    cids: np.ndarray[Any, Any],
    http: httpx.Client,
    old: httpx.Client | None,
    ping: psycopg.Connection[Any],
    factory: Any,
    ns_id: int,
    model_id: int,
    args: argparse.Namespace,
) -> None:
    q16 = queries.astype(np.float16).astype(np.float32)
    sims = (q16 / np.linalg.norm(q16, axis=1, keepdims=True)) @ xn.T
    truth = np.argsort(-sims, axis=1)[:, :10]
    lat: dict[str, list[float]] = {
        k: [] for k in ("json", "binary", "old json", "old binary", "floor", "me", "db", "select 1")
    }
    recall: dict[str, list[float]] = {"json": [], "binary": [], "old binary": []}
    where = {"model_id": model_id, "layer": 0, "k": 10}

    def timed(key: str, call: Any) -> Any:
        t = time.perf_counter()
        out = call()
        lat[key].append(time.perf_counter() - t)
        return out

    def answer(r: httpx.Response) -> set[int]:
        r.raise_for_status()
        data = r.json()
        assert data["exact"] is False
        return {int(x["concept_id"]) for x in data["results"]}

    def json_search(client: httpx.Client, q: np.ndarray) -> set[int]:
        return answer(client.post("/v1/search/nearest", json={**where, "vector": q.tolist()}))

    def binary_search(client: httpx.Client, q: np.ndarray) -> set[int]:
        return answer(
            client.post(
                "/v1/search/nearest",
                params=where,
                content=q.astype("<f4").tobytes(),
                headers={"Content-Type": "application/octet-stream"},
            )
        )

    for i, q in enumerate(queries):
        want = {int(cids[j]) for j in truth[i]}
        got = timed("json", lambda q=q: json_search(http, q))
        recall["json"].append(len(got & want) / 10)
        got = timed("binary", lambda q=q: binary_search(http, q))
        recall["binary"].append(len(got & want) / 10)
        if old is not None:
            timed("old json", lambda q=q, old=old: json_search(old, q))
            got = timed("old binary", lambda q=q, old=old: binary_search(old, q))
            recall["old binary"].append(len(got & want) / 10)
        timed("floor", lambda: http.get("/docs").raise_for_status())
        timed("me", lambda: http.get("/v1/me").raise_for_status())
        timed("select 1", lambda: ping.execute("SELECT 1").fetchone())
        with factory() as session:
            timed(
                "db",
                lambda q=q: nearest(
                    session, ns_id, NearestQuery(model_id, 0, None, 10, q, min_pool=POOL)
                ),
            )
            session.rollback()
    exact_lat: list[float] = []
    for i, q in enumerate(queries[: args.exact_queries]):
        body = {**where, "vector": q.tolist(), "exact": True}
        t = time.perf_counter()
        r = http.post("/v1/search/nearest", json=body)
        exact_lat.append(time.perf_counter() - t)
        got_list = [int(x["concept_id"]) for x in r.json()["results"]]
        overlap = len(set(got_list) & {int(cids[j]) for j in truth[i]})
        assert overlap >= 9, "exact search disagrees with NumPy"  # fp ties only
    floor = _pct(lat["floor"], 0.5)
    print(f"\n{name} queries ({len(queries)}), k = 10, pool/ef from store.search:")
    print(
        f"  recall@10 vs exact : json {np.mean(recall['json']):.4f}, "
        f"binary {np.mean(recall['binary']):.4f} (target >= 0.98)"
        + (f", old binary {np.mean(recall['old binary']):.4f}" if recall["old binary"] else "")
    )
    for key in ("json", "binary", "old json", "old binary", "floor", "me", "db", "select 1"):
        if lat[key]:
            p50 = _pct(lat[key], 0.5)
            print(
                f"  {key:8s} p50 / p99 : {p50:6.2f} / {_pct(lat[key], 0.99):6.2f} ms"
                f"  ({p50 / floor:4.1f}x floor)"
            )
    print(
        f"  exact (baseline)   : p50 {_pct(exact_lat, 0.5):.1f} ms "
        f"-> index path (binary) is {_pct(exact_lat, 0.5) / _pct(lat['binary'], 0.5):.0f}x faster"
    )


def _service_processes(sut: Any) -> tuple[int, int] | None:
    """(uvicorn pid, postmaster pid) of the service under test, if found in /proc."""
    pid_file = Path(sut.data_dir).parent / "pgdata" / "postmaster.pid"
    if not pid_file.exists() or not Path("/proc").exists():
        return None
    uvicorn = _uvicorn_pid(sut.base_url)
    return None if uvicorn is None else (uvicorn, int(pid_file.read_text().split()[0]))


def _uvicorn_pid(base_url: str) -> int | None:
    port = str(base_url).rstrip("/").rsplit(":", 1)[1].encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                args = (entry / "cmdline").read_bytes().split(b"\0")
                if b"pace_service.main:create_app" in args and port in args:
                    return int(entry.name)
    return None


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) of each of ``pids`` still running."""
    out: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two readings by the processes alive at both (a process
    that exits in between would otherwise count as negative time)."""
    return sum(after[pid] - before[pid] for pid in after if pid in before)


def _pg_pids(postmaster: int) -> list[int]:
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                status = (entry / "status").read_text()
                ppid = next(ln for ln in status.splitlines() if ln.startswith("PPid:"))
                if int(ppid.split()[1]) == postmaster:
                    pids.append(int(entry.name))
    return pids


def _cpu_per_request(
    queries: np.ndarray[Any, Any],
    http: httpx.Client,
    old: httpx.Client | None,
    model_id: int,
    procs: tuple[int, int],
) -> None:
    """CPU time per request of the service process and PostgreSQL (all its processes),
    in blocks of one kind of request: what a request costs when nothing else competes
    (wall time on a loaded machine adds the wait for a core to every process wake-up)."""
    where = {"model_id": model_id, "layer": 0, "k": 10}
    uvicorn, postmaster = procs
    pg = _pg_pids(postmaster)
    kinds: dict[str, tuple[int | None, Any]] = {
        "binary": (
            uvicorn,
            lambda q: http.post(
                "/v1/search/nearest",
                params=where,
                content=q.astype("<f4").tobytes(),
                headers={"Content-Type": "application/octet-stream"},
            ),
        ),
        "json": (
            uvicorn,
            lambda q: http.post("/v1/search/nearest", json={**where, "vector": q.tolist()}),
        ),
        "floor": (uvicorn, lambda q: http.get("/docs")),
    }
    if old is not None:
        kinds["old json"] = (
            _uvicorn_pid(str(old.base_url)),
            lambda q: old.post("/v1/search/nearest", json={**where, "vector": q.tolist()}),
        )
        kinds["old binary"] = (
            _uvicorn_pid(str(old.base_url)),
            lambda q: old.post(
                "/v1/search/nearest",
                params=where,
                content=q.astype("<f4").tobytes(),
                headers={"Content-Type": "application/octet-stream"},
            ),
        )
    for kind, (pid, call) in kinds.items():
        mine = [pid] if pid is not None else []
        before = (_cpu_seconds(mine), _cpu_seconds(pg))
        for q in queries:
            call(q).raise_for_status()
        service = _cpu_spent(before[0], _cpu_seconds(mine)) / len(queries) * 1e3
        database = _cpu_spent(before[1], _cpu_seconds(pg)) / len(queries) * 1e3
        print(
            f"  cpu/request {kind:8s}: service {service:5.2f} ms + PostgreSQL "
            f"{database:5.2f} ms = {service + database:5.2f} ms"
        )


@contextlib.contextmanager
def _older_service(src: str, sut: Any) -> Iterator[httpx.Client]:
    """The service of an older checkout (``src/service``) on the same database."""
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(src).resolve() / "service"),
        "PACE_DATABASE_URL": sut.app_settings.database_url,
        "PACE_DATA_DIR": str(sut.data_dir),
    }
    app = ["--factory", "pace_service.main:create_app", "--log-level", "warning"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", *app, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base, proc, "the baseline service")
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {sut.key}"}, timeout=600
        ) as client:
            yield client
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_side_ms(
    libpq_url: str, model_id: int, recipe_id: int, dim: int, queries: np.ndarray[Any, Any]
) -> list[float]:
    pool = pool_size(10, dim, POOL)
    query = sql.SQL(
        "EXPLAIN (ANALYZE, FORMAT JSON) WITH x AS MATERIALIZED (SELECT a.concept_id, a.vector "
        "FROM atoms a WHERE a.model_id = {m} AND a.layer = 0 AND a.recipe_id = {r} "
        "ORDER BY {qa} <~> %(code)s::bit({dim}) LIMIT {pool}) "
        "SELECT x.concept_id, x.vector <=> %(q)s AS dist FROM x ORDER BY dist LIMIT 10"
    ).format(
        m=sql.Literal(model_id),
        r=sql.Literal(recipe_id),
        qa=quantized_expr(dim, sql.SQL("a.code")),
        dim=sql.Literal(dim),
        pool=sql.Literal(pool),
    )
    out: list[float] = []
    with psycopg.connect(libpq_url, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(sql.SQL("SET hnsw.ef_search = {}").format(sql.Literal(pool)))
        for q in queries:
            half = q.astype(np.float16)
            params = {"q": HalfVector(half), "code": query_code(half)}
            plan: Any = conn.execute(query, params).fetchone()
            out.append(float(plan[0][0]["Execution Time"]))
    return out


def _expression_index(
    conn: psycopg.Connection[Any], model_id: int, recipe_id: int, dim: int
) -> None:
    """The index the service used before migration 0005 (over ``binary_quantize(vector)``,
    same graph parameters), so that an older ``--baseline-src`` service finds the index
    its query is written for; the current service's query cannot use it."""
    conn.execute(
        sql.SQL(
            "CREATE INDEX bench_bq_expression ON atoms USING hnsw "
            "((binary_quantize(vector)::bit({d})) bit_hamming_ops) "
            "WITH (m = {m}, ef_construction = {ef}) "
            "WHERE model_id = {model} AND layer = 0 AND recipe_id = {recipe}"
        ).format(
            d=sql.Literal(dim),
            m=sql.Literal(HNSW_M),
            ef=sql.Literal(HNSW_EF_CONSTRUCTION),
            model=sql.Literal(model_id),
            recipe=sql.Literal(recipe_id),
        )
    )


def _namespace_id(libpq_url: str) -> int:
    with psycopg.connect(libpq_url) as conn:
        row: Any = conn.execute("SELECT id FROM namespaces WHERE name = 'bench'").fetchone()
    return int(row[0])


if __name__ == "__main__":
    main()
