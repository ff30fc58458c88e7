"""Where a steered generation's time goes: the prompt pass and decoding, edits and model.

The overhead bench's CPU setup (SmolLM2-135M, 2,000 atoms on 30 layers, centered atoms
+ mean atom + sink guard), vanilla and steered generations alternated; a timer around
every layer's edit (``pace.steering.hooks._apply``), around every forward, and around
each layer's own work in the prompt pass. Wall time, medians of ``--repeats``; for the
decode steps also each layer's edit (mean over the steps): the layers' solves differ.

    .venv/bin/python bench/steering_breakdown.py [--threads 1] [--discard]

``--discard`` runs every solve but hands the layer its input back unchanged: what is left
of the model's slowdown is then the edit's side effect on the CPU, not its values.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import steering_overhead as so

import pace.steering.hooks as hooks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--discard", action="store_true", help="solve, but leave the output as is")
    p.add_argument("--new-tokens", type=int, default=24)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--atoms", type=int, default=2000, help="per layer (no Gram above 4,096)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, enc, atoms, und = so.smollm2_setup(args.atoms)
    cen = so.centered_atoms(atoms, und)

    clock = {"edit_pre": 0.0, "edit_dec": 0.0, "fwd_pre": 0.0, "fwd_dec": 0.0}
    layer_ms: list[float] = []
    edit_us: list[float] = []  # every decode edit, in call order (layer by layer)
    real_apply = hooks._apply

    def timed_apply(hidden: torch.Tensor, edit: Any, *rest: Any) -> Any:
        t = time.perf_counter()
        new, coef = real_apply(hidden, edit, *rest)
        dt = time.perf_counter() - t
        clock["edit_pre" if hidden.shape[1] > 1 else "edit_dec"] += dt
        if hidden.shape[1] == 1:
            edit_us.append(dt * 1e6)
        return (None, coef) if args.discard else (new, coef)

    hooks._apply = timed_apply  # edit_hook looks it up at call time

    def fwd_pre(module: Any, a: Any, kw: dict[str, Any]) -> None:
        module._bench_t = time.perf_counter()

    def fwd_post(module: Any, a: Any, kw: dict[str, Any], out: Any) -> None:
        ids = kw.get("input_ids", a[0] if a else None)
        key = "fwd_pre" if ids is not None and ids.shape[1] > 1 else "fwd_dec"
        clock[key] += time.perf_counter() - module._bench_t

    model.register_forward_pre_hook(fwd_pre, with_kwargs=True)
    model.register_forward_hook(fwd_post, with_kwargs=True)
    # Registered before steer()'s hooks, so a layer's post-hook here fires before its edit.
    for layer in model.model.layers:
        layer.register_forward_pre_hook(lambda m, a: setattr(m, "_bench_t", time.perf_counter()))
        layer.register_forward_hook(
            lambda m, a, o: layer_ms.append((time.perf_counter() - m._bench_t) * 1e3)
            if a[0].shape[1] > 1 else None
        )  # fmt: skip

    n = args.new_tokens

    def generate() -> dict[str, float]:
        for key in clock:
            clock[key] = 0.0
        layer_ms.clear()
        edit_us.clear()
        t = time.perf_counter()
        with torch.no_grad():
            model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                           pad_token_id=model.config.eos_token_id)  # fmt: skip
        out = {k: v * 1e3 for k, v in clock.items()}
        out["total"] = (time.perf_counter() - t) * 1e3
        out["layers"] = float(np.mean(layer_ms[1:]))  # the layers after the first edit
        if edit_us:  # one decode edit per layer and step, in layer order
            per_layer = np.asarray(edit_us).reshape(-1, len(model.model.layers)).mean(axis=0)
            out.update({f"edit_us_{i}": float(v) for i, v in enumerate(per_layer)})
        return out

    results: dict[str, list[dict[str, float]]] = {"vanilla": [], "steered": []}
    for rep in range(args.repeats + 1):  # the first round warms up
        for name in results:
            with so.centered_steering(model, cen, name == "steered"):
                got = generate()
            if rep > 0:
                results[name].append(got)
    print(f"torch threads {torch.get_num_threads()}; {n} new tokens; centered atoms + guard"
          f"{'; edits discarded' if args.discard else ''}; medians of {args.repeats}")  # fmt: skip
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        dec = med["fwd_dec"] / (n - 1)
        own = (med["fwd_dec"] - med["edit_dec"]) / (n - 1)
        print(f"{name:8}: total {med['total']:.0f} ms; prompt pass {med['fwd_pre']:.0f} ms "
              f"(edits {med['edit_pre']:.0f}, a layer's own work {med['layers']:.1f} ms); "
              f"decode {dec:.1f} ms/token (edits {med['edit_dec'] / (n - 1):.1f}, "
              f"model {own:.1f})")  # fmt: skip
        layers = [med[k] for k in med if k.startswith("edit_us_")]
        if layers:
            cells = " ".join(f"{v:.0f}" for v in layers)
            print(f"  decode edit per layer, us (mean over steps): {cells}")


if __name__ == "__main__":
    main()
