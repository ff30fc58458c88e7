"""Dictionary pull: cold (download) and warm (cache hit) against loading a local file.

A loopback HTTP server serves one ``pace.dictionary/1`` file shaped like the CPU
steering benchmark's (SmolLM2-135M: 2,000 atoms x 576 dims x 30 layers, fp16, 69 MB).
All three are timed in this process and reported as ratios to the local load:

- ``load``: ``ConceptDictionary.load(path)`` of a file already on disk (the floor);
- ``warm``: ``Client.pull_dictionary_by_hash`` with the blob cached (no request);
- ``cold``: the same with the blob removed first (stream, fsync, check, rename, load).

Run: ``.venv/bin/python bench/client_pull.py [--atoms 2000 --dim 576 --layers 30 --reps 7]``
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import torch

from pace.client import Client
from pace.dictionary import ConceptDictionary


def make_file(n: int, d: int, layers: int) -> tuple[str, bytes]:
    h = hashlib.sha256(f"bench-{n}-{d}-{layers}".encode()).hexdigest()
    g = torch.Generator().manual_seed(0)
    dictionary = ConceptDictionary(
        atoms={layer: torch.randn(n, d, generator=g).half() for layer in range(layers)},
        concept_names=[f"concept-{i}" for i in range(n)],
        concept_ids=torch.arange(n, dtype=torch.int64),
        labels=(torch.rand(n, generator=g) < 0.1).to(torch.int8),
        metadata={"content_hash": h},
    )
    return h, dictionary.to_bytes()


def serve(h: str, data: bytes) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", f'"{h}"')
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def timed(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()

    h, data = make_file(args.atoms, args.dim, args.layers)
    httpd, base = serve(h, data)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        local = root / "local.safetensors"
        local.write_bytes(data)
        client = Client(base, "k", cache_dir=root / "cache", progress=False)

        def cold() -> None:
            client.cache.remove(h)
            client.pull_dictionary_by_hash(h)

        t_load = timed(lambda: ConceptDictionary.load(local), args.reps)
        t_cold = timed(cold, args.reps)
        t_warm = timed(lambda: client.pull_dictionary_by_hash(h), args.reps)
        client.close()
    httpd.shutdown()
    httpd.server_close()

    mb = len(data) / 1e6
    print(f"dictionary: {args.atoms} atoms x {args.dim} dims x {args.layers} layers, {mb:.1f} MB")
    print(f"load (local file) : {t_load * 1e3:8.1f} ms   1.00x")
    print(f"warm pull (cached): {t_warm * 1e3:8.1f} ms   {t_warm / t_load:5.2f}x")
    print(
        f"cold pull (HTTP)  : {t_cold * 1e3:8.1f} ms   {t_cold / t_load:5.2f}x"
        f"   ({mb / t_cold:.0f} MB/s)"
    )


if __name__ == "__main__":
    main()
