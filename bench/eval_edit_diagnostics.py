"""Why does PaCE break SmolLM2's output? A fast diagnostic without generation.

For each atom variant (raw, centered, raw + benign mean atom, centered + mean atom) and
each edit method, it runs one prefill pass over a task's prompts with steering attached and
reports, against the unsteered pass in the same process:

- edit: mean ||z' - z|| / ||z|| over edited token activations (how much is removed);
- KL: mean KL(p_vanilla || p_steered) of the next-token distribution after the prompt;
- "+guard": the method wrapped in SinkGuard (attention-sink tokens left unedited);
- top1: share of prompts whose greedy next token is unchanged;
- cos(atoms): mean pairwise cosine between the atoms (the shared component).

Usage::

    python bench/eval_edit_diagnostics.py --task sentiment --prompts 16 --layers 8-23
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any

import torch

from pace.dictionary import ConceptDictionary
from pace.evaluation import (
    EditMeter,
    SinkGuard,
    get_task,
    load_prompts,
    packaged_model_id,
    parse_floats,
    parse_layers,
    select_layers,
    starter_dictionary,
    transform_atoms,
)
from pace.evaluation._lm import encode, render_chat
from pace.steering import OrthoProj, PaCE, VecAdd, steer


def last_logits(model: Any, batch: list[list[int]]) -> torch.Tensor:
    width = max(len(s) for s in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    mask = torch.zeros(len(batch), width, dtype=torch.long)
    for i, s in enumerate(batch):
        ids[i, width - len(s) :] = torch.tensor(s)
        mask[i, width - len(s) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos)
    return torch.log_softmax(out.logits[:, -1].float(), -1)


def mean_cos(d: ConceptDictionary, layer: int) -> float:
    a = d.atoms[layer].float()
    a = a / a.norm(dim=1, keepdim=True)
    g = a @ a.T
    n = g.shape[0]
    return float((g.sum() - n) / (n * (n - 1)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="sentiment")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--layers", default="8-23")
    ap.add_argument("--alpha", default="0.05")
    ap.add_argument("--tau", default="0.95")
    ap.add_argument("--scale", default="0.5")
    ap.add_argument("--variants", default="raw,centered,raw+mean atom,centered+mean atom")
    ap.add_argument("--guard", default="off,on", help="off, on or off,on")
    args = ap.parse_args()

    from pace.models import load_packaged_model

    model, tok = load_packaged_model("smollm2")
    task = get_task(args.task)
    layers = parse_layers(args.layers, model.config.num_hidden_layers)
    full = starter_dictionary(
        model, tok, model_id=packaged_model_id("smollm2"), layers=range(30), task=task
    )
    base = select_layers(full, layers)
    prompts = [p.prompt for p in load_prompts(task, limit=args.prompts)]
    batch = [encode(tok, render_chat(tok, p)) for p in prompts]
    t0 = time.perf_counter()
    ref = last_logits(model, batch)
    t_ref = time.perf_counter() - t0
    variants = {
        "raw": base,
        "centered": transform_atoms(base, center=True),
        "raw+mean atom": transform_atoms(base, mean_atom=True),
        "centered+mean atom": transform_atoms(base, center=True, mean_atom=True),
    }
    methods: list[tuple[str, Any]] = [
        (f"PaCE a={a:g} t={t:g}", PaCE(alpha=a, tau=t))
        for a in parse_floats(args.alpha, "alpha")
        for t in parse_floats(args.tau, "tau")
    ]
    methods += [(f"VecAdd s={s:g}", VecAdd(scale=s)) for s in parse_floats(args.scale, "scale")]
    methods.append(("OrthoProj", OrthoProj()))
    chosen = [v.strip() for v in args.variants.split(",")]
    variants = {k: v for k, v in variants.items() if k in chosen}
    guards = [g.strip() == "on" for g in args.guard.split(",")]
    mid = layers[len(layers) // 2]
    print(
        f"task {task.name}: {len(base)} concepts, {int(base.undesirable.sum())} undesirable, "
        f"layers {args.layers}, {len(prompts)} prompts; unsteered prefill {t_ref:.2f} s"
    )
    print(f"{'variant':20s} {'method':28s} {'edit':>6s} {'KL':>7s} {'top1':>5s} {'time x':>6s}")
    for vname, d in variants.items():
        print(f"-- {vname}: mean cos(atoms) at layer {mid} = {mean_cos(d, mid):.3f}")
        for (mname, method), guard in itertools.product(methods, guards):
            meter = EditMeter(SinkGuard(method) if guard else method)
            t0 = time.perf_counter()
            with steer(model, d, method=meter):
                lp = last_logits(model, batch)
            dt = time.perf_counter() - t0
            kl = float((ref.exp() * (ref - lp)).sum(-1).mean())
            top1 = float((ref.argmax(-1) == lp.argmax(-1)).float().mean())
            mname_g = mname + (" +guard" if guard else "")
            cols = f"{meter.mean:6.3f} {kl:7.3f} {top1:5.2f} {dt / t_ref:6.1f}"
            print(f"{vname:20s} {mname_g:28s} {cols}")


if __name__ == "__main__":
    main()
