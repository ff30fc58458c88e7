"""Small language-model helpers shared by generation, fluency and knowledge scoring."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["continuation_logprobs", "encode", "model_device", "render_chat", "stop_ids"]


def model_device(model: Any) -> torch.device:
    for p in model.parameters():
        return torch.device(p.device)
    return torch.device("cpu")


def render_chat(tokenizer: Any, user: str, system: str | None = None) -> str:
    """The model's chat prompt for one user turn (plain text when it has no template)."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": user}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        return str(
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )
    head = f"{system}\n\n" if system else ""
    return f"{head}{user}\n"


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` without added special tokens (chat templates carry their own)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def stop_ids(model: Any, tokenizer: Any) -> set[int]:
    """Token ids that end a response: the generation config's EOS ids and the tokenizer's."""
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None) if gen is not None else None
    for value in (eos, getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


def pad_id(tokenizer: Any) -> int:
    for value in (
        getattr(tokenizer, "pad_token_id", None),
        getattr(tokenizer, "eos_token_id", None),
    ):
        if isinstance(value, int):
            return value
    return 0


def continuation_logprobs(
    model: Any,
    contexts: Sequence[list[int]],
    continuations: Sequence[list[int]],
    *,
    batch_size: int = 8,
    pad: int = 0,
) -> list[tuple[float, int]]:
    """``(sum of log p(continuation | context), continuation length)`` per pair.

    Batches are right-padded; an empty continuation gives ``(0.0, 0)``.
    """
    if len(contexts) != len(continuations):
        raise ValueError("contexts and continuations differ in length")
    device = model_device(model)
    out: list[tuple[float, int]] = [(0.0, 0)] * len(contexts)
    todo = [i for i, c in enumerate(continuations) if c]
    todo.sort(key=lambda i: -(len(contexts[i]) + len(continuations[i])))
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        seqs = [list(contexts[i]) + list(continuations[i]) for i in batch]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):
            ids[row, : len(s)] = torch.tensor(s)
            mask[row, : len(s)] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()
        for row, i in enumerate(batch):
            n_ctx, n_cont = len(contexts[i]), len(continuations[i])
            # Token t is predicted by the logits at t - 1.
            positions = torch.arange(n_ctx - 1, n_ctx + n_cont - 1)
            targets = torch.tensor(continuations[i])
            total = float(logp[row, positions, targets].sum())
            out[i] = (total, n_cont)
    return out
