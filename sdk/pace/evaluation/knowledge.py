"""Knowledge retained: multiple-choice accuracy by option log-likelihood.

Each option is scored as the continuation of ``"Question: <q>\nAnswer:"`` (plain text, as
in lm-evaluation-harness; a system prompt, if any, goes first on its own line): by default
the sum of the option tokens' log-probabilities (``normalize="sum"``), or their mean
(``"mean"``). The highest-scoring option is the model's choice. Attach steering before
calling to measure knowledge *under* steering.

The plain format keeps contexts short (a chat template adds SmolLM2's 30-token default
system prompt to every one of the 4 x N sequences); on SmolLM2-135M-Instruct the plain
format with ``"sum"`` also scored best (see docs/evaluation.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pace.evaluation._lm import continuation_logprobs, encode, pad_id
from pace.evaluation.errors import EvaluationError
from pace.evaluation.tasks import MCQuestion

__all__ = ["Knowledge", "mc_accuracy"]

Normalize = Literal["mean", "sum"]


@dataclass(frozen=True)
class Knowledge:
    accuracy: float
    predictions: list[int]
    """The chosen option index per question."""
    n: int


def mc_accuracy(
    model: Any,
    tokenizer: Any,
    questions: Sequence[MCQuestion],
    *,
    system_prompt: str | None = None,
    normalize: Normalize = "sum",
    batch_size: int = 16,
) -> Knowledge:
    """Accuracy of ``model`` on ``questions`` (see the module docs)."""
    if normalize not in ("mean", "sum"):
        raise EvaluationError(f"normalize must be 'mean' or 'sum', got {normalize!r}")
    if not questions:
        raise EvaluationError("no questions to score")
    contexts: list[list[int]] = []
    conts: list[list[int]] = []
    owner: list[int] = []
    for qi, q in enumerate(questions):
        head = f"{system_prompt}\n" if system_prompt else ""
        ctx = encode(tokenizer, f"{head}Question: {q.question}\nAnswer:")
        for choice in q.choices:
            contexts.append(ctx)
            conts.append(encode(tokenizer, f" {choice}"))
            owner.append(qi)
    scored = continuation_logprobs(
        model, contexts, conts, batch_size=batch_size, pad=pad_id(tokenizer)
    )
    best: list[tuple[float, int]] = [(float("-inf"), -1)] * len(questions)
    index = [0] * len(questions)
    for (lp, n), qi in zip(scored, owner, strict=True):
        value = lp / n if normalize == "mean" and n else lp
        option = index[qi]
        index[qi] += 1
        if value > best[qi][0]:
            best[qi] = (value, option)
    predictions = [b[1] for b in best]
    correct = sum(p == q.answer for p, q in zip(predictions, questions, strict=True))
    return Knowledge(correct / len(questions), predictions, len(questions))
