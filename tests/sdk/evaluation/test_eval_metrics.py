from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from pace.evaluation import (
    Decoding,
    EvaluationError,
    MCQuestion,
    distinct_n,
    generate_responses,
    mc_accuracy,
    response_perplexity,
)
from pace.evaluation._lm import encode, render_chat


def test_distinct_n_counts_unique_ngrams() -> None:
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["a b", "a b"], 2) == 0.5
    assert distinct_n(["A b.", ""], 1) == 1.0
    assert distinct_n([""], 2) == 0.0
    with pytest.raises(EvaluationError):
        distinct_n(["x"], 0)


def _nll(model: Any, ctx: list[int], cont: list[int]) -> float:
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    return -sum(float(logp[len(ctx) - 1 + j, t]) for j, t in enumerate(cont))


def test_perplexity_matches_an_unbatched_forward(tiny_lm: tuple[Any, Any]) -> None:
    model, tok = tiny_lm
    prompts = ["Say hi.", "A much longer prompt, to force padding in the batch."]
    responses = ["hi there", ""]
    ppl = response_perplexity(model, tok, [*prompts, "x"], [*responses, "abc def"], batch_size=2)
    ctx = encode(tok, render_chat(tok, prompts[0]))
    cont = encode(tok, responses[0])
    expected = math.exp(_nll(model, ctx, cont) / len(cont))
    assert ppl.per_response[0] == pytest.approx(expected, rel=1e-4)
    assert ppl.per_response[1] is None  # empty response: no tokens
    assert ppl.tokens == len(cont) + len(encode(tok, "abc def"))
    # Corpus perplexity is token-weighted, between the two per-response values.
    lo, hi = sorted(p for p in ppl.per_response if p is not None)
    assert lo <= ppl.value <= hi


def test_knowledge_picks_the_most_likely_option(tiny_lm: tuple[Any, Any]) -> None:
    model, tok = tiny_lm
    qs = [
        MCQuestion("1", "Capital of France?", ("Paris", "Rome", "Berlin is big", "Oslo"), 0),
        MCQuestion("2", "2 + 2?", ("four", "5", "twenty-two", "none"), 1),
    ]

    def option_scores(q: MCQuestion, system: str = "") -> list[tuple[float, int]]:
        ctx = encode(tok, f"{system}Question: {q.question}\nAnswer:")
        conts = [encode(tok, f" {c}") for c in q.choices]
        return [(-_nll(model, ctx, c), len(c)) for c in conts]

    got = mc_accuracy(model, tok, qs, batch_size=3)  # default: summed log-likelihood
    for q, pred in zip(qs, got.predictions, strict=True):
        sums = [lp for lp, _ in option_scores(q)]
        assert pred == max(range(4), key=lambda i: sums[i])
    correct = sum(p == q.answer for p, q in zip(got.predictions, qs, strict=True))
    assert got.accuracy == correct / 2
    mean = mc_accuracy(model, tok, qs, normalize="mean", system_prompt="Be brief.")
    for q, pred in zip(qs, mean.predictions, strict=True):
        means = [lp / n for lp, n in option_scores(q, "Be brief.\n")]
        assert pred == max(range(4), key=lambda i: means[i])
    with pytest.raises(EvaluationError, match="normalize"):
        mc_accuracy(model, tok, qs, normalize="max")  # type: ignore[arg-type]


def test_generation_is_seeded_and_counts_tokens(tiny_lm: tuple[Any, Any]) -> None:
    model, tok = tiny_lm
    prompts = ["Hello", "Tell me a story about a dragon"]
    greedy = Decoding(max_new_tokens=5, batch_size=2)
    a = generate_responses(model, tok, prompts, greedy)
    assert len(a.texts) == 2 and all(1 <= n <= 5 for n in a.tokens)
    assert a.ms_per_token > 0
    sampled = Decoding(max_new_tokens=5, do_sample=True, seed=7, batch_size=2)
    b1 = generate_responses(model, tok, prompts, sampled)
    b2 = generate_responses(model, tok, prompts, sampled)
    assert b1.texts == b2.texts
    with pytest.raises(EvaluationError, match="max_new_tokens"):
        Decoding(max_new_tokens=0)
