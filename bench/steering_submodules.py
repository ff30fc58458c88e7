"""Where a steered decode step's model time goes: each decoder submodule, vanilla vs steered.

The overhead bench's CPU setup (SmolLM2-135M, 2,000 centered atoms + mean atom on 30
layers, sink guard), vanilla and steered generations alternated. A timer around each
decoder submodule (the two norms, the four attention projections, the three MLP
projections, the MLP), summed over the 30 layers, per decode step; medians of
``--repeats``. The edits themselves are not in any of these: a difference is the edit's
side effect on the model's own work (caches, TLB, threads), or the edited values.

    .venv/bin/python bench/steering_submodules.py [--discard]

``--discard`` runs every solve but hands the layer its input back unchanged: then only
the side effect is left.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(__file__))
import steering_overhead as so

import pace.steering.hooks as hooks

SUBMODULES = (
    "input_layernorm",
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "post_attention_layernorm",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
    "mlp",
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--discard", action="store_true", help="solve, but leave the output as is")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.manual_seed(0)
    model, enc, atoms, und = so.smollm2_setup()
    cen = so.centered_atoms(atoms, und)

    if args.discard:
        real_apply = hooks._apply

        def discarding_apply(hidden: torch.Tensor, edit: Any, *rest: Any) -> Any:
            _, coef = real_apply(hidden, edit, *rest)
            return None, coef

        hooks._apply = discarding_apply  # edit_hook looks it up at call time

    spent: dict[str, float] = defaultdict(float)
    started: dict[int, float] = {}

    def pre(module: Any, a: Any) -> None:
        started[id(module)] = time.perf_counter()

    def post(module: Any, a: Any, out: Any) -> None:
        x = a[0] if a else None
        if isinstance(x, torch.Tensor) and x.ndim == 3 and x.shape[1] == 1:  # decode only
            spent[module._bench_kind] += time.perf_counter() - started[id(module)]

    for layer in model.model.layers:
        for name, module in layer.named_modules():
            if name in SUBMODULES:
                module._bench_kind = name
                module.register_forward_pre_hook(pre)
                module.register_forward_hook(post)

    n = args.new_tokens
    eos = model.config.eos_token_id
    results: dict[str, list[dict[str, float]]] = {"vanilla": [], "steered": []}
    for rep in range(args.repeats + 1):  # the first round warms up
        for name, runs in results.items():
            spent.clear()
            with so.centered_steering(model, cen, name == "steered"), torch.no_grad():
                model.generate(
                    **enc, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=eos
                )
            if rep:
                runs.append({k: v * 1e3 / (n - 1) for k, v in spent.items()})

    print(f"torch threads {torch.get_num_threads()}; {n} new tokens; medians of {args.repeats}"
          + ("; edits discarded" if args.discard else ""))  # fmt: skip
    print(f"{'submodule (30 layers)':26s} {'vanilla':>9s} {'steered':>9s} {'diff':>7s}  ms/token")
    for kind in SUBMODULES:
        v = statistics.median(r.get(kind, 0.0) for r in results["vanilla"])
        s = statistics.median(r.get(kind, 0.0) for r in results["steered"])
        print(f"{kind:26s} {v:9.2f} {s:9.2f} {s - v:+7.2f}")


if __name__ == "__main__":
    main()
