"""Solver time per layer-call on the inputs of a real steered generation, replayed.

Step 1 (once, needs the model): run one steered 24-token generation of
``bench/steering_overhead.py``'s setup (SmolLM2, 2,000 atoms on 30 layers) with raw
atoms and with centered atoms + a mean atom, and save every solver input (per layer: the
prompt rows, then one row per decode step) with the dictionaries to ``--inputs``.
Step 2: solve them again layer by layer, torch 1 thread, and report this thread's CPU
time (less sensitive to a loaded machine than wall time) per prompt row and per decode
layer-call. Run step 2 with another checkout's ``sdk`` on ``PYTHONPATH`` to compare code:

    .venv/bin/python bench/steering_solver_replay.py --inputs /tmp/replay.pt
    PYTHONPATH=/tmp/before/sdk .venv/bin/python bench/steering_solver_replay.py \\
        --inputs /tmp/replay.pt --warm   # --warm: chain warm starts as the old edit did

``--interleaved`` also replays the decode edits in generation order through the fused
edit (see ``replay_interleaved``): closer to generation's cold caches than layer by layer.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import numpy as np
import torch


def capture(path: str) -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    import steering_overhead as so

    from pace.solver import ElasticNet
    from pace.steering import PaCE, steer

    torch.manual_seed(0)
    model, enc, atoms, und = so.smollm2_setup()
    cen = so.centered_atoms(atoms, und)
    seen: dict[int, list[torch.Tensor]] = {}
    real = ElasticNet.solve_sparse

    def spy(self: Any, y: torch.Tensor, **kw: Any) -> Any:
        seen.setdefault(id(self), []).append(y.detach().clone())
        return real(self, y, **kw)

    ElasticNet.solve_sparse = spy  # type: ignore[method-assign]
    # Without the fused decode edit (one compiled call that never reaches solve_sparse),
    # so that decode rows are seen too: same rows, same solves.
    fused = ElasticNet.cpu_row_kernel_args
    ElasticNet.cpu_row_kernel_args = property(lambda self: None)  # type: ignore[assignment,method-assign]
    out = {}
    for name, a, u in [("raw", atoms, und), ("cen", cen.atoms, cen.undesirable)]:
        seen.clear()
        with torch.no_grad(), steer(model, a, undesirable=u, method=PaCE()):
            model.generate(**enc, max_new_tokens=24, min_new_tokens=24, do_sample=False,
                           pad_token_id=model.config.eos_token_id)  # fmt: skip
        out[name] = {"atoms": dict(a), "und": u.clone(), "ys": list(seen.values())}
    ElasticNet.solve_sparse = real  # type: ignore[method-assign]
    ElasticNet.cpu_row_kernel_args = fused  # type: ignore[method-assign]
    torch.save(out, path)


def replay(path: str, warm: bool) -> None:
    from pace.solver import ElasticNet

    torch.set_num_threads(1)
    for name, d in torch.load(path).items():
        layers = sorted(d["atoms"])
        pre = dec = 0.0
        n_pre = n_dec = 0
        for li, layer in enumerate(layers):
            solver = ElasticNet(d["atoms"][layer].float())
            ys = d["ys"][li]
            solver.solve_sparse(ys[-1])  # load the compiled kernels
            last = None
            for y in ys:
                ws = last if warm and last is not None and last[0].shape[0] == y.shape[0] else None
                t = time.thread_time()
                last = solver.solve_sparse(y, warm_start=ws)
                dt = time.thread_time() - t
                if y.shape[0] > 1:
                    pre, n_pre = pre + dt, n_pre + y.shape[0]
                else:
                    dec, n_dec = dec + dt, n_dec + 1
        print(f"{name}: prefill {pre / max(n_pre, 1) * 1e3:.2f} ms/row, decode "
              f"{dec / max(n_dec, 1) * 1e3:.2f} ms/layer-call ({n_pre} rows, {n_dec} calls; "
              f"{np.round(pre + dec, 2)} s CPU)")  # fmt: skip


def replay_interleaved(path: str) -> None:
    """The decode edits in generation order (layers 0..L-1, then the next token), each one
    fused call (``_compiled.remove_row_lowp``: normalise, solve, remove) as PaCE's CPU edit
    makes it: every layer's atoms, int16 copy and Gram are touched once per token, so
    caches hold what they would between two calls of a generation, less the model's own
    weights (which would evict more)."""
    from pace.solver import ElasticNet, _compiled

    torch.set_num_threads(1)
    for name, d in torch.load(path).items():
        layers = sorted(d["atoms"])
        args = [ElasticNet(d["atoms"][layer].float()).cpu_row_kernel_args for layer in layers]
        und = d["und"].numpy().astype(bool)
        n_u = int(und.sum())
        pos = np.full(und.shape[0], -1, np.int64)
        pos[und] = np.arange(n_u)
        rows = [[y[0].float().numpy() for y in d["ys"][li] if y.shape[0] == 1]
                for li in range(len(layers))]  # fmt: skip
        d_u = np.ascontiguousarray(d["atoms"][layers[0]].float().numpy()[und])  # any rows
        total, calls = 0.0, 0
        for step in range(-1, len(rows[0])):  # step -1: load the compiled kernel
            for li in range(len(layers)):
                z = rows[li][max(step, 0)]
                t = time.thread_time()
                status, _ = _compiled.remove_row_lowp(
                    z, *args[li], pos, d_u, np.zeros(n_u, np.float32), np.empty_like(z)
                )
                if step >= 0:
                    total, calls = total + time.thread_time() - t, calls + 1
                assert status == _compiled.OK, status
        print(f"{name}: decode edit in generation order {total / calls * 1e3:.3f} ms CPU per "
              f"layer-call ({calls} calls)")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--inputs", required=True, help="file of captured solver inputs")
    p.add_argument("--warm", action="store_true", help="warm-start each call from the last")
    p.add_argument("--interleaved", action="store_true",
                   help="also the decode edits in generation order, fused")  # fmt: skip
    args = p.parse_args()
    if not os.path.exists(args.inputs):
        capture(args.inputs)
    replay(args.inputs, args.warm)
    if args.interleaved:
        replay_interleaved(args.inputs)


if __name__ == "__main__":
    main()
