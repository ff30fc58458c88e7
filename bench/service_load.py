"""Load: concurrent clients on loopback against the service on the embedded database.

The service runs as users run it (uvicorn in its own process, embedded PostgreSQL +
pgvector, schema built by the migrations: ``service_harness.service_under_test``).
Everything is seeded through the HTTP API: a model (hidden 576, ``--layers`` layers),
a recipe, ``--concepts`` concepts with stimuli, atoms for every concept and layer (one
safetensors upload), a published concept-set version, a draft after it, a task with a
partition, and two materialized dictionaries.

Then ``--clients`` clients (asyncio + httpx, one connection each) run for ``--seconds``
(at most ``--max-requests`` requests in all), each picking operations at random:

- ``search``: ``POST /v1/search/nearest`` (k = 10, a random layer; a third of them with
  the partition's labels);
- ``dict_304``: ``GET /v1/dictionaries/{hash}`` with a matching ``If-None-Match``
  (an ETag hit: 304, no body);
- ``dict_200``: the same without ``If-None-Match`` (a miss: the whole file, its size
  checked);
- ``dict_new``: ``POST /v1/dictionaries`` for a random layer combination of the published
  version (with or without the partition) or of the draft, then ``GET`` of its bytes
  (a new combination is materialized then; a known one is found by its hash);
- ``edit``: a small edit, in turn: a concept's description, a stimulus added to a
  concept, a new concept added to the draft, one of those removed from the draft.
  Each client edits its own concepts.

An error is any unexpected status or a transport exception (timeouts included),
except that a request the server never answered because it had just closed the idle
kept-alive connection is sent again once, as the SDK does, and counted. The
same mix with one client runs first, for ``--baseline-seconds``, in the same process:
absolute times drift on a shared machine, so ratios against it are printed too.

Bounded: clients stop issuing at the deadline or the request cap, every request has a
timeout, the whole run has a hard deadline, and the service and its database are
removed at exit. Exit status 1 if any request failed.

Run: ``.venv/bin/python bench/service_load.py [--clients 50 --seconds 60]``
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import psutil
import psycopg
from safetensors.numpy import save as st_save
from service_harness import ServiceUnderTest, activation_like, machine, service_under_test

from pace_service.core.config import Settings
from pace_service.store.search_index import index_name

HIDDEN = 576
"""SmolLM2-135M's hidden size, the model the demo and the evaluation use."""

OPERATIONS: dict[str, float] = {
    "search": 0.40,
    "dict_304": 0.20,
    "dict_200": 0.08,
    "dict_new": 0.07,
    "edit": 0.25,
}
"""Each operation's share of the mix."""

REQUEST_TIMEOUT_S = 60.0
"""The SDK client's default read timeout (``pace.client``)."""


@dataclass
class Seeded:
    """What the clients work on (ids from the API)."""

    model_id: int
    recipe_id: int
    layers: int
    version_id: int
    draft_id: int
    partition_id: int
    concept_ids: list[int]
    dictionaries: dict[str, int]  # hash -> size in bytes
    search_bodies: list[bytes]


@dataclass
class OpStats:
    """Latencies and failures of one operation kind."""

    latencies: list[float] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    samples: list[str] = field(default_factory=list)

    def record(self, seconds: float, requests: int, failure: str | None) -> None:
        self.latencies.append(seconds)
        self.requests += requests
        if failure is not None:
            self.errors += 1
            if len(self.samples) < 5:
                self.samples.append(failure)

    def quantile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        return float(np.quantile(np.asarray(self.latencies), q) * 1e3)


class CpuMeter:
    """CPU seconds used by the service process, PostgreSQL and this client, per phase.

    On a shared 2-core machine this tells whether the service was saturated or starved.
    """

    def __init__(self, sut: ServiceUnderTest):
        self.me = psutil.Process()
        self.pgdata = sut.data_dir.parent / "pgdata"
        self.start = self._sample()

    def _postgres(self) -> list[psutil.Process]:
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
            master = psutil.Process(pid)
            return [master, *master.children()]
        except (OSError, ValueError, psutil.Error):
            return []

    @staticmethod
    def _cpu(procs: Sequence[psutil.Process]) -> dict[int, float]:
        out = {}
        for proc in procs:
            try:
                t = proc.cpu_times()
                out[proc.pid] = t.user + t.system
            except psutil.Error:
                pass
        return out

    def _sample(self) -> tuple[float, dict[int, float], dict[int, float], float]:
        return (
            time.perf_counter(),
            self._cpu(self.me.children(recursive=True)),
            self._cpu(self._postgres()),
            time.process_time(),
        )

    def cores(self) -> dict[str, float]:
        """Cores used since construction: service, PostgreSQL, this client."""
        t0, svc0, pg0, me0 = self.start
        t1, svc1, pg1, me1 = self._sample()
        wall = t1 - t0

        def used(before: dict[int, float], after: dict[int, float]) -> float:
            return sum(v - before.get(pid, 0.0) for pid, v in after.items()) / wall

        out = {"service": used(svc0, svc1), "client": (me1 - me0) / wall}
        if pg1:  # not with --database-url
            out["postgres"] = used(pg0, pg1)
        return out


@dataclass
class PhaseResult:
    """One run of the mix."""

    clients: int
    wall_s: float
    stats: dict[str, OpStats]
    cores: dict[str, float] = field(default_factory=dict)
    keep_alive_retries: int = 0

    @property
    def operations(self) -> int:
        return sum(len(s.latencies) for s in self.stats.values())

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.stats.values())

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.stats.values())


class KeepAliveRetry(httpx.AsyncHTTPTransport):
    """Send a request again, once, when the server closed the kept-alive connection
    before answering, as the SDK client does (counted, and printed: not an error).

    The server closes a connection idle for its keep-alive timeout; a client
    starved of CPU on this machine can take longer than that between reading one
    answer and sending the next request, and the two cross. Nothing was answered, so
    nothing was done. Any other failure, or a second one, is an error.
    """

    retried = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            KeepAliveRetry.retried += 1
            return await super().handle_async_request(request)


def _check(response: httpx.Response, *expected: int) -> str | None:
    if response.status_code in expected:
        return None
    return (
        f"{response.request.method} {response.request.url.path} -> "
        f"{response.status_code} {response.text[:300]}"
    )


class Client:
    """One simulated user: its own connection, its own concepts to edit."""

    def __init__(self, index: int, http: httpx.AsyncClient, seeded: Seeded, clients: int):
        self.index = index
        self.http = http
        self.seeded = seeded
        self.rng = random.Random(1000 + index)
        self.own = seeded.concept_ids[index::clients] or seeded.concept_ids[:1]
        self.added: list[int] = []
        self.edits = itertools.count()
        self.tag = f"{index}-{time.monotonic_ns()}"

    async def search(self) -> tuple[int, str | None]:
        body = self.rng.choice(self.seeded.search_bodies)
        r = await self.http.post(
            "/v1/search/nearest", content=body, headers={"Content-Type": "application/json"}
        )
        failure = _check(r, 200)
        if failure is None and len(r.json()["results"]) != 10:
            failure = f"search returned {len(r.json()['results'])} results, not 10"
        return 1, failure

    async def dict_304(self) -> tuple[int, str | None]:
        content_hash = self.rng.choice(list(self.seeded.dictionaries))
        r = await self.http.get(
            f"/v1/dictionaries/{content_hash}", headers={"If-None-Match": f'"{content_hash}"'}
        )
        return 1, _check(r, 304)

    async def _pull(self, content_hash: str, size: int) -> str | None:
        r = await self.http.get(f"/v1/dictionaries/{content_hash}")
        failure = _check(r, 200)
        if failure is None and len(r.content) != size:
            failure = f"dictionary {content_hash}: {len(r.content)} bytes, expected {size}"
        if failure is None and r.headers.get("etag") != f'"{content_hash}"':
            failure = f"dictionary {content_hash}: ETag {r.headers.get('etag')}"
        return failure

    async def dict_200(self) -> tuple[int, str | None]:
        content_hash, size = self.rng.choice(list(self.seeded.dictionaries.items()))
        return 1, await self._pull(content_hash, size)

    async def dict_new(self) -> tuple[int, str | None]:
        s = self.seeded
        layers = sorted(self.rng.sample(range(s.layers), self.rng.randint(1, s.layers)))
        draft = self.rng.random() < 0.1
        body: dict[str, Any] = {
            "concept_set_version_id": s.draft_id if draft else s.version_id,
            "model_id": s.model_id,
            "layers": layers,
            "recipe_id": s.recipe_id,
            "partition_id": None if draft or self.rng.random() < 0.5 else s.partition_id,
        }
        r = await self.http.post("/v1/dictionaries", json=body)
        failure = _check(r, 200, 201)
        if failure is not None:
            return 1, failure
        info = r.json()
        return 2, await self._pull(info["hash"], int(info["size_bytes"]))

    async def edit(self) -> tuple[int, str | None]:
        n = next(self.edits)
        kind = n % 4
        concept = self.rng.choice(self.own)
        if kind == 0:
            r = await self.http.patch(
                f"/v1/concepts/{concept}", json={"description": f"edit {self.tag}-{n}"}
            )
            return 1, _check(r, 200)
        if kind == 1:
            r = await self.http.patch(
                f"/v1/concepts/{concept}",
                json={"add_stimuli": [{"text": f"You notice change {self.tag}-{n}."}]},
            )
            return 1, _check(r, 200)
        draft = f"/v1/concept-set-versions/{self.seeded.draft_id}/concepts"
        if kind == 2 or not self.added:
            r = await self.http.post(
                "/v1/concepts",
                json={"name": f"load-{self.tag}-{n}", "stimuli": [{"text": "You see it."}]},
            )
            failure = _check(r, 201)
            if failure is not None:
                return 1, failure
            new_id = int(r.json()["id"])
            r = await self.http.post(draft, json={"concept_ids": [new_id]})
            if r.status_code == 200:
                self.added.append(new_id)
            return 2, _check(r, 200)
        r = await self.http.post(f"{draft}:remove", json={"concept_ids": [self.added.pop()]})
        return 1, _check(r, 200)

    def operation(self, name: str) -> Callable[[], Awaitable[tuple[int, str | None]]]:
        op: Callable[[], Awaitable[tuple[int, str | None]]] = getattr(self, name)
        return op


async def run_phase(
    sut: ServiceUnderTest,
    seeded: Seeded,
    *,
    clients: int,
    seconds: float,
    max_requests: int,
) -> PhaseResult:
    """``clients`` clients running the mix until the deadline or the request cap."""
    stats = {name: OpStats() for name in OPERATIONS}
    names, weights = list(OPERATIONS), list(OPERATIONS.values())
    issued = itertools.count()
    start = time.perf_counter()
    deadline = start + seconds

    async def one_client(index: int) -> None:
        async with httpx.AsyncClient(
            base_url=sut.base_url,
            headers={"Authorization": f"Bearer {sut.key}"},
            timeout=REQUEST_TIMEOUT_S,
            transport=KeepAliveRetry(limits=httpx.Limits(max_connections=1)),
        ) as http:
            client = Client(index, http, seeded, clients)
            while time.perf_counter() < deadline and next(issued) < max_requests:
                name = client.rng.choices(names, weights)[0]
                t = time.perf_counter()
                try:
                    requests, failure = await client.operation(name)()
                except httpx.HTTPError as exc:
                    requests, failure = 1, f"{type(exc).__name__}: {exc}"
                stats[name].record(time.perf_counter() - t, requests, failure)

    meter = CpuMeter(sut)
    retried = KeepAliveRetry.retried
    hard_deadline = seconds + 2 * REQUEST_TIMEOUT_S + 10
    await asyncio.wait_for(
        asyncio.gather(*(one_client(i) for i in range(clients))), timeout=hard_deadline
    )
    return PhaseResult(
        clients=clients,
        wall_s=time.perf_counter() - start,
        stats=stats,
        cores=meter.cores(),
        keep_alive_retries=KeepAliveRetry.retried - retried,
    )


def _upload_body(vectors: np.ndarray[Any, Any], ids: np.ndarray[Any, Any], layer: int) -> bytes:
    return st_save(
        {
            "concept_ids": ids.astype(np.int64),
            "layers": np.full(len(ids), layer, np.int64),
            "vectors": vectors.astype(np.float16),
        }
    )


def _ok(response: httpx.Response, *expected: int) -> Any:
    failure = _check(response, *expected)
    if failure is not None:
        raise RuntimeError(f"seeding failed: {failure}")
    return response.json()


def _wait_for_indexes(sut: ServiceUnderTest, names: list[str], timeout: float = 120) -> None:
    """The service builds each layer's search index in the background after the upload."""
    end = time.monotonic() + timeout
    with psycopg.connect(sut.libpq_url, autocommit=True) as conn:
        while time.monotonic() < end:
            row = conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
                "WHERE c.relname = ANY(%s) AND i.indisvalid",
                (names,),
            ).fetchone()
            if row is not None and row[0] == len(names):
                return
            time.sleep(0.2)
    raise RuntimeError("the search indexes were not built in time")


def seed(sut: ServiceUnderTest, *, concepts: int, layers: int) -> Seeded:
    """Seed the workload through the API (see the module docstring)."""
    rng = np.random.default_rng(0)
    with sut.client() as http:
        model = _ok(
            http.post(
                "/v1/models",
                json={
                    "hf_id": "load/SmolLM2-like",
                    "hidden_size": HIDDEN,
                    "num_layers": layers,
                    "architecture": "LlamaForCausalLM",
                },
            ),
            201,
        )
        recipe = _ok(
            http.post(
                "/v1/recipes",
                json={
                    "token_position": "last",
                    "reduction": "mean",
                    "prompt_template": "{stimulus}",
                    "code_version": "load",
                },
            ),
            200,
            201,
        )
        bulk = [
            {
                "name": f"concept-{i}",
                "description": "seeded",
                "stimuli": [{"text": f"You meet concept {i}."}, {"text": f"Concept {i} here."}],
            }
            for i in range(concepts)
        ]
        created = _ok(http.post("/v1/concepts:bulk", json=bulk), 201)
        ids = [int(item["id"]) for item in created["items"]]
        cset = _ok(http.post("/v1/concept-sets", json={"name": "load-set"}), 201)
        version = _ok(http.post(f"/v1/concept-sets/{cset['id']}/versions", json={}), 201)
        _ok(
            http.post(
                f"/v1/concept-set-versions/{version['id']}/concepts", json={"concept_ids": ids}
            ),
            200,
        )
        _ok(http.post(f"/v1/concept-set-versions/{version['id']}/publish"), 200)
        draft = _ok(http.post(f"/v1/concept-sets/{cset['id']}/versions", json={}), 201)

        cids = np.asarray(ids, np.int64)
        bodies: list[bytes] = []
        for layer in range(layers):
            gen = activation_like(concepts, HIDDEN, seed=layer, rank=64, n_clusters=100)
            _ok(
                http.post(
                    f"/v1/models/{model['id']}/vectors",
                    params={"recipe_id": recipe["id"]},
                    content=_upload_body(gen.x, cids, layer),
                    headers={"Content-Type": "application/octet-stream"},
                ),
                200,
            )
            for q in np.concatenate([gen.near(25, seed=layer), gen.fresh(25, seed=layer)]):
                bodies.append(
                    json.dumps(
                        {
                            "model_id": model["id"],
                            "layer": layer,
                            "k": 10,
                            "vector": [round(float(v), 4) for v in q],
                        }
                    ).encode()
                )

        task = _ok(http.post("/v1/tasks", json={"name": "load-task", "description": "x"}), 201)
        undesirable = rng.random(len(ids)) < 0.1
        partition = _ok(
            http.post(
                "/v1/partitions",
                json={
                    "task_id": task["id"],
                    "concept_set_version_id": version["id"],
                    "labels": [
                        {
                            "concept_id": cid,
                            "label": "undesirable" if bad else "benign",
                            "score": 0.9,
                            "labeler": {"kind": "offline", "name": "load"},
                        }
                        for cid, bad in zip(ids, undesirable, strict=True)
                    ],
                },
            ),
            201,
        )
        for i, body in enumerate(bodies):  # a third of the searches carry labels
            if i % 3 == 0:
                query = json.loads(body)
                query.update(partition_id=partition["id"], concept_set_version_id=version["id"])
                bodies[i] = json.dumps(query).encode()

        dictionaries: dict[str, int] = {}
        for layer_list, part in (([0], None), (list(range(layers)), partition["id"])):
            info = _ok(
                http.post(
                    "/v1/dictionaries",
                    json={
                        "concept_set_version_id": version["id"],
                        "model_id": model["id"],
                        "layers": layer_list,
                        "recipe_id": recipe["id"],
                        "partition_id": part,
                    },
                ),
                201,
            )
            dictionaries[info["hash"]] = int(info["size_bytes"])
    _wait_for_indexes(
        sut, [index_name(model["id"], layer, recipe["id"]) for layer in range(layers)]
    )
    return Seeded(
        model_id=int(model["id"]),
        recipe_id=int(recipe["id"]),
        layers=layers,
        version_id=int(version["id"]),
        draft_id=int(draft["id"]),
        partition_id=int(partition["id"]),
        concept_ids=ids,
        dictionaries=dictionaries,
        search_bodies=bodies,
    )


def _report(result: PhaseResult, baseline: PhaseResult | None) -> None:
    print(
        f"\n{result.clients} client(s), {result.wall_s:.1f} s: {result.operations} operations, "
        f"{result.requests} requests ({result.requests / result.wall_s:.1f} req/s), "
        f"{result.errors} errors, {result.keep_alive_retries} requests sent again after "
        "a kept-alive connection closed"
    )
    header = (
        f"  {'operation':<9} {'count':>6} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} {'ops/s':>7}"
    )
    if baseline is not None:
        header += f" {'p50 x1':>7} {'p99 x1':>7}"
    print(header)
    for name, s in result.stats.items():
        line = (
            f"  {name:<9} {len(s.latencies):>6} {s.errors:>6} {s.quantile_ms(0.5):>8.1f} "
            f"{s.quantile_ms(0.99):>8.1f} {len(s.latencies) / result.wall_s:>7.1f}"
        )
        if baseline is not None:
            base = baseline.stats[name]
            line += (
                f" {s.quantile_ms(0.5) / base.quantile_ms(0.5):>6.1f}x"
                f" {s.quantile_ms(0.99) / base.quantile_ms(0.99):>6.1f}x"
            )
        print(line)
    if baseline is not None:
        gain = (result.requests / result.wall_s) / (baseline.requests / baseline.wall_s)
        print(f"  throughput vs 1 client: {gain:.2f}x")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        "  CPU cores used: "
        + ", ".join(f"{k} {v:.2f}" for k, v in result.cores.items())
        + f" (machine: {os.cpu_count()} cores, load average {load:.1f})"
    )
    for name, s in result.stats.items():
        for sample in s.samples:
            print(f"  error [{name}]: {sample}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--concepts", type=int, default=2000)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument(
        "--database-url", default=None, help="an empty database to use (default: embedded)"
    )
    parser.add_argument(
        "--keep-alive-s",
        type=int,
        default=Settings.model_fields["keep_alive_timeout_s"].default,
        help="uvicorn's keep-alive timeout (default: the one 'serve' runs with)",
    )
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    extra = ("--timeout-keep-alive", str(args.keep_alive_s))
    with service_under_test(args.database_url, extra) as sut:
        t = time.perf_counter()
        seeded = seed(sut, concepts=args.concepts, layers=args.layers)
        print(
            f"seeded {args.concepts} concepts x {args.layers} layers x {HIDDEN} dims "
            f"through the API in {time.perf_counter() - t:.1f} s",
            flush=True,
        )
        baseline = None
        if args.baseline_seconds > 0:
            baseline = asyncio.run(
                run_phase(
                    sut,
                    seeded,
                    clients=1,
                    seconds=args.baseline_seconds,
                    max_requests=args.max_requests,
                )
            )
            _report(baseline, None)
        result = asyncio.run(
            run_phase(
                sut,
                seeded,
                clients=args.clients,
                seconds=args.seconds,
                max_requests=args.max_requests,
            )
        )
        _report(result, baseline)
    errors = result.errors + (baseline.errors if baseline else 0)
    print(f"\n{'FAIL' if errors else 'OK'}: {errors} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
