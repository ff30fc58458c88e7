"""Dictionary pull: 10,000 x 4,096 through the service vs raw binary COPY from PostgreSQL.

- ``raw COPY``: psycopg ``COPY (SELECT concept_id, vector FROM atoms ...) TO STDOUT
  (FORMAT BINARY)`` of the same rows, bytes only; and the same plus decoding into
  NumPy arrays (pace_service.copy);
- ``service``: ``GET /v1/dictionaries/{hash}`` of the materialized file over HTTP
  (uvicorn on loopback, another process), bytes only; and the same plus
  ``safetensors.numpy.load``.

The one-time materialization (``POST /v1/dictionaries``: COPY out, write the file) is
reported separately. Rounds alternate; medians and ratios are printed (target: the
pull is no slower than the raw COPY).

Run: ``.venv/bin/python bench/service_dictionary_pull.py [--n 10000 --dim 4096 --reps 5]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import psycopg
from psycopg import sql
from safetensors.numpy import load as st_load
from service_harness import activation_like, machine, seed_concepts, service_under_test

from pace_service.copy import RowLayout, copy_in, copy_out
from pace_service.store.vectors import atom_layout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    vecs = activation_like(args.n, args.dim).x.astype(np.float16)
    with service_under_test() as sut, sut.client() as http:
        model_id, recipe_id, ids, version_id = seed_concepts(
            sut, n=args.n, hidden_size=args.dim, hf_id="pull"
        )
        layout = atom_layout(args.dim)
        with psycopg.connect(sut.libpq_url) as conn:
            copy_in(
                conn,
                "atoms",
                layout,
                layout.encode(
                    {
                        "model_id": model_id,
                        "layer": np.zeros(args.n, np.int32),
                        "recipe_id": recipe_id,
                        "concept_id": np.asarray(ids, np.int64),
                        "vector": vecs,
                    }
                ),
            )
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE atoms")

        t = time.perf_counter()
        resp = http.post(
            "/v1/dictionaries",
            json={
                "concept_set_version_id": version_id,
                "model_id": model_id,
                "layers": [0],
                "recipe_id": recipe_id,
            },
        )
        build = time.perf_counter() - t
        resp.raise_for_status()
        info = resp.json()
        assert resp.status_code == 201 and info["n_concepts"] == args.n, info

        query = sql.SQL(
            "SELECT concept_id, vector FROM atoms WHERE model_id = {} AND recipe_id = {} "
            "AND layer = 0 ORDER BY concept_id"
        ).format(sql.Literal(model_id), sql.Literal(recipe_id))
        out_layout = RowLayout((("concept_id", "int8"), ("vector", "halfvec")), dim=args.dim)
        raw_bytes: list[float] = []
        raw_numpy: list[float] = []
        svc_bytes: list[float] = []
        svc_numpy: list[float] = []
        with psycopg.connect(sut.libpq_url, autocommit=True) as conn:
            for _ in range(args.reps):
                t = time.perf_counter()
                statement = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT BINARY)").format(query)
                buf = bytearray()
                with conn.cursor() as cur, cur.copy(statement) as copy:
                    for chunk in copy:
                        buf += chunk
                raw_bytes.append(time.perf_counter() - t)

                t = time.perf_counter()
                rows = copy_out(conn, query, out_layout)
                atoms = rows["vector"].astype("<f2")
                raw_numpy.append(time.perf_counter() - t)
                assert np.array_equal(atoms, vecs)

                t = time.perf_counter()
                data = bytearray()
                with http.stream("GET", f"/v1/dictionaries/{info['hash']}") as r:
                    r.raise_for_status()
                    for chunk in r.iter_bytes(1 << 20):
                        data += chunk
                svc_bytes.append(time.perf_counter() - t)

                t = time.perf_counter()
                body = http.get(f"/v1/dictionaries/{info['hash']}").content
                tensors = st_load(body)
                svc_numpy.append(time.perf_counter() - t)
                assert np.array_equal(tensors["atoms.0"], vecs)
        etag = http.get(
            f"/v1/dictionaries/{info['hash']}", headers={"If-None-Match": f'"{info["hash"]}"'}
        )
        assert etag.status_code == 304
    mb = vecs.nbytes / 1e6
    rb, rn = statistics.median(raw_bytes), statistics.median(raw_numpy)
    sb, sn = statistics.median(svc_bytes), statistics.median(svc_numpy)
    print(f"\n{args.n} x {args.dim} fp16 ({mb:.0f} MB), median of {args.reps}:")
    print(f"  raw binary COPY, bytes        : {rb:.3f} s ({mb / rb:.0f} MB/s)")
    print(f"  raw binary COPY, to NumPy     : {rn:.3f} s")
    print(f"  service GET, bytes            : {sb:.3f} s ({mb / sb:.0f} MB/s)")
    print(f"  service GET, to NumPy         : {sn:.3f} s")
    print(f"  ratio service / raw (bytes)   : {sb / rb:.2f}x (target <= 1.0x)")
    print(f"  ratio service / raw (NumPy)   : {sn / rn:.2f}x")
    print(
        f"  one-time materialization POST : {build:.3f} s ({info['size_bytes'] / 1e6:.0f} MB file)"
    )


if __name__ == "__main__":
    main()
