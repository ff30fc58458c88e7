"""Shared set-up for the service benchmarks (bench/service_*.py).

Starts a private embedded PostgreSQL in a temp dir, builds the schema with the
migrations, and runs the real service under uvicorn in a **separate process** on a
loopback port (so the benchmark client does not share the server's GIL). Seeds rows
through the ORM; the timed paths always go over HTTP or raw psycopg.

Also the data generator: activation-like vectors (a shared offset with a few large
"outlier" dimensions, clustered low-rank structure, isotropic noise, per-row scale).
Random Gaussian vectors would be the adversarial case for binary quantization; real
residual-stream activations are low-rank, clustered and offset, like these.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg

__all__ = [
    "Activations",
    "ServiceUnderTest",
    "activation_like",
    "machine",
    "seed_concepts",
    "service_under_test",
]


def machine() -> str:
    """One line describing where the numbers came from."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {load:.1f} at start"
    )


@dataclass(frozen=True)
class Activations:
    """Generated atoms plus the generator's structure (to draw fresh queries)."""

    x: np.ndarray[Any, Any]
    mu: np.ndarray[Any, Any]
    basis: np.ndarray[Any, Any]
    spectrum: np.ndarray[Any, Any]
    centers: np.ndarray[Any, Any]

    def fresh(self, n: int, *, seed: int = 7) -> np.ndarray[Any, Any]:
        """New activations from the same distribution (not near any stored atom)."""
        rng = np.random.default_rng(seed)
        lab = rng.integers(0, len(self.centers), n)
        lat = self.centers[lab] + rng.standard_normal((n, len(self.spectrum))) * self.spectrum
        d = self.x.shape[1]
        out = self.mu + lat @ self.basis + 0.35 * rng.standard_normal((n, d))
        return out.astype(np.float32)

    def near(self, n: int, *, seed: int = 1, noise: float = 0.6) -> np.ndarray[Any, Any]:
        """Stored atoms plus noise (an activation where one concept is present)."""
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(self.x), n)
        scale = noise * float(np.abs(self.x[:1000]).mean())
        return (self.x[idx] + scale * rng.standard_normal((n, self.x.shape[1]))).astype(np.float32)


def activation_like(
    n: int, d: int, *, seed: int = 0, rank: int = 256, n_clusters: int = 400
) -> Activations:
    """``n`` activation-like vectors of dimension ``d`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    mu = 0.4 * rng.standard_normal(d)
    outliers = rng.choice(d, 4, replace=False)
    mu[outliers] = rng.choice([-1.0, 1.0], 4) * 15
    basis = rng.standard_normal((rank, d)) / np.sqrt(rank)
    spectrum = np.arange(1, rank + 1) ** -0.5 * 3
    centers = rng.standard_normal((n_clusters, rank)) * spectrum
    x = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 5000):  # bounded memory at 40,000 x 4,096
        m = min(5000, n - start)
        lab = rng.integers(0, n_clusters, m)
        lat = centers[lab] + 0.6 * rng.standard_normal((m, rank)) * spectrum
        block = mu + lat @ basis + 0.35 * rng.standard_normal((m, d))
        x[start : start + m] = block * rng.lognormal(0, 0.2, (m, 1))
    return Activations(x=x, mu=mu, basis=basis, spectrum=spectrum, centers=centers)


@dataclass
class ServiceUnderTest:
    """A running service and its database."""

    base_url: str
    key: str
    libpq_url: str
    data_dir: Path
    app_settings: Any

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=600,
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(base: str, proc: subprocess.Popen[bytes], what: str) -> None:
    """Poll ``GET /docs`` until the server answers; RuntimeError if it exits or 60 s pass."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/docs", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.2)


@contextlib.contextmanager
def service_under_test(
    database_url: str | None = None, uvicorn_args: Sequence[str] = ()
) -> Iterator[ServiceUnderTest]:
    """Embedded PostgreSQL + migrations + uvicorn (subprocess); all removed at exit.

    ``database_url``: use this (empty or migrated) database instead of starting an
    embedded server (the tests pass theirs); it is migrated, not removed.
    ``uvicorn_args``: more uvicorn options (e.g. ``--timeout-keep-alive 30``).
    """
    from pace_service.core.config import Settings
    from pace_service.core.db import create_engine, create_session_factory
    from pace_service.core.embedded import start_embedded
    from pace_service.migrate import upgrade
    from pace_service.store.keys import create_key, get_or_create_namespace

    root = Path(tempfile.mkdtemp(prefix="pace-bench-"))
    server = None if database_url else start_embedded(root / "pgdata", cleanup_mode="delete")
    proc: subprocess.Popen[bytes] | None = None
    try:
        if server is not None:
            url = server.ensure_database("bench")
            libpq_url = server.libpq_url("bench")
        else:
            assert database_url is not None
            url = database_url
            libpq_url = "postgresql://" + url.split("://", 1)[1]
        upgrade(url)
        data_dir = root / "data"
        settings = Settings(database_url=url, data_dir=data_dir)
        engine = create_engine(url, null_pool=True)
        with create_session_factory(engine)() as session:
            ns, _ = get_or_create_namespace(session, "bench")
            key = create_key(session, ns, "admin").key
            session.commit()
        engine.dispose()
        port = _free_port()
        env = {**os.environ, "PACE_DATABASE_URL": url, "PACE_DATA_DIR": str(data_dir)}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "pace_service.main:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                *uvicorn_args,
            ],
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base, proc, "the service")
        yield ServiceUnderTest(
            base_url=base,
            key=key,
            libpq_url=libpq_url,
            data_dir=data_dir,
            app_settings=settings,
        )
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def seed_concepts(
    sut: ServiceUnderTest, *, n: int, hidden_size: int, num_layers: int = 32, hf_id: str
) -> tuple[int, int, list[int], int]:
    """A model, a recipe, ``n`` concepts and a published version holding them.

    Returns (model_id, recipe_id, concept_ids, version_id).
    """
    with psycopg.connect(sut.libpq_url, autocommit=False) as conn:
        ns = conn.execute("SELECT id FROM namespaces WHERE name = 'bench'").fetchone()
        assert ns is not None
        model_id = conn.execute(
            "INSERT INTO models (hf_id, revision, hidden_size, num_layers, architecture) "
            "VALUES (%s, 'main', %s, %s, 'LlamaForCausalLM') RETURNING id",
            (hf_id, hidden_size, num_layers),
        ).fetchone()
        recipe_hash = hashlib.sha256(f"bench-recipe-{hf_id}".encode()).hexdigest()
        recipe_id = conn.execute(
            "INSERT INTO recipes (token_position, reduction, prompt_template, code_version, "
            "content_hash) VALUES ('last', 'mean', '{stimulus}', 'bench', %s) RETURNING id",
            (recipe_hash,),
        ).fetchone()
        ids = [
            int(r[0])
            for r in conn.execute(
                "INSERT INTO concepts (namespace_id, name) "
                "SELECT %s, %s || '-' || g FROM generate_series(1, %s) g RETURNING id",
                (ns[0], hf_id, n),
            ).fetchall()
        ]
        set_id = conn.execute(
            "INSERT INTO concept_sets (namespace_id, name) VALUES (%s, %s) RETURNING id",
            (ns[0], f"{hf_id}-set"),
        ).fetchone()
        assert model_id and recipe_id and set_id
        version_id = conn.execute(
            "INSERT INTO concept_set_versions (set_id, number) VALUES (%s, 1) RETURNING id",
            (set_id[0],),
        ).fetchone()
        assert version_id
        conn.execute(
            "INSERT INTO version_concepts (version_id, concept_id) SELECT %s, unnest(%s::bigint[])",
            (version_id[0], ids),
        )
        conn.execute(
            "UPDATE concept_set_versions SET status = 'published', published_at = now() "
            "WHERE id = %s",
            (version_id[0],),
        )
        conn.commit()
    return int(model_id[0]), int(recipe_id[0]), sorted(ids), int(version_id[0])
