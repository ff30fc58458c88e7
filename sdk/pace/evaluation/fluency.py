"""Fluency: perplexity of responses under the unsteered model, distinct-2, mean length.

Perplexity conditions each response on its prompt (the model's chat format, no system
prompt, so every method is scored in the same context) and is computed over all response
tokens together: ``exp(sum of NLL / number of tokens)``. Call it *without* steering
attached: it measures how natural the unsteered model finds what was written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pace.evaluation._lm import continuation_logprobs, encode, pad_id, render_chat
from pace.evaluation.errors import EvaluationError

__all__ = ["Perplexity", "distinct_n", "mean_length", "response_perplexity", "words"]

_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens (the unit of distinct-n)."""
    return _WORD.findall(text.lower())


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct n-grams over all n-grams of all texts (0 when there are none)."""
    if n < 1:
        raise EvaluationError(f"n must be >= 1, got {n}")
    total = 0
    seen: set[tuple[str, ...]] = set()
    for text in texts:
        w = words(text)
        grams = [tuple(w[i : i + n]) for i in range(len(w) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def mean_length(token_counts: Sequence[int]) -> float:
    """Mean response length in generated tokens."""
    return sum(token_counts) / len(token_counts) if token_counts else 0.0


@dataclass(frozen=True)
class Perplexity:
    """Corpus perplexity and per-response perplexity (None for an empty response)."""

    value: float
    per_response: list[float | None]
    tokens: int


def response_perplexity(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    responses: Sequence[str],
    *,
    batch_size: int = 8,
) -> Perplexity:
    """Perplexity of ``responses`` given ``prompts`` under ``model`` (see module docs)."""
    if len(prompts) != len(responses):
        raise EvaluationError(f"{len(prompts)} prompts but {len(responses)} responses")
    contexts = [encode(tokenizer, render_chat(tokenizer, p)) for p in prompts]
    conts = [encode(tokenizer, r) if r else [] for r in responses]
    scored = continuation_logprobs(
        model, contexts, conts, batch_size=batch_size, pad=pad_id(tokenizer)
    )
    per: list[float | None] = [math.exp(-lp / n) if n else None for lp, n in scored]
    total_lp = sum(lp for lp, _ in scored)
    total_n = sum(n for _, n in scored)
    value = math.exp(-total_lp / total_n) if total_n else float("nan")
    return Perplexity(value, per, total_n)
