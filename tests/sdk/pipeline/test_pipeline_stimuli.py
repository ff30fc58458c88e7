"""Stimuli generation against a real loopback OpenAI-compatible server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pace.pipeline.llm import LLMClient
from pace.pipeline.records import ConceptRecord
from pace.pipeline.stimuli import generate_stimuli, mentions_concept

from .conftest import ScriptedLLM, user_prompt


def asked(body: dict[str, Any]) -> list[str]:
    """The concept names a stimuli prompt asks for."""
    return [json.loads(m) for m in re.findall(r'^- ("(?:[^"\\]|\\.)*")', user_prompt(body), re.M)]


def good_answer(body: dict[str, Any]) -> str:
    names = asked(body)
    n = int(re.search(r"write (\d+) short", user_prompt(body)).group(1))  # type: ignore[union-attr]
    return json.dumps(
        {
            "concepts": [
                {"concept": c, "stimuli": [f"You notice {c} in scene {i}." for i in range(n)]}
                for c in names
            ]
        }
    )


def test_batches_validate_dedupe_and_cache(
    llm_server: ScriptedLLM, llm_client: LLMClient, tmp_path: Path
) -> None:
    llm_server.default = good_answer
    concepts: list[str | ConceptRecord] = [
        "hatred",
        "kindness",
        ConceptRecord("Paris", "the capital of France"),
        "hatred",
    ]
    result = generate_stimuli(concepts, llm_client, n=5, concepts_per_call=2, cache_dir=tmp_path)
    assert result.report.ok and result.report.calls == 2
    assert [r.name for r in result.records] == ["hatred", "kindness", "Paris"]
    assert all(len(r.stimuli) == 5 for r in result.records)
    s = result.records[2].stimuli[0]
    assert s.source == "generated" and s.provenance["model"] == "scripted-model"
    assert s.provenance["llm_host"].startswith("127.0.0.1:")
    assert "capital of France" in user_prompt(llm_server.requests[1])
    # second run: served from the on-disk cache, no request
    before = len(llm_server.requests)
    again = generate_stimuli(concepts, llm_client, n=5, concepts_per_call=2, cache_dir=tmp_path)
    assert len(llm_server.requests) == before
    assert sorted(again.report.cached) == ["Paris", "hatred", "kindness"]
    assert [r.texts for r in again.records] == [r.texts for r in result.records]
    assert not list(tmp_path.rglob("*.tmp"))


def test_duplicates_and_bad_items_are_dropped(
    llm_server: ScriptedLLM, llm_client: LLMClient, tmp_path: Path
) -> None:
    texts: list[object] = [
        "You feel hatred.",
        "you  feel HATRED.",
        "",
        3,
        "x" * 1000,
        "Hatred grows in you.",
    ]
    llm_server.script(json.dumps({"concepts": [{"concept": "hatred", "stimuli": texts}]}))
    r = generate_stimuli(["hatred"], llm_client, n=4, min_stimuli=2, cache_dir=tmp_path)
    assert r.records[0].texts == ["You feel hatred.", "Hatred grows in you."]
    assert r.report.dropped_stimuli == 4


def test_off_topic_malformed_and_missing_are_reported_not_stored(
    llm_server: ScriptedLLM, llm_client: LLMClient, tmp_path: Path
) -> None:
    stim = [f"You bake bread number {i}." for i in range(4)]
    first = {
        "concepts": [
            {"concept": "Paris", "stimuli": stim},  # off-topic: never mentions Paris
            {"concept": "bread", "stimuli": stim},  # not asked
            {"concept": "kindness", "stimuli": "You are kind."},  # malformed
        ]
    }
    llm_server.script(json.dumps(first), "this is not JSON", "nor this", "still not", "nope")
    r = generate_stimuli(
        ["Paris", "kindness", "greed"], llm_client, n=4, max_rounds=2, cache_dir=tmp_path
    )
    kinds = {(i.concept, i.kind) for i in r.report.issues}
    assert {("Paris", "off_topic"), ("bread", "unexpected_concept"), ("kindness", "malformed"),
            ("greed", "missing")} <= kinds  # fmt: skip
    assert {f.concept for f in r.report.failures} == {"Paris", "kindness", "greed"}
    # the second round's LLM failure is the last reason recorded
    assert {f.kind for f in r.report.failures} == {"llm_error"}
    assert all(rec.stimuli == () for rec in r.records)
    assert not list(tmp_path.rglob("*.json")), "nothing rejected may be cached"


def test_failed_concepts_are_asked_again(
    llm_server: ScriptedLLM, llm_client: LLMClient, tmp_path: Path
) -> None:
    partial = json.dumps(
        {"concepts": [{"concept": "Greed", "stimuli": ["You hoard greedily.", "Greed wins."]}]}
    )
    llm_server.script(partial)  # 'kindness' is missing from this answer
    llm_server.default = good_answer
    r = generate_stimuli(
        ["greed", "kindness"], llm_client, n=2, concepts_per_call=5, cache_dir=tmp_path
    )
    assert r.report.ok, r.report.failures
    assert asked(llm_server.requests[1]) == ["kindness"]
    # matched case-insensitively to the one requested name
    assert r.records[0].texts == ["You hoard greedily.", "Greed wins."]


def test_mentions_concept() -> None:
    assert mentions_concept("hatred", ["You hate them."])
    assert mentions_concept("kindness", ["A kind stranger helps you."])
    assert mentions_concept("ice cream", ["You drop your cream."])
    assert mentions_concept("Paris", ["You walk by the Seine."]) is False
    assert mentions_concept("2:30-:34.3", ["anything"]) is None


def test_concurrent_requests_keep_order_and_report_progress(
    llm_server: ScriptedLLM, llm_client: LLMClient, tmp_path: Path
) -> None:
    llm_server.default = good_answer
    names = [f"concept{i}" for i in range(9)]
    done: list[int] = []
    r = generate_stimuli(
        names,
        llm_client,
        n=3,
        concepts_per_call=2,
        max_workers=4,
        cache_dir=tmp_path,
        on_progress=done.append,
    )
    assert r.report.ok and r.report.calls == 5 and sum(done) == 9
    assert [rec.name for rec in r.records] == names
    assert all(rec.texts[0] == f"You notice {rec.name} in scene 0." for rec in r.records)
    assert sorted(n for req in llm_server.requests for n in asked(req)) == sorted(names)
    done.clear()
    generate_stimuli(names[:3], llm_client, n=3, cache_dir=tmp_path, on_progress=done.append)
    assert done == [3]  # all three served from the cache
