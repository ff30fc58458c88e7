"""PaCE steering on the real packaged models (SmolLM2-135M-Instruct, Gemma 3 270M).

The dictionaries are read from each model's own activations (conftest.CONCEPT_TEXTS),
so removing a concept has a real effect on what the model computes and generates.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from pace.solver import ElasticNet
from pace.steering import PaCE, decoder_layers, steer

pytestmark = pytest.mark.slow

ANGER = 0  # row of "anger" in conftest.CONCEPT_TEXTS
ANGRY_TEXT = "I am so angry and furious at my neighbour, I want to scream at him!"


class Real:
    """A loaded model with a concept dictionary read from its activations."""

    def __init__(self, name: str, model: Any, tokenizer: Any, atoms: dict[int, Tensor],
                 names: list[str]) -> None:  # fmt: skip
        self.name, self.model, self.tokenizer = name, model, tokenizer
        self.atoms, self.names = atoms, names

    def prompt(self, text: str) -> dict[str, Tensor]:
        if self.tokenizer.chat_template:
            enc = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}],
                add_generation_prompt=True, return_tensors="pt", return_dict=True,
            )  # fmt: skip
            return dict(enc)
        return dict(self.tokenizer(text, return_tensors="pt"))


@pytest.fixture(scope="module", params=["smollm2", "gemma3"])
def real(request: pytest.FixtureRequest, concept_atoms: Callable) -> Real:
    model, tokenizer = request.getfixturevalue(request.param)
    layers = list(range(model.config.num_hidden_layers))
    atoms, names = concept_atoms(model, tokenizer, layers)
    return Real(request.param, model, tokenizer, atoms, names)


@contextmanager
def _capture(module: nn.Module, store: list[Tensor]) -> Iterator[None]:
    def hook(mod: nn.Module, args: Any, output: Any) -> None:
        h = output[0] if isinstance(output, tuple) else output
        store.append(h.detach().clone())

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _generate(real: Real, enc: dict[str, Tensor], n: int, **kw: Any) -> Any:
    with torch.no_grad():
        return real.model.generate(
            **enc, max_new_tokens=n, min_new_tokens=n, do_sample=False,
            pad_token_id=real.tokenizer.pad_token_id, **kw,
        )  # fmt: skip


def test_no_undesirable_concept_gives_bit_identical_logits(real: Real) -> None:
    enc = real.prompt(ANGRY_TEXT)
    with torch.no_grad():
        vanilla = real.model(**enc).logits
        with steer(real.model, real.atoms, undesirable=[], method=PaCE()):
            steered = real.model(**enc).logits
    assert torch.equal(steered, vanilla)


def test_removal_lowers_the_concepts_coefficient(real: Real) -> None:
    layer = real.model.config.num_hidden_layers // 2
    block = decoder_layers(real.model)[layer]
    enc = real.prompt(ANGRY_TEXT)
    pre: list[Tensor] = []
    post: list[Tensor] = []
    with (
        torch.no_grad(),
        _capture(block, pre),
        steer(real.model, real.atoms, undesirable=[ANGER], layers=[layer]),
        _capture(block, post),
    ):
        real.model(**enc)
    solver = ElasticNet(real.atoms[layer], alpha=0.05, tau=0.95)

    def anger(z: Tensor) -> Tensor:
        """The amount of anger in each token's activation: ||z|| * c_anger(z / ||z||)."""
        z = z[0].float()
        norm = z.norm(dim=1, keepdim=True)
        return solver.solve(z / norm)[:, ANGER] * norm[:, 0]

    before, after = anger(pre[0]), anger(post[0])
    active = before > 0
    assert active.sum() >= 3, "the angry prompt should load on the anger atom"
    assert (after[active] < before[active]).all()
    assert after.abs().sum() < 0.5 * before.abs().sum()


def test_steered_generation_is_deterministic_and_differs(real: Real, tmp_path: Path) -> None:
    enc = real.prompt("Write an angry rant about your noisy neighbour.")
    n = 6
    vanilla = _generate(real, enc, n)
    with steer(real.model, real.atoms, undesirable=[ANGER], concept_names=real.names,
               record=True) as handle:  # fmt: skip
        first = _generate(real, enc, n)
        explanation = handle.explanation()
        second = _generate(real, enc, n)
    assert torch.equal(first, second)
    assert not torch.equal(first, vanilla)
    # The explanation covers the prompt plus one position per decode step.
    assert explanation.concept_names == ["anger"]
    assert explanation.coefficients.shape[1] == enc["input_ids"].shape[1] + n - 1
    assert explanation.generated().shape == (1, n)
    assert explanation.generated().abs().sum() > 0
    new = first[0, enc["input_ids"].shape[1] :]
    labels = [real.tokenizer.decode([t]) for t in new.tolist()]
    png = explanation.plot(tmp_path / f"{real.name}.png", token_labels=labels)
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 1000


def test_left_padded_batch_matches_one_at_a_time(real: Real) -> None:
    texts = ["Tell me about your angry neighbour.", "Why are you so furious today? Shout!"]
    prompts = [real.prompt(t) for t in texts]
    width = max(p["input_ids"].shape[1] for p in prompts)
    pad_id = real.tokenizer.pad_token_id
    assert any(p["input_ids"].shape[1] < width for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for i, p in enumerate(prompts):
        length = p["input_ids"].shape[1]
        ids[i, width - length :] = p["input_ids"][0]
        mask[i, width - length :] = 1
    n = 4
    kw = {"output_scores": True, "return_dict_in_generate": True}

    def worst_gap() -> float:
        """Largest |batch - single| score over rows and steps; tokens must agree."""
        batch = _generate(real, {"input_ids": ids, "attention_mask": mask}, n, **kw)
        gap = 0.0
        for i, p in enumerate(prompts):
            single = _generate(real, p, n, **kw)
            assert torch.equal(batch.sequences[i, width:], single.sequences[0, -n:])
            for step in range(n):
                diff = (batch.scores[step][i] - single.scores[step][0]).abs().max()
                gap = max(gap, float(diff))
        return gap

    vanilla_gap = worst_gap()  # padding alone: fp reassociation (large for Gemma 3)
    with steer(real.model, real.atoms, undesirable=[ANGER]):
        steered_gap = worst_gap()
    # Editing a pad position, or a misaligned mask, would add errors of the edit's size.
    assert steered_gap <= 2 * vanilla_gap + 2e-2, (steered_gap, vanilla_gap)


def test_bf16_model_with_fp16_dictionary(real: Real) -> None:
    if real.name != "smollm2":
        pytest.skip("one real model is enough for the dtype path; the tiny suite covers all")
    model = copy.deepcopy(real.model).to(torch.bfloat16)
    atoms = {k: v.half() for k, v in real.atoms.items()}
    enc = real.prompt(ANGRY_TEXT)
    with torch.no_grad():
        vanilla = model(**enc).logits
        with steer(model, atoms, undesirable=[]):
            assert torch.equal(model(**enc).logits, vanilla)
        with steer(model, atoms, undesirable=[ANGER]):
            steered = model(**enc).logits
    assert steered.dtype == torch.bfloat16 and torch.isfinite(steered).all()
    assert not torch.equal(steered, vanilla)
