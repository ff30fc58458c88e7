"""Batched, seeded generation with the same decoding settings for every method."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from pace.evaluation._lm import encode, model_device, pad_id, render_chat, stop_ids
from pace.evaluation.errors import EvaluationError

__all__ = ["Decoding", "Generations", "generate_responses"]


@dataclass(frozen=True)
class Decoding:
    """Decoding settings shared by every method of an evaluation (greedy by default)."""

    max_new_tokens: int = 32
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise EvaluationError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise EvaluationError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise EvaluationError("temperature must be > 0 and top_p in (0, 1]")


@dataclass(frozen=True)
class Generations:
    """Responses in prompt order, with their generated token counts and the wall time."""

    texts: list[str]
    tokens: list[int]
    """Generated tokens per response, up to and including the stop token."""
    seconds: float

    @property
    def ms_per_token(self) -> float:
        total = sum(self.tokens)
        return 1000.0 * self.seconds / total if total else float("nan")


def generate_responses(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    decoding: Decoding,
    *,
    system_prompt: str | None = None,
) -> Generations:
    """Answer each prompt (one user turn, optional system prompt), left-padded batches.

    Any steering hooks attached to ``model`` apply; pad positions are masked as usual.
    The RNG is seeded with ``decoding.seed`` first, so sampled runs repeat exactly.
    """
    device = model_device(model)
    stops = stop_ids(model, tokenizer)
    pad = pad_id(tokenizer)
    encoded = [encode(tokenizer, render_chat(tokenizer, p, system_prompt)) for p in prompts]
    texts: list[str] = [""] * len(prompts)
    counts: list[int] = [0] * len(prompts)
    torch.manual_seed(decoding.seed)
    extra: dict[str, Any] = {}
    if decoding.do_sample:
        extra = {"temperature": decoding.temperature, "top_p": decoding.top_p}
    start = time.perf_counter()
    for lo in range(0, len(encoded), decoding.batch_size):
        batch = encoded[lo : lo + decoding.batch_size]
        width = max(len(s) for s in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, s in enumerate(batch):
            ids[row, width - len(s) :] = torch.tensor(s)
            mask[row, width - len(s) :] = 1
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=decoding.max_new_tokens,
                do_sample=decoding.do_sample,
                pad_token_id=pad,
                **extra,
            )
        for row, seq in enumerate(out[:, width:].tolist()):
            n = len(seq)
            for j, t in enumerate(seq):
                if t in stops:
                    n = j + 1
                    break
            kept = [t for t in seq[:n] if t not in stops]
            texts[lo + row] = str(tokenizer.decode(kept, skip_special_tokens=True)).strip()
            counts[lo + row] = n
    return Generations(texts, counts, time.perf_counter() - start)
