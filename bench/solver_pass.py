"""The int8 screening pass of a decode-step solve, cold and warm, against one stream.

``pace.solver._compiled._pass_lowp`` computes ``scale * (q @ (col * y))`` over a layer's
int8 atoms (2,000 x 576 for SmolLM2: 1.2 MB). In generation the model's weights pass
through the caches between two calls for the same layer, so the pass reads its atoms
from memory. Baseline: the same arithmetic one row at a time (one sequential stream),
compiled with the same flags, in this process. Also shown: the same kernel on int16
codes (2.3 MB, the pass before int8) and torch's fp32 matrix-vector product (4.6 MB).

    .venv/bin/python bench/solver_pass.py [--atoms 2000] [--dim 576]

"cold": 30 layers' atoms in rotation and 18 MB (about one SmolLM2 layer's weights) read
between calls; "warm": one layer's atoms called again and again. Medians of wall time.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pace.solver import _compiled


def _one_stream(q: Any, scale: Any, col: Any, y: Any, out: Any) -> None:
    n, d = q.shape
    yc = col * y
    for j in range(n):
        row = q[j]
        s = np.float32(0.0)
        for i in range(d):
            s += np.float32(row[i]) * yc[i]
        out[j] = float(s * scale[j])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--atoms", type=int, default=2000)
    p.add_argument("--dim", type=int, default=576)
    p.add_argument("--layers", type=int, default=30)
    p.add_argument("--calls", type=int, default=300)
    args = p.parse_args()
    if not _compiled.AVAILABLE:
        raise SystemExit("numba is not installed")
    import numba

    baseline = numba.njit(nogil=True, error_model="numpy", fastmath=_compiled._FASTMATH)(
        _one_stream
    )
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n, d = args.atoms, args.dim
    qs = [rng.integers(-127, 128, (n, d)).astype(np.int8) for _ in range(args.layers)]
    q16 = [rng.integers(-32767, 32768, (n, d)).astype(np.int16) for _ in qs]
    dense = [torch.from_numpy(rng.standard_normal((n, d)).astype(np.float32)) for _ in qs]
    scale = np.full(n, 1.0 / 127, np.float32)
    col = rng.uniform(0.5, 2.0, d).astype(np.float32)
    ones = np.ones(d, np.float32)
    y = rng.standard_normal(d).astype(np.float32)
    yt = torch.from_numpy(y)
    junk = np.ones(18_000_000 // 8)

    def timed(call: Callable[[int], object], cold: bool) -> float:
        call(0)
        ts = []
        for k in range(args.calls):
            layer = k % args.layers if cold else 0
            if cold:
                junk.sum()
            t = time.perf_counter()
            call(layer)
            ts.append(time.perf_counter() - t)
        return float(np.median(ts)) * 1e3

    out = np.empty(n)
    ref = np.empty(n)
    _compiled._pass_lowp(qs[0], scale, col, y, out)
    baseline(qs[0], scale, col, y, ref)
    assert np.allclose(out, ref, rtol=0, atol=1e-5 * np.abs(ref).max()), "kernels disagree"
    calls: dict[str, Callable[[int], object]] = {
        "one stream (baseline)": lambda i: baseline(qs[i], scale, col, y, out),
        "pace, eight streams": lambda i: _compiled._pass_lowp(qs[i], scale, col, y, out),
        "eight streams, int16": lambda i: _compiled._pass_lowp(q16[i], scale, ones, y, out),
        "torch fp32 matvec": lambda i: dense[i] @ yt,
    }
    print(f"{n} x {d} int8 atoms ({n * d / 1e6:.1f} MB), {args.layers} layers, "
          f"torch 1 thread; median ms per pass")  # fmt: skip
    print(f"{'kernel':24} {'cold ms':>8} {'x base':>7} {'warm ms':>8} {'x base':>7}")
    got = {name: (timed(call, True), timed(call, False)) for name, call in calls.items()}
    base_cold, base_warm = got["one stream (baseline)"]
    for name, (cold_ms, warm_ms) in got.items():
        print(f"{name:24} {cold_ms:8.3f} {cold_ms / base_cold:7.2f} "
              f"{warm_ms:8.3f} {warm_ms / base_warm:7.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
