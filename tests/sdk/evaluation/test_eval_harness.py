from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console

from pace.dictionary import ConceptDictionary
from pace.evaluation import (
    Decoding,
    EvalResults,
    EvaluationError,
    MCQuestion,
    MethodSpec,
    Prompt,
    Verdict,
    evaluate,
    plot_results,
    results_table,
    starter_dictionary,
    sweep_methods,
)


class LengthJudge:
    """A judge of our own (judges are pluggable): aligned when the answer has no 'x'."""

    name = "no-x-1"
    score_name = "x count"

    def judge(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Verdict]:
        return [Verdict("x" not in r, float(r.count("x"))) for r in responses]


PROMPTS = [Prompt("a", "Say something."), Prompt("b", "Tell me about your day, please.")]
QUESTIONS = [MCQuestion("q", "Best?", ("yes", "no", "maybe", "never"), 0)]


def test_harness_runs_every_method_with_the_same_decoding(
    tiny_lm: tuple[Any, Any], tiny_dictionary: ConceptDictionary, tmp_path: Path
) -> None:
    model, tok = tiny_lm
    specs = [
        *sweep_methods(alphas=[0.05], scales=[0.5], layer_sets=[(1, 2)]),
        MethodSpec("vecadd", scale=0.0, layers=(1,)),
        MethodSpec("pace", layers=(1, 2), atoms="center+mean-atom", sink_ratio=10.0),
    ]
    results = evaluate(
        model,
        tok,
        tiny_dictionary,
        task="sentiment",
        methods=specs,
        prompts=PROMPTS,
        judge=LengthJudge(),
        decoding=Decoding(max_new_tokens=4, batch_size=2),
        knowledge=QUESTIONS,
        model_name="tiny-llama",
    )
    assert results.judge == "no-x-1" and results.task == "sentiment"
    assert [m.label for m in results.methods] == [s.label for s in specs]
    by_kind = {m.label: m for m in results.methods}
    vanilla = by_kind["Vanilla"]
    assert vanilla.edit_norm is None and vanilla.layers is None
    # A zero-scale VecAdd edits nothing: same answers as vanilla, edit size 0.
    zero = by_kind["VecAdd s=0 L1"]
    assert [r.response for r in zero.responses] == [r.response for r in vanilla.responses]
    assert zero.edit_norm == pytest.approx(0.0, abs=1e-6)
    # VecAdd's edit is scale * ||z|| by construction: its measured size is the scale.
    assert by_kind["VecAdd s=0.5 L1-2"].edit_norm == pytest.approx(0.5, rel=1e-4)
    pace = by_kind["PaCE a=0.05 t=0.95 L1-2"]
    assert pace.layers == [1, 2] and pace.params == {"alpha": 0.05, "tau": 0.95}
    assert pace.edit_norm is not None and pace.edit_norm > 0
    assert pace.atoms == "raw" and pace.sink_ratio is None
    centered = by_kind["PaCE a=0.05 t=0.95 L1-2 ctr+mean guard10"]
    assert centered.atoms == "center+mean-atom" and centered.sink_ratio == 10.0
    assert centered.edit_norm is not None
    for m in results.methods:
        assert len(m.responses) == 2
        assert m.alignment == sum(r.aligned for r in m.responses) / 2
        assert m.mean_length == sum(r.tokens for r in m.responses) / 2
        assert m.knowledge in (0.0, 1.0) and m.ms_per_token > 0
    # JSON round trip, table, chart.
    path = results.save(tmp_path / "r.json")
    assert EvalResults.load(path) == results
    console = Console(record=True, width=200)
    console.print(results_table(results))
    text = console.export_text()
    assert "PaCE a=0.05 t=0.95 L1-2" in text and "no-x-1" in text
    png = plot_results(results, tmp_path / "chart.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_harness_refuses_an_unlabelled_dictionary(
    tiny_lm: tuple[Any, Any], tiny_dictionary: ConceptDictionary
) -> None:
    model, tok = tiny_lm
    unlabelled = tiny_dictionary.with_labels([0, 0, 0, 0])
    with pytest.raises(EvaluationError, match="no undesirable concepts"):
        evaluate(model, tok, unlabelled, task="sentiment", methods=[MethodSpec("pace")],
                 prompts=PROMPTS, judge=LengthJudge())  # fmt: skip
    with pytest.raises(EvaluationError, match="no methods"):
        evaluate(model, tok, tiny_dictionary, task="sentiment", methods=[], judge=LengthJudge())


def test_starter_dictionary_is_built_once_then_served_from_the_cache(
    tiny_lm: tuple[Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tok = tiny_lm
    kwargs: dict[str, Any] = {
        "model_id": "tiny",
        "layers": [2, 1],
        "limit": 5,
        "cache_dir": tmp_path,
    }
    first = starter_dictionary(model, tok, task="detoxification", **kwargs)
    assert first.layers == [1, 2] and len(first) == 5
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1 and files[0].stem == first.content_hash
    # Labels come from the shipped partition: the pack starts with insult, profanity, ...
    assert first.labels is not None and int(first.labels[0]) == 1
    assert first.metadata["partition"]["task"] == "detoxification"

    import pace.pipeline.extract as extract_mod

    def no_extraction(*args: Any, **kw: Any) -> None:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(extract_mod, "Extractor", no_extraction)
    again = starter_dictionary(model, tok, task="sentiment", **kwargs)
    assert torch.equal(again.atoms[1], first.atoms[1])
    assert again.content_hash == first.content_hash
    # Another recipe or layer set is another cache entry (and would extract).
    with pytest.raises(AssertionError, match="cache"):
        starter_dictionary(model, tok, **{**kwargs, "layers": [1]})
