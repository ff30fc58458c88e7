"""What small operations cost on this GPU, for designing the solver's device path.

Medians over 200 calls, each followed by a sync: one tiny op, 10 and 100 of them launched
eagerly and as one CUDA graph, one pass over a 10,000 x 4,096 fp16 dictionary, topk,
small Cholesky and LU solves, a device-to-host copy, and one Triton launch.

    python bench/cuda_primitives.py
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from solver_bench import timeit

DEV = "cuda"


def micros(fn: Callable[[], object], reps: int = 200) -> float:
    """Median microseconds of ``fn()`` plus a sync, after one warm-up call."""
    return 1e6 * timeit(fn, reps, torch.device(DEV))


def main() -> None:
    x = torch.randn(1, 64, device=DEV)

    def ops(count: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(count):
                x.add_(1)

        return run

    print(f"sync alone: {micros(lambda: None):.1f} us")
    for count in (1, 10, 100):
        print(f"{count} tiny ops, eager: {micros(ops(count)):.1f} us")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        ops(100)()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        ops(100)()
    print(f"100 tiny ops, one CUDA graph replay: {micros(graph.replay):.1f} us")
    atoms = torch.randn(10_000, 4096, device=DEV, dtype=torch.float16)
    for b in (1, 64):
        y = torch.randn(b, 4096, device=DEV, dtype=torch.float16)
        us = micros(lambda: y @ atoms.T)  # noqa: B023 (used at once)
        print(f"pass y @ D.T, fp16 10,000 x 4,096, b={b}: {us:.1f} us")
    r = torch.randn(1, 10_000, device=DEV)
    print(f"topk 32 of 10,000: {micros(lambda: torch.topk(r.abs(), 32, sorted=False)):.1f} us")
    for k in (32, 64, 128):
        a = torch.randn(1, k, k, device=DEV)
        h = a @ a.transpose(1, 2) + torch.eye(k, device=DEV)
        chol = micros(lambda: torch.linalg.cholesky_ex(h))  # noqa: B023 (used at once)
        lu = micros(lambda: torch.linalg.solve_ex(h, h[..., :1]))  # noqa: B023
        print(f"({k} x {k}) cholesky_ex {chol:.1f} us, solve_ex {lu:.1f} us")
    hb = torch.randn(1, 64, 64, device=DEV)
    print(f"device to host, 64 x 64 fp32: {micros(lambda: hb.cpu()):.1f} us")
    try:
        import triton
        import triton.language as tl

        @triton.jit
        def add_one(p, n: tl.constexpr):  # type: ignore[no-untyped-def]
            o = tl.arange(0, n)
            tl.store(p + o, tl.load(p + o) + 1)

        z = torch.zeros(64, device=DEV)
        print(f"triton {triton.__version__} launch: {micros(lambda: add_one[(1,)](z, 64)):.1f} us")
    except ImportError as exc:
        print(f"no triton: {exc}")


if __name__ == "__main__":
    main()
