"""First use of the CPU solver: numba compiling its kernels, against loading them from cache.

Two fresh processes share ``NUMBA_CACHE_DIR``, a new, empty directory: the first compiles
the kernels (and writes the cache), the second loads them from it. Each times the first
solve of one row (a decode step: the int8-screened kernel) and then of eight rows (a
prefill: the batched Gram kernel) on a small dictionary (200 x 32: the kernels' types do
not depend on the size), less the same solve repeated; and counts the functions numba
compiled, and those of them for literal int arguments (extra versions of a callee that a
constant passed as a plain int avoids).

    .venv/bin/python bench/solver_compile.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

CHILD = """
import json, time, torch
from numba.core import event
from pace.solver import ElasticNet
torch.manual_seed(0)
solver = ElasticNet(torch.randn(200, 32), alpha=0.05, tau=0.95)
out = {}
with event.install_recorder("numba:compile") as rec:
    for key, rows in (("one", 1), ("eight", 8)):
        y = torch.randn(rows, 32)
        t = time.perf_counter(); solver.solve_sparse(y); first = time.perf_counter() - t
        t = time.perf_counter(); solver.solve_sparse(y); again = time.perf_counter() - t
        out[key] = first - again  # compiling or loading; the solve itself is the same
starts = [ev for _, ev in rec.buffer if ev.is_start]
out["compiled"] = len(starts)
out["literal"] = sum("Literal[int]" in str(ev.data["args"]) for ev in starts)
print(json.dumps(out))
"""


def _child(cache: str) -> dict[str, float]:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="pace-numba-") as cache:
        cold = _child(cache)
        warm = _child(cache)
    print(f"{'first solve, less a repeat':28} {'compiling':>10} {'from cache':>11} {'ratio':>8}")
    for key, label in (("one", "one row (decode), s"), ("eight", "then eight rows, s")):
        print(f"{label:28} {cold[key]:10.2f} {warm[key]:11.3f} {cold[key] / warm[key]:8.0f}")
    print(f"functions compiled: {cold['compiled']:.0f} (for literal int arguments: "
          f"{cold['literal']:.0f}); from cache: {warm['compiled']:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
