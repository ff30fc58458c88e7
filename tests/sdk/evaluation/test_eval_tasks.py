from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from pace.evaluation import (
    TASKS,
    EvaluationError,
    get_task,
    load_knowledge,
    load_partition_labels,
    load_prompts,
)
from pace.pipeline.jsonl import read_jsonl


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_shipped_task_has_prompts_a_partition_and_a_system_prompt(name: str) -> None:
    task = get_task(name)
    prompts = load_prompts(task)
    assert len(prompts) >= 60
    assert len({p.id for p in prompts}) == len(prompts)
    labels = load_partition_labels(task)
    pack = read_jsonl(
        resources.files("pace.data").joinpath("starter_pack.jsonl").read_text().splitlines()
    ).records
    assert set(labels) == {r.name for r in pack}
    assert 0 < sum(labels.values()) < len(labels)
    assert task.description in task.system_prompt


def test_limit_and_knowledge_set() -> None:
    assert [p.id for p in load_prompts("sentiment", limit=2)] == ["sentiment-001", "sentiment-002"]
    questions = load_knowledge()
    assert len(questions) >= 50
    assert all(0 <= q.answer < len(q.choices) for q in questions)
    # The correct answer is spread over positions, so "always pick A" cannot score well.
    positions = [q.answer for q in questions]
    assert max(positions.count(i) for i in range(4)) < 0.4 * len(questions)


def test_unknown_task_and_bad_files_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="unknown task 'toxic'"):
        get_task("toxic")
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"id": "a", "prompt": "fine"}\n\n{"id": "b", "prompt": ""}\n')
    with pytest.raises(EvaluationError, match=r"p\.jsonl:3: 'prompt'"):
        load_prompts(path=bad)
    bad.write_text("{not json\n")
    with pytest.raises(EvaluationError, match=":1: invalid JSON"):
        load_prompts(path=bad)
    mc = tmp_path / "mc.jsonl"
    mc.write_text('{"question": "q?", "choices": ["a", "b"], "answer": 2}\n')
    with pytest.raises(EvaluationError, match="'answer' must be an index"):
        load_knowledge(mc)
    with pytest.raises(EvaluationError, match="limit must be >= 1"):
        load_prompts("sentiment", limit=0)
