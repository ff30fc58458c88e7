"""Knowledge retained: multiple-choice accuracy by option log-likelihood.

Each option is scored as the assistant's answer to the question (the model's chat format):
by default the mean log-probability per option token (``normalize="mean"``, so longer
options are not penalised), or the plain sum (``"sum"``). The highest-scoring option is
the model's choice. Attach steering before calling to measure knowledge *under* steering.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pace.evaluation._lm import continuation_logprobs, encode, pad_id, render_chat
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
    normalize: Normalize = "mean",
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
        ctx = encode(tokenizer, render_chat(tokenizer, q.question, system_prompt))
        for choice in q.choices:
            contexts.append(ctx)
            conts.append(encode(tokenizer, choice))
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
