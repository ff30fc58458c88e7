"""Small batches off the CPU row-wise path: rounds on the host against rounds on the device.

What a decode step on a GPU runs, measured on any device (here the CPU, with
``cpu_rowwise=False``): ``ElasticNet.solve`` with the rounds kept on the host
(``pace.solver._host_rounds``, the default for up to 16 rows) against the general path,
whose rounds are batched steps on the device (``host_rounds_max_rows=0``). Both give the
same certified answer. Per configuration, in one process:

- torch operations dispatched per solve, views left out (on a GPU each is a kernel
  launch or a copy: about 10 us each at batch 1 on an H100, where a pass over D takes
  50 us);
- wall-clock time per solve, interleaved, and the ratio device rounds / host rounds
  (on a CPU this is mostly the passes over D; the launch costs are a GPU's).

    .venv/bin/python bench/solver_rounds.py               # n=10,000, d=4,096, b=1 and 8
    .venv/bin/python bench/solver_rounds.py --device cuda --dtype float16
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from pace.solver import ElasticNet, ElasticNetConfig

ALPHA, TAU = 0.05, 0.95


# Operations that only make a new view of a tensor's memory: no kernel on any device.
_VIEWS = {
    "view", "_unsafe_view", "expand", "detach", "lift_fresh", "alias", "unsqueeze",
    "squeeze", "transpose", "t", "select", "slice", "as_strided", "permute", "_reshape_alias",
}  # fmt: skip


class _Ops(TorchDispatchMode):
    """Counts the aten operations dispatched while active, views left out."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = str(func.overloadpacket.__name__)
        if name not in _VIEWS:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def _problem(n: int, d: int, batch: int, device: str, dtype: torch.dtype) -> tuple[Any, Any]:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from solver_bench import make_atoms, make_targets

    atoms = make_atoms(n, d, seed=n + d).to(device, dtype)
    unit = atoms.float() / atoms.float().norm(dim=1, keepdim=True)
    y = make_targets(unit.cpu(), batch, seed=batch).to(device, dtype)
    return atoms, y


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--d", type=int, default=4_096)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    dtype = getattr(torch, args.dtype)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    print(f"n={args.n} d={args.d} {args.dtype} on {args.device}; torch threads "
          f"{torch.get_num_threads()}; median of {args.repeats} interleaved calls")  # fmt: skip
    for batch in args.batches:
        atoms, y = _problem(args.n, args.d, batch, args.device, dtype)
        paths = {
            "host rounds": ElasticNet(atoms, alpha=ALPHA, tau=TAU, config=ElasticNetConfig(
                cpu_rowwise=False, fixed_schedule=False)),
            "device rounds": ElasticNet(atoms, alpha=ALPHA, tau=TAU, config=ElasticNetConfig(
                cpu_rowwise=False, fixed_schedule=False, host_rounds_max_rows=0)),
        }  # fmt: skip
        answers = {name: s.solve(y) for name, s in paths.items()}  # also warms up
        diff = float((answers["host rounds"] - answers["device rounds"]).abs().max())
        nnz = float((answers["host rounds"] != 0).sum(1).float().mean())
        ops = {}
        for name, s in paths.items():
            with _Ops() as mode:
                s.solve(y)
            ops[name] = mode.ops
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.repeats):
            for name, s in paths.items():
                sync()
                t0 = time.perf_counter()
                s.solve(y)
                sync()
                times[name].append(time.perf_counter() - t0)
        med = {name: statistics.median(t) for name, t in times.items()}
        print(f"b={batch}: support {nnz:.1f} atoms per row; largest difference {diff:.1e}")
        for name in paths:
            top = ", ".join(f"{op} {k}" for op, k in ops[name].most_common(4))
            print(f"  {name:13} {sum(ops[name].values()):5d} ops ({top}); "
                  f"{med[name] * 1e3:8.3f} ms")  # fmt: skip
        ratio_ops = sum(ops["device rounds"].values()) / sum(ops["host rounds"].values())
        ratio_t = med["device rounds"] / med["host rounds"]
        print(f"  device rounds / host rounds: {ratio_ops:.1f}x the ops, {ratio_t:.2f}x the time")


if __name__ == "__main__":
    main()
