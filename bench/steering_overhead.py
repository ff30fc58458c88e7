"""Generation overhead of PaCE steering: steered vs vanilla greedy decoding, same process.

CPU (default): SmolLM2-135M-Instruct from its PyPI package, a 2,000-atom dictionary on
all 30 layers (256 real concept atoms, the rest activation-like mixtures of them;
~5% undesirable, half of those real), batch 1, 32 new tokens. Target: PaCE <= 1.3x vanilla.

    .venv/bin/python bench/steering_overhead.py

GPU: a Llama-2-7B-shaped model (hidden 4096, 32 layers, intermediate 11008, 32 heads)
with random bf16 weights (speed does not depend on the values), a 10,000-atom fp16
dictionary on all 32 layers, batch 1. Target: PaCE <= 1.15x vanilla.

    .venv/bin/python bench/steering_overhead.py --device cuda

Each configuration is timed ``--repeats`` times, interleaved (vanilla, NoOp, PaCE, ...),
and the median is reported; NoOp measures the hooks alone. Ratios are against the
vanilla run of the same process: ``x vanilla`` divides the medians, ``paired`` is the
median over the repeats of each run divided by the vanilla run of its own repeat.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from pace import ConceptDictionary
from pace.evaluation.atoms import transform_atoms
from pace.evaluation.guards import SinkGuard
from pace.steering import NoOp, PaCE, steer

WORDS = [
    "anger",
    "hatred",
    "insult",
    "threat",
    "violence",
    "cruelty",
    "greed",
    "envy",
    "fear",
    "panic",
    "grief",
    "shame",
    "kindness",
    "honesty",
    "patience",
    "courage",
    "hope",
    "joy",
    "gratitude",
    "trust",
    "food",
    "bread",
    "cheese",
    "soup",
    "rain",
    "snow",
    "storm",
    "sunshine",
    "river",
    "mountain",
    "forest",
    "ocean",
    "music",
    "piano",
    "guitar",
    "dance",
    "football",
    "tennis",
    "chess",
    "science",
    "physics",
    "chemistry",
    "money",
    "bank",
    "market",
    "school",
    "teacher",
    "doctor",
    "hospital",
    "city",
    "village",
    "car",
    "train",
    "airplane",
    "dragon",
    "castle",
    "king",
    "queen",
    "cooking",
    "garden",
    "flower",
    "computer",
]
TEMPLATES = ("{}", "The concept of {}", "Tell me about {}.", "Everyone talks about {} today")
PROMPT = "Write a short story about a dragon who learns to cook."


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _concept_activations(model: Any, stimuli: list[Tensor], layers: int) -> list[Tensor]:
    """Per layer, the residual stream at the last token of each stimulus: (n_real, d)."""
    per_layer: list[list[Tensor]] = [[] for _ in range(layers)]
    with torch.no_grad():
        for x in stimuli:
            hidden = model(x, output_hidden_states=True).hidden_states
            for layer in range(layers):
                per_layer[layer].append(hidden[layer + 1][:, -1].float().cpu())
    return [torch.cat(rows) for rows in per_layer]


def build_dictionary(
    model: Any, stimuli: list[Tensor], n_atoms: int, frac_undesirable: float, seed: int = 0
) -> tuple[dict[int, Tensor], Tensor]:
    """Activation-like atoms: real concept atoms, the rest mixtures of two plus noise.

    Real atoms are the PaCE recipe with one stimulus (last-token residual stream); the
    synthetic rest keep their correlation structure, which is what the solver's cost
    depends on (random directions would be an unrealistically dense, slow case).
    Undesirable: ~``frac_undesirable`` of the rows, half of them real.
    """
    layers = model.config.num_hidden_layers
    real = _concept_activations(model, stimuli, layers)
    g = torch.Generator(device="cpu").manual_seed(seed)
    n_real = min(real[0].shape[0], n_atoms)
    n_syn = n_atoms - n_real
    i = torch.randint(0, n_real, (n_syn,), generator=g)
    j = torch.randint(0, n_real, (n_syn,), generator=g)
    w = torch.rand(n_syn, 1, generator=g)
    atoms: dict[int, Tensor] = {}
    for layer in range(layers):
        r = real[layer][:n_real]
        noise = torch.randn(n_syn, r.shape[1], generator=g) / r.shape[1] ** 0.5
        syn = w * r[i] + (1 - w) * r[j] + 0.3 * r.norm(dim=1).mean() * noise
        atoms[layer] = torch.cat([r, syn])
    n_u = max(1, round(frac_undesirable * n_atoms))
    pick_real = torch.randperm(n_real, generator=g)[: min(n_real, n_u // 2)]
    pick_syn = n_real + torch.randperm(n_syn, generator=g)[: n_u - len(pick_real)]
    undesirable = torch.zeros(n_atoms, dtype=torch.bool)
    undesirable[torch.cat([pick_real, pick_syn])] = True
    return atoms, undesirable


def _time_generate(
    generate: Callable[[], Any], device: str, new_tokens: int
) -> tuple[float, Tensor]:
    _sync(device)
    t0 = time.perf_counter()
    out = generate()
    _sync(device)
    return (time.perf_counter() - t0) / new_tokens * 1e3, out


def smollm2_setup(
    n_atoms: int = 2000, undesirable: float = 0.05
) -> tuple[Any, dict[str, Tensor], dict[int, Tensor], Tensor]:
    """SmolLM2-135M, the chat-formatted ``PROMPT`` and the CPU dictionary on every layer."""
    from pace.models import load_packaged_model

    model, tokenizer = load_packaged_model("smollm2")
    msgs = [{"role": "user", "content": PROMPT}]
    enc = dict(tokenizer.apply_chat_template(msgs, add_generation_prompt=True,
                                             return_tensors="pt", return_dict=True))  # fmt: skip
    tokenizer.padding_side = "left"
    texts = [t.format(w) for t in TEMPLATES for w in WORDS]
    stimuli = [
        tokenizer(texts[k : k + 64], return_tensors="pt", padding=True)["input_ids"]
        for k in range(0, len(texts), 64)
    ]
    atoms, und = build_dictionary(model, stimuli, n_atoms, undesirable)
    return model, enc, atoms, und


def centered_atoms(atoms: dict[int, Tensor], undesirable: Tensor) -> ConceptDictionary:
    """The atoms as `pace chat`, the demo and the evaluation harness use them: centered,
    their mean kept as one benign atom (docs/evaluation.md)."""
    labels = undesirable.to(torch.int8)
    raw = ConceptDictionary(atoms=atoms, concept_names=[str(i) for i in range(len(labels))],
                            labels=labels)  # fmt: skip
    return transform_atoms(raw, center=True, mean_atom=True)


@contextmanager
def centered_steering(model: Any, cen: ConceptDictionary, on: bool = True) -> Iterator[Any]:
    """``model`` steered as `pace chat` steers (``cen`` from ``centered_atoms``, PaCE with
    the sink guard) while the block runs; nothing at all when not ``on`` (a vanilla arm).
    Yields the steering handle, or None."""
    if not on:
        yield None
        return
    handle = steer(model, cen.atoms, undesirable=cen.undesirable, method=SinkGuard(PaCE()))
    try:
        yield handle
    finally:
        handle.remove()


CENTERED = "PaCE, centered atoms + sink guard"


def run(model: Any, enc: dict[str, Tensor], atoms: dict[int, Tensor], undesirable: Tensor,
        args: argparse.Namespace) -> None:  # fmt: skip
    device = args.device

    def generate(n: int) -> Callable[[], Any]:
        return lambda: model.generate(
            **enc, max_new_tokens=n, min_new_tokens=n, do_sample=False,
            pad_token_id=model.config.eos_token_id,
        )  # fmt: skip

    configs: dict[str, Any] = {
        "vanilla": None,
        "NoOp (hooks only)": NoOp(),
        "PaCE (alpha 0.05, tau 0.95)": PaCE(),
        CENTERED: SinkGuard(PaCE()),
    }
    if device == "cuda":  # the graph-only variant: never waits for a solve's certificate
        configs["PaCE, deferred_check=True"] = PaCE(deferred_check=True)
    centered = centered_atoms(atoms, undesirable)

    def atoms_for(name: str) -> tuple[Any, Tensor]:
        if name == CENTERED:
            return centered.atoms, centered.undesirable
        return atoms, undesirable

    t0 = time.perf_counter()
    steer(model, atoms, undesirable=undesirable, method=PaCE()).remove()
    attach_s = time.perf_counter() - t0
    times: dict[str, list[float]] = {name: [] for name in configs}
    uncertified: dict[str, int] = {}
    outputs: dict[str, Tensor] = {}
    with torch.no_grad():
        for name, method in configs.items():  # warm-up (allocator, solver caches)
            a, u = atoms_for(name)
            warm = steer(model, a, undesirable=u, method=method or NoOp())
            try:
                generate(4)()
            finally:
                warm.remove()
        for _ in range(args.repeats):
            for name, method in configs.items():
                handle = None
                if method is not None:
                    a, u = atoms_for(name)
                    handle = steer(model, a, undesirable=u, method=method)
                try:
                    ms, out = _time_generate(generate(args.new_tokens), device, args.new_tokens)
                finally:
                    if handle is not None:
                        uncertified[name] = uncertified.get(name, 0) + handle.uncertified_rows
                        handle.remove()
                times[name].append(ms)
                outputs[name] = out
                print(f"  run: {name}: {ms:.1f} ms/token", flush=True)
        with steer(model, atoms, undesirable=undesirable, record=True) as rec:
            generate(args.new_tokens)()
        coef = rec.explanation().coefficients[0]  # (positions, layers, n_u)
    edited = (coef != 0).any(dim=-1).float().mean().item()
    base = statistics.median(times["vanilla"])
    print(f"attach (cast + solver setup, {len(atoms)} layers): {attach_s:.2f} s")
    print(f"{'config':32} {'ms/token (median)':>18} {'runs':>30} {'x vanilla':>10} "
          f"{'paired':>7}")  # fmt: skip
    for name, ts in times.items():
        med = statistics.median(ts)
        runs = " ".join(f"{t:.1f}" for t in ts)
        # Each repeat against the vanilla run of the same repeat: less exposed to a host whose
        # speed drifts over the minutes of the whole run than the ratio of the medians.
        paired = statistics.median(t / v for t, v in zip(ts, times["vanilla"], strict=True))
        print(f"{name:32} {med:18.2f} {runs:>30} {med / base:10.3f} {paired:7.3f}")
    same = torch.equal(outputs["NoOp (hooks only)"], outputs["vanilla"])
    differs = not torch.equal(outputs["PaCE (alpha 0.05, tau 0.95)"], outputs["vanilla"])
    print(f"NoOp output == vanilla: {same}; PaCE output differs: {differs}")
    print(f"layer-token edits with an undesirable atom active: {edited:.1%}")
    print(f"token rows left unedited (uncertified, deferred check): {uncertified}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--atoms", type=int, default=None, help="2000 on CPU, 10000 on CUDA")
    parser.add_argument("--undesirable", type=float, default=0.05, help="fraction")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.device == "cpu":
        n_atoms = args.atoms or 2000
        model, enc, atoms, undesirable = smollm2_setup(n_atoms, args.undesirable)
        label = "SmolLM2-135M-Instruct fp32, CPU"
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(
            hidden_size=4096, num_hidden_layers=32, intermediate_size=11008,
            num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
        )  # fmt: skip
        torch.set_default_dtype(torch.bfloat16)
        with torch.device("cuda"):
            model = LlamaForCausalLM(cfg).eval()
        torch.set_default_dtype(torch.float32)
        n_atoms = args.atoms or 10000
        g = torch.Generator().manual_seed(0)
        stimuli = [torch.randint(0, 32000, (64, 8), generator=g).cuda() for _ in range(4)]
        enc = {"input_ids": torch.randint(0, 32000, (1, 32), generator=g).cuda()}
        atoms, undesirable = build_dictionary(model, stimuli, n_atoms, args.undesirable)
        atoms = {k: v.to("cuda", torch.float16) for k, v in atoms.items()}
        label = f"Llama-2-7B-shaped, random bf16 weights, {torch.cuda.get_device_name()}"
    n_u = int(undesirable.sum())
    print(
        f"{label}; {n_atoms} atoms x {len(atoms)} layers, {n_u} undesirable; batch 1, "
        f"{args.new_tokens} new tokens, greedy; torch threads {torch.get_num_threads()}",
        flush=True,
    )
    run(model, enc, atoms, undesirable, args)


if __name__ == "__main__":
    main()
