"""Two versions of the compiled CPU kernels, A against B, in whole steered generations.

``bench/solver_kernel_ab.py`` replays a generation's solver calls; it sees a kernel's own
time but not what the kernel does to the model around it (the caches and TLB entries it
takes from the next layer's ops). This bench generates: vanilla, then steered with A's
kernels, then with B's (the order of A and B alternates by repeat), the overhead bench's
CPU setup (SmolLM2-135M, 2,000 centered atoms + mean atom on 30 layers, sink guard, 32
new tokens, greedy). Each argument is a copy of ``pace/solver/_compiled.py``; a side's
kernels are swapped into ``pace.solver._compiled`` while it steers. Reported: ms per new
token (whole generation), the paired ratio B/A per repeat, the decode edits' ms per token
(time inside the layer hooks' edit) and the rest of the step (the model) for B minus A.

    .venv/bin/python bench/steering_kernel_ab.py /tmp/old.py sdk/pace/solver/_compiled.py

``--b-huge-pages`` copies B's kernel arrays (int8 atoms, fp32 atoms, Gram) onto 2 MB pages
(Linux, ``MADV_HUGEPAGE``); pass the same file twice to measure that alone.
"""

from __future__ import annotations

import argparse
import mmap
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import steering_overhead as so
from solver_kernel_ab import _load

import pace.solver._compiled as compiled
import pace.steering.hooks as hooks

# The entry points the steering edit and the prefill reach through ``pace.solver._compiled``.
_ENTRY_POINTS = (
    "remove_row_lowp",
    "remove_token_lowp",
    "solve_lowp_rows",
    "solve_gram_rows",
    "solve_gram_rows_shared",
    "rows_result",
)
_HUGE = 2 << 20


@contextmanager
def _kernels(module: ModuleType) -> Iterator[None]:
    saved = {name: getattr(compiled, name) for name in _ENTRY_POINTS}
    for name in _ENTRY_POINTS:
        setattr(compiled, name, getattr(module, name))
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(compiled, name, fn)


def _on_huge_pages(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` in an anonymous mapping advised to use 2 MB pages (kept alive by it)."""
    size = (a.nbytes // _HUGE + 2) * _HUGE
    mm = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    mm.madvise(mmap.MADV_HUGEPAGE)  # before the first touch
    buf = np.frombuffer(mm, np.uint8)
    off = -buf.ctypes.data % _HUGE
    out = buf[off : off + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def _huge_kernel_args(handle: Any, cache: dict[int, tuple[Any, ...]]) -> None:
    """Give every PaCE layer edit of ``handle`` kernel arrays on 2 MB pages (copied once)."""
    for edit in handle._edits:
        inner = getattr(getattr(edit, "edit_token", None), "__self__", None)
        fused = getattr(inner, "_fused", None)
        if inner is None or fused is None:
            continue
        key = hash(fused[0].tobytes())  # the int8 atoms identify the layer across repeats
        if key not in cache:
            cache[key] = tuple(
                _on_huge_pages(x) if isinstance(x, np.ndarray) and x.nbytes > 4096 else x
                for x in fused
            )
        inner._fused = cache[key]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a", help="baseline copy of _compiled.py")
    p.add_argument("b", help="candidate copy of _compiled.py")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--b-huge-pages", action="store_true", help="B's kernel arrays on 2 MB pages")
    args = p.parse_args()

    workdir = tempfile.mkdtemp(prefix="steering_kernel_ab_")
    sides = {"A": _load(args.a, "steering_kernel_a", workdir),
             "B": _load(args.b, "steering_kernel_b", workdir)}  # fmt: skip
    torch.manual_seed(0)
    model, enc, atoms, und = so.smollm2_setup()
    cen = so.centered_atoms(atoms, und)
    n = args.new_tokens
    eos = model.config.eos_token_id

    edit_s = [0.0]
    real_apply = hooks._apply

    def timed_apply(hidden: torch.Tensor, edit: Any, *rest: Any) -> Any:
        t = time.perf_counter()
        out = real_apply(hidden, edit, *rest)
        if hidden.shape[1] == 1:
            edit_s[0] += time.perf_counter() - t
        return out

    hooks._apply = timed_apply  # edit_hook looks it up at call time

    huge_cache: dict[int, tuple[Any, ...]] = {}
    ms: dict[str, list[float]] = {"vanilla": [], "A": [], "B": []}
    edits_ms: dict[str, list[float]] = {"A": [], "B": []}
    tokens: dict[str, list[list[int]]] = {}
    for rep in range(args.repeats + 1):  # the first round warms up (and compiles)
        for name in ("vanilla", "A", "B") if rep % 2 == 0 else ("vanilla", "B", "A"):
            edit_s[0] = 0.0
            # The layer edits pick their kernels when steer() prepares them: inside.
            with (
                _kernels(sides.get(name, compiled)),
                torch.no_grad(),
                so.centered_steering(model, cen, name != "vanilla") as handle,
            ):
                if name == "B" and args.b_huge_pages:
                    _huge_kernel_args(handle, huge_cache)
                t = time.perf_counter()
                out = model.generate(
                    **enc, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=eos
                )
                dt = time.perf_counter() - t
            tokens.setdefault(name, out.tolist())
            if rep:
                ms[name].append(dt * 1e3 / n)
                if name in edits_ms:
                    edits_ms[name].append(edit_s[0] * 1e3 / (n - 1))

    med = {k: statistics.median(v) for k, v in ms.items()}
    print(f"torch threads {torch.get_num_threads()}; {n} new tokens; medians of {args.repeats}"
          + ("; B's kernel arrays on 2 MB pages" if args.b_huge_pages else ""))  # fmt: skip
    print("ms/token: " + ", ".join(f"{k} {v:.2f}" for k, v in med.items()))
    print(f"x vanilla (medians): A {med['A'] / med['vanilla']:.3f}, "
          f"B {med['B'] / med['vanilla']:.3f}")  # fmt: skip
    pairs = [b / a for a, b in zip(ms["A"], ms["B"], strict=True)]
    print("B/A per repeat: " + " ".join(f"{r:.3f}" for r in pairs)
          + f"; median {statistics.median(pairs):.3f}")  # fmt: skip
    for side in ("A", "B"):
        print(f"decode edits ms/token, {side}: " + " ".join(f"{x:.1f}" for x in edits_ms[side]))
    rest = [(b - eb) - (a - ea) for a, b, ea, eb in
            zip(ms["A"], ms["B"], edits_ms["A"], edits_ms["B"], strict=True)]  # fmt: skip
    print("the rest of a step (model), B - A, ms/token: " + " ".join(f"{x:+.1f}" for x in rest)
          + f"; median {statistics.median(rest):+.2f}")  # fmt: skip
    print(f"A and B generate the same tokens: {tokens['A'] == tokens['B']}")


if __name__ == "__main__":
    main()
