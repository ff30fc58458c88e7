"""Vanilla and PaCE-steered answers side by side, with the concepts each answer lost."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from pace.dictionary import ConceptDictionary
from pace.evaluation.atoms import transform_atoms
from pace.evaluation.guards import SinkGuard
from pace.steering import EditMethod, PaCE, steer

__all__ = ["Comparison", "compare", "render"]


@dataclass(frozen=True)
class Comparison:
    prompt: str
    vanilla: str
    steered: str
    removed: list[tuple[str, float]]
    """Undesirable concepts removed while writing the steered answer, by total |coefficient|."""


def _inputs(tokenizer: Any, prompt: str, device: torch.device) -> dict[str, torch.Tensor]:
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    else:
        text = prompt
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    return {k: v.to(device) for k, v in enc.items()}


def _generate(model: Any, tokenizer: Any, inputs: dict[str, torch.Tensor], n: int) -> str:
    with torch.inference_mode():
        out = model.generate(
            **inputs,
            max_new_tokens=n,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
    new = out[0, inputs["input_ids"].shape[1] :]
    return str(tokenizer.decode(new, skip_special_tokens=True)).strip()


def compare(
    model: Any,
    tokenizer: Any,
    dictionary: ConceptDictionary,
    prompts: Sequence[str],
    *,
    method: EditMethod | None = None,
    layers: Sequence[int] | None = None,
    max_new_tokens: int = 48,
    top: int = 6,
) -> list[Comparison]:
    """Greedy answers to each prompt without and with steering (same decoding).

    As the evaluation harness found on SmolLM2 (docs/evaluation.md), the atoms are
    centered with their mean kept as one more benign atom, and attention-sink tokens
    are left unedited; without that, raw mean-activation atoms break every method.
    """
    device = next(model.parameters()).device
    dictionary = transform_atoms(dictionary, center=True, mean_atom=True)
    edit = SinkGuard(method or PaCE())
    results = []
    for prompt in prompts:
        inputs = _inputs(tokenizer, prompt, device)
        vanilla = _generate(model, tokenizer, inputs, max_new_tokens)
        with steer(model, dictionary, method=edit, layers=layers, record=True) as handle:
            steered = _generate(model, tokenizer, inputs, max_new_tokens)
            removed = _top_removed(handle, top)
        results.append(Comparison(prompt, vanilla, steered, removed))
    return results


def _top_removed(handle: Any, top: int) -> list[tuple[str, float]]:
    if not handle.concept_names:
        return []
    try:
        explanation = handle.explanation()
    except ValueError:
        return []
    start = explanation.prompt_length - 1
    totals = explanation.per_token()[0, start:].abs().sum(dim=0)
    order = torch.argsort(totals, descending=True)[:top].tolist()
    return [(explanation.concept_names[i], float(totals[i])) for i in order if totals[i] > 0]


def render(console: Console, comparisons: Sequence[Comparison], *, title: str = "") -> None:
    table = Table(title=title or None, show_lines=True, expand=True)
    table.add_column("prompt", ratio=2, style="bold")
    table.add_column("vanilla", ratio=3)
    table.add_column("PaCE-steered", ratio=3, style="green")
    table.add_column("concepts removed", ratio=2, style="magenta")
    for c in comparisons:
        removed = ", ".join(f"{name} ({w:.2f})" for name, w in c.removed) or "-"
        table.add_row(c.prompt, c.vanilla, c.steered, removed)
    console.print(table)
