"""Steering hooks on tiny random-init models of every supported architecture.

Trained weights are not needed to prove where hooks attach, that the edit follows its
formula, that pad positions are left alone, and that nothing is left behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from pace.solver import ElasticNet
from pace.steering import NoOp, OrthoProj, PaCE, SteeringError, VecAdd, decoder_layers, steer

TINY_ARCHS = ("llama", "qwen2", "mistral", "gemma3", "gpt2", "gpt_neox")
N_ATOMS = 24
UNDESIRABLE = [0, 1, 2]


def _atoms(model: Any, seed: int = 0) -> dict[int, Tensor]:
    """Atoms from the model's own activations on random token runs, plus random ones."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, model.config.vocab_size, (N_ATOMS // 2, 6), generator=g)
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states
    width = hidden[0].shape[-1]
    atoms = {}
    for layer in range(len(hidden) - 1):
        real = hidden[layer + 1].mean(dim=1)
        rand = torch.randn(N_ATOMS - real.shape[0], width, generator=g) * real.norm(dim=1).mean()
        atoms[layer] = torch.cat([real, rand]).float()
    return atoms


def _hook_ids(model: nn.Module) -> dict[str, set[int]]:
    return {name: {*m._forward_hooks, *m._forward_pre_hooks} for name, m in model.named_modules()}


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


def _left_padded(rows: list[list[int]]) -> tuple[Tensor, Tensor, Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        mask[i, width - len(r) :] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, position_ids


PROMPT = torch.tensor([[5, 17, 42, 8, 63, 21, 9]])


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_layer_discovery_finds_every_decoder_block(arch: str, tiny_model: Callable) -> None:
    model = tiny_model(arch)
    blocks = decoder_layers(model)
    assert sorted(blocks) == list(range(model.config.num_hidden_layers))
    assert len({id(b) for b in blocks.values()}) == len(blocks)
    # Layer L is hidden_states[L + 1]: the block's output is the residual stream.
    seen: list[Tensor] = []
    with _capture(blocks[1], seen), torch.no_grad():
        out = model(PROMPT, output_hidden_states=True)
    if arch != "gpt2":  # GPT-2 applies ln_f to the last hidden state only
        torch.testing.assert_close(seen[0], out.hidden_states[2])


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_no_undesirable_concept_is_bit_identical(arch: str, tiny_model: Callable) -> None:
    model = tiny_model(arch)
    atoms = _atoms(model)
    with torch.no_grad():
        vanilla = model(PROMPT).logits
        for method in (PaCE(), NoOp(), VecAdd(scale=1.0), OrthoProj()):
            with steer(model, atoms, undesirable=[], method=method):
                steered = model(PROMPT).logits
            assert torch.equal(steered, vanilla), type(method).__name__


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_pace_edits_and_hooks_are_gone_after_exit(arch: str, tiny_model: Callable) -> None:
    model = tiny_model(arch)
    atoms = _atoms(model)
    with torch.no_grad():
        vanilla = model(PROMPT).logits  # also lets transformers install its own hooks
        before = _hook_ids(model)
        with steer(model, atoms, undesirable=UNDESIRABLE) as handle:
            assert handle.active and _hook_ids(model) != before
            steered = model(PROMPT).logits
        assert not handle.active
        assert _hook_ids(model) == before
        assert not torch.allclose(steered, vanilla)
        assert torch.equal(model(PROMPT).logits, vanilla)


def test_hooks_are_gone_after_an_exception(tiny_model: Callable) -> None:
    model = tiny_model("llama")
    atoms = _atoms(model)
    model(PROMPT)
    before = _hook_ids(model)
    with pytest.raises(RuntimeError, match="boom"), steer(model, atoms, undesirable=UNDESIRABLE):
        raise RuntimeError("boom")
    assert _hook_ids(model) == before
    handle = steer(model, atoms, undesirable=UNDESIRABLE)
    handle.remove()
    handle.remove()  # idempotent
    assert _hook_ids(model) == before


def test_failed_attach_leaves_no_hook(tiny_model: Callable) -> None:
    model = tiny_model("llama")
    atoms = _atoms(model)
    before = _hook_ids(model)
    with pytest.raises(SteeringError):
        steer(model, atoms, undesirable=UNDESIRABLE, layers=[0, 7])
    assert _hook_ids(model) == before


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_left_padded_batch_matches_one_at_a_time(arch: str, tiny_model: Callable) -> None:
    model = tiny_model(arch)
    atoms = _atoms(model)
    rows = [[5, 17, 42, 8, 63, 21, 9], [33, 12, 7], [44, 45, 46, 47, 48]]
    ids, mask, pos = _left_padded(rows)
    layer = decoder_layers(model)[1]
    pre: list[Tensor] = []
    post: list[Tensor] = []
    with torch.no_grad():
        # Entered in order: `pre` is registered first and sees the block's own output.
        with (
            _capture(layer, pre),
            steer(model, atoms, undesirable=UNDESIRABLE, layers=[0, 1, 2]),
            _capture(layer, post),
        ):
            batch = model(ids, attention_mask=mask, position_ids=pos).logits
        pad = mask == 0
        assert pad.any()
        assert torch.equal(post[0][pad], pre[0][pad]), "a pad position was edited"
        assert not torch.allclose(post[0][~pad], pre[0][~pad])
        with steer(model, atoms, undesirable=UNDESIRABLE, layers=[0, 1, 2]):
            for i, r in enumerate(rows):
                one = model(torch.tensor([r])).logits[0]
                torch.testing.assert_close(batch[i, -len(r) :], one, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_generate_with_kv_cache_edits_every_token(arch: str, tiny_model: Callable) -> None:
    model = tiny_model(arch)
    atoms = _atoms(model)
    kw: dict[str, Any] = {
        "max_new_tokens": 6, "do_sample": False, "min_new_tokens": 6,
        "output_scores": True, "return_dict_in_generate": True, "pad_token_id": 0,
    }  # fmt: skip
    with torch.no_grad():
        vanilla = model.generate(PROMPT, **kw)
        with steer(model, atoms, undesirable=UNDESIRABLE, record=True) as handle:
            cached = model.generate(PROMPT, use_cache=True, **kw)
            explanation = handle.explanation()
            handle.clear_record()
            recomputed = model.generate(PROMPT, use_cache=False, **kw)
    # Without a cache every step re-runs (and re-edits) the whole sequence; with the
    # cache only the new token is run. Same edits => same scores, step by step.
    for a, b in zip(cached.scores, recomputed.scores, strict=True):
        torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4)
    assert not all(torch.allclose(a, b) for a, b in zip(cached.scores, vanilla.scores, strict=True))
    # One recorded position per prompt token and per decode step, all edited.
    assert explanation.coefficients.shape[:3] == (1, PROMPT.shape[1] + 5, 3)
    assert explanation.edited.all()
    assert explanation.generated().shape == (len(UNDESIRABLE), 6)


def _pre_post(model: Any, method: Any, atoms: dict[int, Tensor]) -> tuple[Tensor, Tensor]:
    layer = decoder_layers(model)[1]
    pre: list[Tensor] = []
    post: list[Tensor] = []
    with (
        torch.no_grad(),
        _capture(layer, pre),
        steer(model, atoms, undesirable=UNDESIRABLE, layers=[1], method=method),
        _capture(layer, post),
    ):
        model(PROMPT)
    return pre[0][0], post[0][0]


def test_pace_follows_its_formula(tiny_model: Callable) -> None:
    model = tiny_model("llama")
    atoms = _atoms(model)
    z, edited = _pre_post(model, PaCE(alpha=0.05, tau=0.95), atoms)
    d = atoms[1] / atoms[1].norm(dim=1, keepdim=True)
    norm = z.norm(dim=1, keepdim=True)
    c = ElasticNet(atoms[1], alpha=0.05, tau=0.95).solve(z / norm)
    assert (c[:, UNDESIRABLE] != 0).any(), "test dictionary must activate an undesirable atom"
    expected = z - norm * (c[:, UNDESIRABLE] @ d[UNDESIRABLE])
    torch.testing.assert_close(edited, expected, atol=1e-5, rtol=1e-5)


def test_vecadd_subtracts_the_scaled_concept_vector(tiny_model: Callable) -> None:
    model = tiny_model("llama")
    atoms = _atoms(model)
    z, edited = _pre_post(model, VecAdd(scale=0.7), atoms)
    d = atoms[1] / atoms[1].norm(dim=1, keepdim=True)
    v = d[UNDESIRABLE].mean(dim=0)
    v = v / v.norm()
    torch.testing.assert_close(edited, z - 0.7 * z.norm(dim=1, keepdim=True) * v)


def test_orthoproj_leaves_activation_orthogonal_to_undesirable_atoms(
    tiny_model: Callable,
) -> None:
    model = tiny_model("llama")
    atoms = _atoms(model)
    z, edited = _pre_post(model, OrthoProj(), atoms)
    d_u = atoms[1][UNDESIRABLE] / atoms[1][UNDESIRABLE].norm(dim=1, keepdim=True)
    cos = (edited @ d_u.T) / edited.norm(dim=1, keepdim=True)
    assert cos.abs().max() < 1e-5
    # Only the span was removed: the rest of z is unchanged.
    coef = torch.linalg.lstsq(d_u.T.double(), z.T.double()).solution
    torch.testing.assert_close(edited.double(), z.double() - (d_u.T.double() @ coef).T)


@pytest.mark.parametrize("model_dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("atom_dtype", [torch.float32, torch.float16])
def test_half_precision_models_with_other_dictionary_dtypes(
    tiny_model: Callable, model_dtype: torch.dtype, atom_dtype: torch.dtype
) -> None:
    model = tiny_model("llama")
    atoms32 = _atoms(model)
    model = model.to(model_dtype)
    atoms = {k: v.to(atom_dtype) for k, v in atoms32.items()}
    with torch.no_grad():
        vanilla = model(PROMPT).logits
        with steer(model, atoms, undesirable=[]):
            assert torch.equal(model(PROMPT).logits, vanilla)
        z, edited = _pre_post(model, PaCE(), atoms)
        with steer(model, atoms, undesirable=UNDESIRABLE):
            steered = model(PROMPT).logits
    assert edited.dtype == model_dtype and steered.dtype == model_dtype
    assert torch.isfinite(steered).all() and not torch.equal(steered, vanilla)
    # The edit is computed in fp32 from the half-precision activation and cast back.
    zf = z.float()
    norm = zf.norm(dim=1, keepdim=True)
    c = ElasticNet(atoms[1].float(), alpha=0.05, tau=0.95).solve(zf / norm)
    d = atoms[1].float() / atoms[1].float().norm(dim=1, keepdim=True)
    expected = (zf - norm * (c[:, UNDESIRABLE] @ d[UNDESIRABLE])).to(model_dtype)
    tol = 2e-2 if model_dtype == torch.bfloat16 else 2e-3
    torch.testing.assert_close(edited.float(), expected.float(), atol=tol, rtol=tol)


def test_explanation_plot_is_a_png(tiny_model: Callable, tmp_path: Any) -> None:
    model = tiny_model("llama")
    atoms = _atoms(model)
    names = [f"concept {i}" for i in range(N_ATOMS)]
    with (
        torch.no_grad(),
        steer(model, atoms, undesirable=UNDESIRABLE, concept_names=names, record=True) as handle,
    ):
        model.generate(PROMPT, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    explanation = handle.explanation()
    assert explanation.concept_names == names[:3]
    assert explanation.per_token().abs().sum() > 0
    out = explanation.plot(tmp_path / "why.png", token_labels=["a", "b", "c", "d"])
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    with pytest.raises(SteeringError, match="token_labels"):
        explanation.plot(tmp_path / "bad.png", token_labels=["a"])


def test_layer_modules_override(tiny_model: Callable) -> None:
    model = tiny_model("llama")
    atoms = _atoms(model)
    blocks = list(model.model.layers)
    with torch.no_grad():
        vanilla = model(PROMPT).logits
        with steer(model, atoms, undesirable=UNDESIRABLE, layer_modules={1: blocks[1]}, layers=[1]):
            a = model(PROMPT).logits
        with steer(model, atoms, undesirable=UNDESIRABLE, layers=[1]):
            b = model(PROMPT).logits
    assert not torch.equal(a, vanilla)
    torch.testing.assert_close(a, b)


def test_invalid_input_raises_clear_errors(tiny_model: Callable) -> None:
    model = tiny_model("llama")
    atoms = _atoms(model)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"layers": [5]}, "not in the dictionary"),
        ({"undesirable": [99]}, r"undesirable indices must be in \[0, 24\)"),
        ({"undesirable": None}, "pass undesirable="),
        ({"method": "pace"}, "method must have a prepare"),
        ({"layers": []}, "layers is empty"),
        ({"concept_names": ["x"]}, "concept_names has 1 names"),
    ]
    for extra, message in cases:
        kwargs: dict[str, Any] = {"undesirable": UNDESIRABLE, **extra}
        with pytest.raises(SteeringError, match=message):
            steer(model, atoms, **kwargs)
    with pytest.raises(SteeringError, match="not a decoder layer"):
        steer(model, {7: atoms[0]}, undesirable=UNDESIRABLE)
    with pytest.raises(SteeringError, match="hidden size is 32"):
        steer(model, {0: torch.randn(4, 16)}, undesirable=[0])
    with pytest.raises(SteeringError, match="zero or non-finite"):
        steer(model, {0: torch.zeros(4, 32)}, undesirable=[0])
    with pytest.raises(SteeringError, match="cannot find the decoder layers"):
        steer(nn.Linear(32, 32), atoms, undesirable=UNDESIRABLE)
    with pytest.raises(SteeringError, match="alpha"):
        PaCE(alpha=0)
    with pytest.raises(SteeringError, match="record=True"):
        steer(model, atoms, undesirable=UNDESIRABLE).explanation()
