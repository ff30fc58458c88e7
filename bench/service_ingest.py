"""Ingest: 10,000 x 4,096 atoms uploaded through the service vs a raw binary COPY load.

Both load the same rows into the same ``atoms`` table in one transaction each, for a
fresh model every round (so neither pays for index maintenance). Timed:

- ``raw COPY``: psycopg ``COPY atoms ... FROM STDIN (FORMAT BINARY)`` + commit, with
  the COPY stream already encoded (the floor: only the server-side work);
- ``service``: ``POST /v1/models/{id}/vectors`` with the safetensors body already
  encoded, until the response (HTTP, parse, validation, access checks, lookup of
  existing keys, encode, COPY, commit).

A small untimed upload warms the service up first. Rounds alternate; the medians and
their ratio are printed (target: <= 1.5x). After
each service upload the service builds the search index in the background; the next
round waits for it, and its duration is reported too.

Run: ``.venv/bin/python bench/service_ingest.py [--n 10000 --dim 4096 --rounds 5]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import psycopg
from safetensors.numpy import save as st_save
from service_harness import activation_like, machine, seed_concepts, service_under_test

from pace_service.copy import copy_in
from pace_service.store.search_index import index_name
from pace_service.store.vectors import atom_layout


def _wait_for_index(libpq_url: str, name: str, timeout: float = 600) -> float:
    start = time.perf_counter()
    with psycopg.connect(libpq_url, autocommit=True) as conn:
        while time.perf_counter() - start < timeout:
            row = conn.execute(
                "SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
                "WHERE c.relname = %s",
                (name,),
            ).fetchone()
            if row and row[0]:
                break
            time.sleep(0.05)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    vecs = activation_like(args.n, args.dim).x.astype(np.float16)
    raw_times: list[float] = []
    svc_times: list[float] = []
    index_times: list[float] = []
    with service_under_test() as sut, sut.client() as http:
        # warm-up (imports, first connections), not timed
        model_id, recipe_id, ids, _ = seed_concepts(sut, n=100, hidden_size=args.dim, hf_id="warm")
        warm = st_save(
            {
                "vectors": vecs[:100],
                "concept_ids": np.asarray(ids, np.int64),
                "layers": np.zeros(100, np.int64),
            }
        )
        http.post(
            f"/v1/models/{model_id}/vectors",
            params={"recipe_id": recipe_id},
            content=warm,
            headers={"Content-Type": "application/octet-stream"},
        ).raise_for_status()
        _wait_for_index(sut.libpq_url, index_name(model_id, 0, recipe_id))
        for r in range(args.rounds):
            # raw COPY into a fresh model
            model_id, recipe_id, ids, _ = seed_concepts(
                sut, n=args.n, hidden_size=args.dim, hf_id=f"raw-{r}"
            )
            cids = np.asarray(ids, np.int64)
            layout = atom_layout(args.dim)
            stream = layout.encode(
                {
                    "model_id": model_id,
                    "layer": np.zeros(args.n, np.int32),
                    "recipe_id": recipe_id,
                    "concept_id": cids,
                    "vector": vecs,
                }
            )
            with psycopg.connect(sut.libpq_url) as conn:
                t = time.perf_counter()
                copy_in(conn, "atoms", layout, stream)
                conn.commit()
                raw_times.append(time.perf_counter() - t)

            # the same rows through the service, for another fresh model
            model_id, recipe_id, ids, _ = seed_concepts(
                sut, n=args.n, hidden_size=args.dim, hf_id=f"svc-{r}"
            )
            body = st_save(
                {
                    "vectors": vecs,
                    "concept_ids": np.asarray(ids, np.int64),
                    "layers": np.zeros(args.n, np.int64),
                }
            )
            t = time.perf_counter()
            resp = http.post(
                f"/v1/models/{model_id}/vectors",
                params={"recipe_id": recipe_id},
                content=body,
                headers={"Content-Type": "application/octet-stream"},
            )
            svc_times.append(time.perf_counter() - t)
            resp.raise_for_status()
            assert resp.json() == {"inserted": args.n, "skipped": 0}, resp.text
            index_times.append(_wait_for_index(sut.libpq_url, index_name(model_id, 0, recipe_id)))
            print(
                f"round {r}: raw COPY {raw_times[-1]:.3f} s, service {svc_times[-1]:.3f} s, "
                f"then index build {index_times[-1]:.1f} s (background)",
                flush=True,
            )
        # re-sending the last upload: every row is found identical and skipped
        t = time.perf_counter()
        resp = http.post(
            f"/v1/models/{model_id}/vectors",
            params={"recipe_id": recipe_id},
            content=body,
            headers={"Content-Type": "application/octet-stream"},
        )
        resend = time.perf_counter() - t
        assert resp.json() == {"inserted": 0, "skipped": args.n}, resp.text
    raw, svc = statistics.median(raw_times), statistics.median(svc_times)
    mb = vecs.nbytes / 1e6
    print(f"\n{args.n} x {args.dim} fp16 ({mb:.0f} MB), median of {args.rounds} rounds:")
    print(f"  raw binary COPY load : {raw:.3f} s ({mb / raw:.0f} MB/s)")
    print(f"  service upload       : {svc:.3f} s ({mb / svc:.0f} MB/s)")
    print(f"  ratio service / raw  : {svc / raw:.2f}x (target <= 1.5x)")
    print(f"  identical re-send    : {resend:.3f} s (all {args.n} rows skipped)")
    print(f"  background HNSW build: {statistics.median(index_times):.1f} s for {args.n} rows")


if __name__ == "__main__":
    main()
