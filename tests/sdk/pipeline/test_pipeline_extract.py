"""Activation extraction on tiny random-init Llama and GPT-2 models (and SmolLM2 once)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
import torch
from tqdm import TqdmWarning

from pace.pipeline.extract import Extractor, Recipe, Reduction, reduce_stimuli
from pace.pipeline.records import ConceptRecord, Stimulus

from .tiny_models import char_tokenizer, tiny_model

TEXTS = [
    "You lie to a friend.",
    "Hi",
    "You share your lunch with a stranger on a long train ride home.",
    "You tell the truth even though it costs you.",
    "A",
    "You kick a stone down the empty road at night.",
    "You smile.",
]


def concept(name: str, texts: Sequence[str]) -> ConceptRecord:
    return ConceptRecord(name, stimuli=tuple(Stimulus(t) for t in texts))


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("position", ["last", "mean"])
def test_batched_equals_one_at_a_time(arch: str, side: str, position: str) -> None:
    model, tok = tiny_model(arch), char_tokenizer(side)
    recipe = Recipe(token_position=position)  # type: ignore[arg-type]
    batched = Extractor(model, tok, layers=[0, 2], recipe=recipe, batch_size=4)
    single = Extractor(model, tok, layers=[0, 2], recipe=recipe, batch_size=1)
    a, b = batched.stimulus_vectors(TEXTS), single.stimulus_vectors(TEXTS)
    for layer in (0, 2):
        assert a[layer].shape == (len(TEXTS), 32)
        assert torch.isfinite(a[layer]).all()
        torch.testing.assert_close(a[layer], b[layer], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_layer_is_hidden_states_l_plus_1(arch: str) -> None:
    model, tok = tiny_model(arch), char_tokenizer()
    ex_last = Extractor(model, tok, layers=[0, 1], recipe=Recipe(token_position="last"))
    ex_mean = Extractor(model, tok, layers=[0, 1], recipe=Recipe(token_position="mean"))
    last, mean = ex_last.stimulus_vectors(TEXTS), ex_mean.stimulus_vectors(TEXTS)
    for i, text in enumerate(TEXTS):
        enc = tok(text, return_tensors="pt")
        with torch.no_grad():
            hs = model(**enc, output_hidden_states=True).hidden_states
        for layer in (0, 1):
            torch.testing.assert_close(last[layer][i], hs[layer + 1][0, -1], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(
                mean[layer][i], hs[layer + 1][0].mean(0), atol=1e-5, rtol=1e-4
            )
    # different positions give different vectors (the test can fail)
    assert not torch.allclose(last[1], mean[1])


def test_deepest_block_is_the_block_output() -> None:
    model: Any = tiny_model("llama")
    tok = char_tokenizer()
    out = Extractor(model, tok, layers=[2]).stimulus_vectors(["You smile."])[2][0]
    seen: list[torch.Tensor] = []
    handle = model.model.layers[2].register_forward_hook(
        lambda _m, _a, o: seen.append(o[0] if isinstance(o, tuple) else o)
    )
    try:
        with torch.no_grad():
            model(**tok("You smile.", return_tensors="pt"))
    finally:
        handle.remove()
    torch.testing.assert_close(out, seen[0][0, -1], atol=1e-5, rtol=1e-4)


def test_reductions() -> None:
    torch.manual_seed(1)
    x = torch.randn(6, 5) + torch.tensor([3.0, 0, 0, 0, 0])
    torch.testing.assert_close(reduce_stimuli(x, "mean"), x.mean(0))
    v = reduce_stimuli(x, "pc1")
    xc = (x - x.mean(0)).double().numpy()
    ref = np.linalg.svd(xc)[2][0]
    assert abs(abs(float(np.dot(ref, v.double().numpy()))) - 1.0) < 1e-6
    assert float(v @ x.mean(0)) >= 0 and abs(float(v.norm()) - 1.0) < 1e-5
    torch.testing.assert_close(reduce_stimuli(x[:1], "pc1"), x[0] / x[0].norm())
    with pytest.raises(ValueError):
        reduce_stimuli(torch.empty(0, 5), "mean")


@pytest.mark.parametrize("reduction", ["mean", "pc1"])
def test_concept_atoms_reduce_their_own_stimuli(reduction: Reduction) -> None:
    model, tok = tiny_model("llama"), char_tokenizer()
    ex = Extractor(model, tok, layers=[1], recipe=Recipe(reduction=reduction), batch_size=3)
    records = [concept("a", TEXTS[:3]), concept("b", TEXTS[3:]), concept("c", TEXTS[1:2])]
    chunk = ex.extract(records)
    assert chunk.names == ["a", "b", "c"] and chunk.n_stimuli == 8
    for row, rec in enumerate(records):
        per = ex.stimulus_vectors(rec.texts)[1]
        torch.testing.assert_close(
            chunk.vectors[1][row],
            reduce_stimuli(per, reduction),
            atol=1e-4,
            rtol=1e-4,
        )


def test_template_is_applied() -> None:
    model, tok = tiny_model("gpt2"), char_tokenizer()
    plain = Extractor(model, tok, layers=[1]).stimulus_vectors(["You smile."])[1]
    templ = Recipe(prompt_template='{"q": "{stimulus}"} ->')
    wrapped = Extractor(model, tok, layers=[1], recipe=templ).stimulus_vectors(["You smile."])[1]
    direct = Extractor(model, tok, layers=[1]).stimulus_vectors(['{"q": "You smile."} ->'])[1]
    torch.testing.assert_close(wrapped, direct)
    assert not torch.allclose(plain, wrapped)
    assert templ.to_dict()["code_version"] == __import__("pace").__version__


def test_streaming_skip_and_upload_rows() -> None:
    model, tok = tiny_model("llama"), char_tokenizer()
    ex = Extractor(model, tok, layers=[0, 2], batch_size=4)
    pulled: list[str] = []

    def source() -> Iterator[ConceptRecord]:
        items = [concept(f"c{i}", TEXTS[i : i + 2]) for i in range(5)]
        items.insert(2, ConceptRecord("nostim"))
        items.append(concept("c0", TEXTS[:1]))  # repeated name
        for item in items:
            pulled.append(item.name)
            yield item

    asked: list[list[str]] = []

    def stored(chunk: Sequence[ConceptRecord]) -> set[str]:
        asked.append([c.name for c in chunk])
        return {"c3"}

    chunks = ex.iter_chunks(source(), chunk_size=3, skip=stored, progress=False)
    first = next(chunks)
    assert len(pulled) == 3, "concepts are pulled one chunk at a time"
    rest = list(chunks)
    assert [c.names for c in [first, *rest]] == [["c0", "c1"], ["c2", "c4"], []]
    assert first.empty == ["nostim"] and rest[0].skipped == ["c3"] and rest[1].skipped == ["c0"]
    assert asked == [["c0", "c1", "nostim"], ["c2", "c3", "c4"], ["c0"]]
    ids = {"c0": 10, "c1": 11}
    vectors, cids, layers = first.upload_rows(ids, dtype=torch.float16)
    assert vectors.shape == (4, 32) and vectors.dtype == torch.float16
    assert cids.tolist() == [10, 11, 10, 11] and layers.tolist() == [0, 0, 2, 2]
    torch.testing.assert_close(vectors[3].float(), first.vectors[2][1], atol=1e-2, rtol=1e-2)
    # a container of stored names works too, and run() hands chunks to a sink
    got: list[list[str]] = []
    summary = ex.run(
        [concept("x", TEXTS[:2]), concept("y", TEXTS[2:4])],
        lambda c: got.append(c.names),
        skip={"y"},
        progress=False,
    )
    assert got == [["x"]] and (summary.concepts, summary.skipped, summary.stimuli) == (1, 1, 2)


def test_bad_arguments() -> None:
    model, tok = tiny_model("llama"), char_tokenizer()
    with pytest.raises(ValueError, match=r"layers \[3\] do not exist"):
        Extractor(model, tok, layers=[3])
    with pytest.raises(ValueError, match="stimulus"):
        Recipe(prompt_template="no slot")
    with pytest.raises(ValueError, match="reduction"):
        Recipe(reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no stimuli"):
        Extractor(model, tok, layers=[0]).extract([ConceptRecord("empty")])


@pytest.fixture(scope="module")
def smollm2() -> tuple[Any, Any]:
    models = pytest.importorskip("pace.models")
    try:
        loaded: tuple[Any, Any] = models.load_packaged_model("smollm2")
    except models.PackagedModelError as exc:
        pytest.skip(f"SmolLM2 is not installed: {exc}")
    return loaded


@pytest.mark.slow
@pytest.mark.parametrize("side", ["left", "right"])
def test_smollm2_batched_equals_one_at_a_time(smollm2: tuple[Any, Any], side: str) -> None:
    model, tok = smollm2
    layers = [5, 15, 29]
    recipe = Recipe(token_position="last")
    a = Extractor(model, tok, layers=layers, recipe=recipe, batch_size=8, padding_side=side)  # type: ignore[arg-type]
    b = Extractor(model, tok, layers=layers, recipe=recipe, batch_size=1, padding_side=side)  # type: ignore[arg-type]
    va, vb = a.stimulus_vectors(TEXTS), b.stimulus_vectors(TEXTS)
    for layer in layers:
        assert va[layer].shape == (len(TEXTS), 576)
        rel = (va[layer] - vb[layer]).norm(dim=1) / vb[layer].norm(dim=1)
        assert float(rel.max()) < 1e-4, (layer, rel)
    # distinct stimuli give distinct atoms (a broken gather would repeat one row)
    assert float(torch.cdist(va[15], va[15]).triu(1).max()) > 1.0


def test_progress_bar_and_eval_mode(capsys: pytest.CaptureFixture[str]) -> None:
    model, tok = tiny_model("gpt2"), char_tokenizer()
    model.train()
    ex = Extractor(model, tok, layers=[1], batch_size=2)
    records = [concept(f"c{i}", TEXTS[i : i + 3]) for i in range(4)]
    a = [c.vectors[1] for c in ex.iter_chunks(records, chunk_size=2, progress=True)]
    b = [c.vectors[1] for c in ex.iter_chunks(records, chunk_size=2, progress=False)]
    # dropout is off during extraction (same atoms twice) and the mode is restored
    torch.testing.assert_close(torch.cat(a), torch.cat(b))
    assert model.training
    err = capsys.readouterr().err
    assert "extracting: 100%" in err and "4/4" in err


def test_progress_ends_on_the_count(capsys: pytest.CaptureFixture[str]) -> None:
    # Progress moves by fractions of a concept per batch; 5 concepts of 7 stimuli in
    # chunks of 4 and batches of 3 summed to 5.000000000000001 in floats, and tqdm warned
    # ("clamping frac to range [0, 1]") and showed a negative time left.
    model, tok = tiny_model("gpt2"), char_tokenizer()
    ex = Extractor(model, tok, layers=[1], batch_size=3)
    texts = [TEXTS[i % len(TEXTS)] + f" {i}" for i in range(7)]
    records = [concept(f"c{i}", texts) for i in range(5)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", TqdmWarning)
        chunks = list(ex.iter_chunks(records, chunk_size=4, progress=True))
    assert sum(len(c) for c in chunks) == 5
    err = capsys.readouterr().err
    assert "5/5" in err and "<-" not in err


def test_truncation_is_counted() -> None:
    model, tok = tiny_model("llama"), char_tokenizer()
    ex = Extractor(model, tok, layers=[0], max_length=12)
    summary = ex.run([concept("a", TEXTS[:3])], lambda _c: None, progress=False)
    assert summary.truncated == 2  # 21 and 64 tokens; "Hi" (3) fits
