"""Two versions of the compiled CPU kernels, A against B, on a real generation's solver inputs.

Each argument is a copy of ``pace/solver/_compiled.py`` (e.g. ``git show REV:sdk/pace/
solver/_compiled.py > /tmp/old.py``); both are loaded in this one process as separate
modules, and every decode edit and every prefill of the replayed generation (the inputs
``bench/steering_solver_replay.py`` captures) runs through both. Before each call a 15 MB
buffer is streamed, as the model's weights stream between two edits in generation, so
both start cold; the order alternates call by call (whichever runs second on the same
inputs would otherwise gain). Reported: CPU time of this thread per decode layer-call
(``remove_row_lowp``, the fused edit) and per prefill row (``solve_gram_rows``, one
thread), and the ratio B/A per repeat.

    .venv/bin/python bench/solver_kernel_ab.py /tmp/old.py sdk/pace/solver/_compiled.py \\
        --inputs /tmp/replay.pt --atoms cen --repeats 2

``--screen-a`` / ``--screen-b`` give each side its own first working set (the solver's
``screen_size``); with the same file twice they compare sizes, e.g. ``--screen-a 16
--screen-b 8``.

15 MB evicts the caches a call uses for itself, but not a 105 MB L3 like this machine's:
the dictionary and Gram rows the other side just read may still be there, while in
generation the whole model streams between two calls of a layer. ``--evict-mb 200``
makes every call cold in DRAM too (slower: about 20 ms per call).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from types import ModuleType
from typing import Any

import numpy as np
import torch


def _load(path: str, name: str, workdir: str) -> ModuleType:
    # A copy under its own name: numba caches compiled code by source path, and a cache
    # written for this module name must not be found by `import pace.solver._compiled`.
    copy = os.path.join(workdir, f"{name}.py")
    shutil.copy(path, copy)
    spec = importlib.util.spec_from_file_location(name, copy)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _Replay:
    """The captured inputs of one dictionary (``raw`` or ``cen``) and the solvers' arrays."""

    def __init__(self, path: str, atoms: str, evict_mb: int = 15) -> None:
        if not os.path.exists(path):
            sys.path.insert(0, os.path.dirname(__file__))
            from steering_solver_replay import capture

            capture(path)
        from pace.solver import ElasticNet

        d = torch.load(path)[atoms]
        layers = sorted(d["atoms"])
        self.solvers = [ElasticNet(d["atoms"][layer].float()) for layer in layers]
        und = d["und"].numpy().astype(bool)
        self.n_u = int(und.sum())
        self.pos = np.full(und.shape[0], -1, np.int64)
        self.pos[und] = np.arange(self.n_u)
        self.d_u = np.ascontiguousarray(d["atoms"][layers[0]].float().numpy()[und])
        self.rows = [[y[0].float().numpy() for y in d["ys"][li] if y.shape[0] == 1]
                     for li in range(len(layers))]  # fmt: skip
        self.prefill = []
        for li, s in enumerate(self.solvers):
            y = d["ys"][li][0].float()
            self.prefill.append((y / y.norm(dim=1, keepdim=True) @ s.atoms.T).numpy())
        self._evict = evict_mb * 2**20 // 8
        self._junk = np.ones(max(600, 3 * evict_mb) * 2**20 // 8)
        self._at = 0

    def evict(self) -> None:
        n = self._evict
        start = self._at
        self._at = (start + n) % (self._junk.size - n)
        self._junk[start : start + n].sum()

    def decode(self, kernels: Any, li: int, z: np.ndarray, screen: int | None = None) -> float:
        args = list(self.solvers[li].cpu_row_kernel_args)
        if screen is not None:
            args[9] = screen  # (q, scale, col, err, atoms, gram, l1, l2, tol, screen, rounds)
        c_u, out = np.zeros(self.n_u, np.float32), np.empty_like(z)
        t = time.thread_time()
        status, _ = kernels.remove_row_lowp(z, *args, self.pos, self.d_u, c_u, out)
        dt = time.thread_time() - t
        assert status == kernels.OK, status
        return dt

    def prefill_rows(self, kernels: Any, li: int, screen: int | None = None) -> float:
        r, s = self.prefill[li], self.solvers[li]
        none = np.zeros((r.shape[0], 0), np.int64)
        kernel_args = list(s._kernel_args)
        if screen is not None:
            kernel_args[3] = screen  # (l1, l2, tol, screen, rounds)
        t = time.thread_time()
        _, _, status = kernels.solve_gram_rows(
            r, s._gram_np, *kernel_args, none, none.astype(np.bool_)
        )
        dt = time.thread_time() - t
        assert status == kernels.OK, status
        return dt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a", help="baseline copy of _compiled.py")
    p.add_argument("b", help="candidate copy of _compiled.py")
    p.add_argument("--inputs", default="/tmp/replay.pt", help="captured solver inputs")
    p.add_argument("--atoms", choices=["cen", "raw"], default="cen")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--screen-a", type=int, default=None, help="A's first working set")
    p.add_argument("--screen-b", type=int, default=None, help="B's first working set")
    p.add_argument("--evict-mb", type=int, default=15, help="MB streamed before each call")
    args = p.parse_args()
    torch.set_num_threads(1)
    replay = _Replay(args.inputs, args.atoms, args.evict_mb)
    with tempfile.TemporaryDirectory() as workdir:
        kernels = {name: _load(path, f"kernels_{name.lower()}", workdir)
                   for name, path in (("A", args.a), ("B", args.b))}  # fmt: skip
        for k in kernels.values():  # compile (or load from cache) before timing
            replay.decode(k, 0, replay.rows[0][0])
            replay.prefill_rows(k, 0)
        screens = {"A": args.screen_a, "B": args.screen_b}
        layers, steps = len(replay.rows), len(replay.rows[0])
        spent = {name: [0.0, 0.0] for name in kernels}
        ratios: list[tuple[float, float]] = []
        for rep in range(args.repeats):
            dec = {name: 0.0 for name in kernels}
            pre = {name: 0.0 for name in kernels}
            for step in range(steps):
                for li in range(layers):
                    names = ["A", "B"] if (step + li + rep) % 2 else ["B", "A"]
                    for name in names:
                        replay.evict()
                        z = replay.rows[li][step]
                        dec[name] += replay.decode(kernels[name], li, z, screens[name])
            for li in range(layers):
                for name in ["A", "B"] if (li + rep) % 2 else ["B", "A"]:
                    replay.evict()
                    pre[name] += replay.prefill_rows(kernels[name], li, screens[name])
            for name in kernels:
                spent[name][0] += dec[name]
                spent[name][1] += pre[name]
            ratios.append((dec["B"] / dec["A"], pre["B"] / pre["A"]))
    calls = args.repeats * steps * layers
    rows = args.repeats * sum(r.shape[0] for r in replay.prefill)
    for name, (d, q) in spent.items():
        print(f"{name}: decode {d / calls * 1e6:.0f} us per layer-call, "
              f"prefill {q / rows * 1e6:.0f} us per row")  # fmt: skip
    print("B/A per repeat: decode " + ", ".join(f"{r[0]:.3f}" for r in ratios)
          + "; prefill " + ", ".join(f"{r[1]:.3f}" for r in ratios))  # fmt: skip


if __name__ == "__main__":
    main()
