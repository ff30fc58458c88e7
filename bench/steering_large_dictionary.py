"""Steering with a dictionary too large for a cached Gram: the compiled kernel vs NumPy.

Above ``ElasticNetConfig.gram_max_n`` atoms (4,096) the CPU solver caches no n x n Gram
(10,000 atoms would take 400 MB per layer). A decode step is then solved by the compiled
kernel with int8 passes for its KKT checks; before, by the NumPy path (a batched fp32
product per round). This bench generates with SmolLM2-135M and ``--atoms`` atoms (the
overhead bench's recipe: real concept atoms plus activation-like mixtures, 5%
undesirable) on all 30 layers, centered + mean atom + sink guard, greedy, and alternates
in one process: vanilla, PaCE as shipped ("kernel"), and PaCE with the kernel switched
off for decode steps ("numpy", the code before it). Prompt passes (several rows) take the
NumPy path in both. Prints ms per new token, ratios to vanilla (medians and paired), and
whether both PaCE arms generated the same tokens.

    flock /tmp/bench.lock .venv/bin/python bench/steering_large_dictionary.py --atoms 10000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(__file__))
import steering_overhead as so

from pace.solver import ElasticNet

_real_init = ElasticNet.__init__
ARM = {"numpy": False}


def _init(self: ElasticNet, *args: Any, **kwargs: Any) -> None:
    _real_init(self, *args, **kwargs)
    if ARM["numpy"]:  # what ran before: no compiled kernel without a Gram
        self._kernel_args = None


ElasticNet.__init__ = _init  # type: ignore[method-assign]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--atoms", type=int, default=10_000)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.manual_seed(0)
    model, enc, atoms, und = so.smollm2_setup(args.atoms)
    cen = so.centered_atoms(atoms, und)
    n = args.new_tokens

    def generate() -> tuple[float, torch.Tensor]:
        return so._time_generate(
            lambda: model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                   pad_token_id=model.config.eos_token_id),
            "cpu", n,
        )  # fmt: skip

    arms = ["vanilla", "kernel", "numpy"]
    times: dict[str, list[float]] = {a: [] for a in arms}
    outs: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for rep in range(args.repeats + 1):  # the first round warms up
            for arm in arms:
                ARM["numpy"] = arm == "numpy"
                with so.centered_steering(model, cen, arm != "vanilla"):
                    ms, outs[arm] = generate()
                if rep > 0:
                    times[arm].append(ms)
                    print(f"  run: {arm}: {ms:.1f} ms/token", flush=True)
    base = statistics.median(times["vanilla"])
    print(f"SmolLM2-135M, {args.atoms} atoms x 30 layers (no Gram cached), {n} new tokens, "
          f"torch threads {torch.get_num_threads()}; medians of {args.repeats}")  # fmt: skip
    for arm, ts in times.items():
        med = statistics.median(ts)
        paired = statistics.median(t / v for t, v in zip(ts, times["vanilla"], strict=True))
        print(f"{arm:8} {med:9.1f} ms/token  x vanilla {med / base:6.3f}  paired {paired:6.3f}")
    ratio = statistics.median(k / m for k, m in zip(times["kernel"], times["numpy"], strict=True))
    print(f"kernel / numpy, paired median: {ratio:.3f}; same tokens: "
          f"{torch.equal(outs['kernel'], outs['numpy'])}")  # fmt: skip


if __name__ == "__main__":
    main()
