"""LLM partitioner against a real loopback OpenAI-compatible server."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from pace.pipeline.llm import LLMClient
from pace.pipeline.partitioner import partition_with_llm
from pace.pipeline.records import ConceptRecord

from .conftest import ScriptedLLM, user_prompt

TASK = "Detoxification: the answer must not contain insults, hate or threats."
BAD = {"hatred", "insult", "threat"}


def asked(body: dict[str, Any]) -> list[str]:
    return [json.loads(m) for m in re.findall(r'^- ("(?:[^"\\]|\\.)*")', user_prompt(body), re.M)]


def item(name: str) -> dict[str, Any]:
    bad = name in BAD
    return {
        "concept": name,
        "label": "undesirable" if bad else "benign",
        "score": 0.9 if bad else 0.1,
        "rationale": f"{name} is {'toxic' if bad else 'harmless'}.",
    }


def labeller(body: dict[str, Any]) -> str:
    return json.dumps({"labels": [item(n) for n in asked(body)]})


def test_labels_everything_in_batches(llm_server: ScriptedLLM, llm_client: LLMClient) -> None:
    llm_server.default = labeller
    names = ["hatred", "kindness", "insult", "flower", "threat"]
    concepts: list[str | ConceptRecord] = [*names[:4], ConceptRecord("threat", "to harm")]
    part = partition_with_llm(concepts, TASK, llm_client, batch_size=2)
    assert [lab.concept for lab in part.labels] == names
    assert set(part.undesirable) == BAD and not part.unlabelled and not part.issues
    assert len(llm_server.requests) == 3
    assert all(r["temperature"] == 0.0 for r in llm_server.requests)
    assert TASK in user_prompt(llm_server.requests[0])
    assert '"threat": to harm' in user_prompt(llm_server.requests[2])
    prov = part.provenance
    assert prov["model"] == "scripted-model" and prov["llm_host"].startswith("127.0.0.1:")
    assert len(prov["prompt_sha256"]) == 64 and prov["temperature"] == 0.0
    body = part.to_request(
        task_id=7, concept_set_version_id=3, concept_ids={n: i for i, n in enumerate(names)}
    )
    assert body["labels"][0] == {
        "concept_id": 0,
        "label": "undesirable",
        "score": 0.9,
        "rationale": "hatred is toxic.",
        "labeler": {"kind": "llm", "name": "scripted-model"},
    }
    with pytest.raises(KeyError, match="no concept id"):
        part.to_request(task_id=7, concept_set_version_id=3, concept_ids={})


def test_invalid_items_and_gaps_are_retried(llm_server: ScriptedLLM, llm_client: LLMClient) -> None:
    first = {
        "labels": [
            {**item("hatred"), "label": "toxic"},  # not in the enum
            {**item("kindness"), "score": 3},  # out of range
            item("bread"),  # not asked
            item("insult"),
            item("insult"),  # twice
        ]
    }
    err = (503, {"error": {"message": "busy"}})
    llm_server.script(json.dumps(first), err, labeller)
    part = partition_with_llm(["hatred", "kindness", "insult"], TASK, llm_client, batch_size=10)
    assert {lab.concept for lab in part.labels} == {"hatred", "kindness", "insult"}
    assert asked(llm_server.requests[1]) == ["hatred", "kindness"]
    issues = " | ".join(part.issues)
    assert "'toxic' is not one of" in issues and "> maximum 1" in issues
    assert "'bread' was not asked" in issues and "labelled twice" in issues


def test_unlabelled_concepts_are_listed_not_dropped(
    llm_server: ScriptedLLM, llm_client: LLMClient
) -> None:
    def skip_flower(body: dict[str, Any]) -> str:
        return json.dumps({"labels": [item(n) for n in asked(body) if n != "flower"]})

    llm_server.default = skip_flower
    part = partition_with_llm(["flower", "hatred", "river"], TASK, llm_client, max_rounds=3)
    assert part.unlabelled == ["flower"]
    assert [lab.concept for lab in part.labels] == ["hatred", "river"]
    # round 2 and 3 only ask for the missing one
    assert [asked(r) for r in llm_server.requests[1:]] == [["flower"], ["flower"]]
    assert part.to_request(
        task_id=1, concept_set_version_id=1, concept_ids={"hatred": 1, "river": 2}
    )["provenance"]["unlabelled"] == ["flower"]


def test_dead_endpoint_leaves_all_unlabelled(
    llm_server: ScriptedLLM, llm_client: LLMClient
) -> None:
    llm_server.default = (500, {"error": {"message": "down"}})
    part = partition_with_llm(["a", "b"], TASK, llm_client, max_rounds=2)
    assert part.unlabelled == ["a", "b"] and not part.labels
    assert len(part.issues) == 2 and "HTTP 500" in part.issues[0]
    with pytest.raises(ValueError, match="task"):
        partition_with_llm(["a"], "  ", llm_client)


def test_concurrent_batches(llm_server: ScriptedLLM, llm_client: LLMClient) -> None:
    llm_server.default = labeller
    names = [f"c{i}" for i in range(10)] + sorted(BAD)
    done: list[int] = []
    part = partition_with_llm(
        names, TASK, llm_client, batch_size=3, max_workers=3, on_progress=done.append
    )
    assert [lab.concept for lab in part.labels] == names and sum(done) == len(names)
    assert set(part.undesirable) == BAD and part.provenance["requests"] == 5
