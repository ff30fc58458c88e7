"""Extraction speed: the pipeline's Extractor against a naive loop, same process, same model.

Baseline: one stimulus per forward pass through the whole CausalLM with
``output_hidden_states=True`` (what a first implementation does). Candidate: the
Extractor (length-sorted batches, explicit position ids, forward stopped after the
deepest requested block). Both read the same layers of the same stimuli; the script
checks they agree, then prints stimuli/s and the speed-up.

    .venv/bin/python bench/extract_speed.py [--model smollm2|tiny] [--stimuli 48] [--layers 8-23]
"""

from __future__ import annotations

import argparse
import time
from importlib import resources
from typing import Any

import torch

from pace.pipeline.extract import Extractor, Recipe
from pace.pipeline.jsonl import read_jsonl


def stimuli(n: int) -> list[str]:
    path = resources.files("pace.data").joinpath("starter_pack.jsonl")
    with resources.as_file(path) as p:
        texts = [t for r in read_jsonl(p).records for t in r.texts]
    return texts[:: max(1, len(texts) // n)][:n]


def load(name: str) -> tuple[Any, Any]:
    if name == "smollm2":
        from pace.models import load_packaged_model

        return load_packaged_model("smollm2")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests/sdk/pipeline"))
    from tiny_models import char_tokenizer, tiny_model

    return tiny_model("llama"), char_tokenizer()


def naive(model: Any, tok: Any, texts: list[str], layers: list[int]) -> dict[int, torch.Tensor]:
    out: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    with torch.no_grad():
        for text in texts:
            enc = tok(text, return_tensors="pt")
            hs = model(**enc, output_hidden_states=True).hidden_states
            for layer in layers:
                out[layer].append(hs[layer + 1][0, -1].float())
    return {layer: torch.stack(v) for layer, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2", choices=["smollm2", "tiny"])
    ap.add_argument("--stimuli", type=int, default=48)
    ap.add_argument("--layers", default="8-23")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    lo, _, hi = args.layers.partition("-")
    model, tok = load(args.model)
    n_layers = int(model.config.num_hidden_layers)
    layers = [x for x in range(int(lo), int(hi or lo) + 1) if x < n_layers - 1]
    texts = stimuli(args.stimuli)
    ex = Extractor(model, tok, layers=layers, recipe=Recipe(), batch_size=args.batch_size)
    ex.stimulus_vectors(texts[:4])  # warm-up both paths
    naive(model, tok, texts[:4], layers)

    t0 = time.perf_counter()
    ref = naive(model, tok, texts, layers)
    t_naive = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = ex.stimulus_vectors(texts)
    t_ex = time.perf_counter() - t0

    worst = max(float(((got[k] - ref[k]).norm(dim=1) / ref[k].norm(dim=1)).max()) for k in layers)
    print(
        f"model={args.model} stimuli={len(texts)} layers={layers[0]}-{layers[-1]} "
        f"threads={torch.get_num_threads()}"
    )
    print(f"naive (1 per pass, all hidden states): {len(texts) / t_naive:8.1f} stimuli/s")
    print(
        f"Extractor (batch {args.batch_size}, sorted, early stop): "
        f"{len(texts) / t_ex:8.1f} stimuli/s"
    )
    print(f"speed-up: {t_naive / t_ex:.2f}x; max relative difference {worst:.2e}")


if __name__ == "__main__":
    main()
