"""Invariants of the data shipped in ``pace.data``: the starter pack, its partitions, eval sets.

The files are read through :mod:`importlib.resources`, as installed code reads them, so a
file missing from the package (or a package-data pattern that does not ship it) fails here.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections import Counter
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

HARM_CATEGORIES = (
    "political-sensitivity",
    "pornography",
    "ethics-and-morality",
    "illegal-activities",
    "mental-harm",
    "offensiveness",
    "physical-harm",
    "privacy-and-property",
    "unfairness-and-bias",
)
TASKS = ("detoxification", "sentiment", "faithfulness")
LABELS = {"benign", "undesirable"}


def _read(*parts: str) -> str:
    node = resources.files("pace.data")
    for part in parts:
        node = node.joinpath(part)
    return node.read_text(encoding="utf-8")


def _jsonl(*parts: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(_read(*parts).splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        assert isinstance(row, dict), f"{'/'.join(parts)}:{number} is not a JSON object"
        rows.append(row)
    return rows


@cache
def _pack() -> tuple[dict[str, Any], ...]:
    return tuple(_jsonl("starter_pack.jsonl"))


def _names() -> list[str]:
    return [c["name"] for c in _pack()]


def test_pack_has_enough_concepts_with_unique_normalized_names() -> None:
    names = _names()
    assert len(names) >= 300
    assert len(set(names)) == len(names), [n for n, k in Counter(names).items() if k > 1]
    for name in names:
        assert isinstance(name, str)
        assert name == name.strip().lower(), name
        assert 0 < len(name) <= 40, name
        # Names must be safe as file names for the PaCE-1M style exporter.
        assert re.fullmatch(r"[a-z][a-z -]*[a-z]", name), name


def test_every_concept_has_ten_unique_short_stimuli_and_metadata() -> None:
    for concept in _pack():
        assert set(concept) == {"name", "description", "tags", "stimuli"}, concept["name"]
        assert isinstance(concept["description"], str) and concept["description"].strip()
        tags = concept["tags"]
        assert isinstance(tags, list) and tags and all(isinstance(t, str) for t in tags)
        stimuli = concept["stimuli"]
        assert isinstance(stimuli, list)
        assert len(stimuli) >= 10, concept["name"]
        assert len(set(stimuli)) == len(stimuli), concept["name"]
        for text in stimuli:
            assert isinstance(text, str) and text == text.strip()
            assert 8 <= len(text.split()) <= 25, (concept["name"], text)


def test_no_stimulus_is_shared_between_concepts() -> None:
    counts = Counter(s for c in _pack() for s in c["stimuli"])
    assert [s for s, k in counts.items() if k > 1] == []


def test_most_stimuli_do_not_name_their_concept() -> None:
    """The concept should be evident from the scenario, not from its name (PaCE's style)."""
    total = named = 0
    for concept in _pack():
        pattern = re.compile(r"\b" + re.escape(concept["name"]) + r"\b", re.IGNORECASE)
        hits = sum(bool(pattern.search(s)) for s in concept["stimuli"])
        assert hits <= len(concept["stimuli"]) // 2, concept["name"]
        total += len(concept["stimuli"])
        named += hits
    assert named / total < 0.1


@pytest.mark.parametrize("category", HARM_CATEGORIES)
def test_every_safeedit_harm_category_is_covered(category: str) -> None:
    tagged = [c["name"] for c in _pack() if f"harm:{category}" in c["tags"]]
    assert len(tagged) >= 5, (category, tagged)


def test_pack_balances_undesirable_and_benign_concepts() -> None:
    tag_counts = Counter(t for c in _pack() for t in c["tags"])
    assert tag_counts["sentiment:negative"] >= 25
    assert tag_counts["deception"] >= 8
    undesirable = [
        c
        for c in _pack()
        if any(t.startswith(("harm:", "deception")) for t in c["tags"])
        or "sentiment:negative" in c["tags"]
    ]
    benign = [c for c in _pack() if any(t.startswith("benign:") for t in c["tags"])]
    assert len(undesirable) >= 100
    assert len(benign) >= 180
    # A concept is either benign-tagged or undesirable-tagged, never both.
    assert not {c["name"] for c in undesirable} & {c["name"] for c in benign}
    assert len(undesirable) + len(benign) == len(_pack())


@cache
def _partition(task: str) -> dict[str, Any]:
    doc = json.loads(_read("partitions", f"{task}.json"))
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize("task", TASKS)
def test_partition_labels_every_pack_concept_exactly_once(task: str) -> None:
    doc = _partition(task)
    assert doc["task"]["name"] == task
    assert doc["task"]["description"].strip()
    assert doc["labeler"] == {"kind": "human", "name": "pace starter pack"}
    labelled = [row["concept"] for row in doc["labels"]]
    assert len(labelled) == len(set(labelled))
    assert set(labelled) == set(_names())
    for row in doc["labels"]:
        assert set(row) == {"concept", "label", "score", "rationale"}
        assert row["label"] in LABELS, row
        assert isinstance(row["score"], float) and 0.0 <= row["score"] <= 1.0, row
        assert isinstance(row["rationale"], str) and 0 < len(row["rationale"]) <= 200, row
    undesirable = sum(row["label"] == "undesirable" for row in doc["labels"])
    assert 0 < undesirable < len(labelled)


def _labels(task: str) -> dict[str, str]:
    return {row["concept"]: row["label"] for row in _partition(task)["labels"]}


def test_partitions_are_consistent_with_the_pack_tags() -> None:
    detox, sentiment, faithful = (_labels(t) for t in TASKS)
    for concept in _pack():
        name, tags = concept["name"], concept["tags"]
        if any(t.startswith("benign:") for t in tags):
            assert detox[name] == sentiment[name] == faithful[name] == "benign", name
        if any(t.startswith("harm:") for t in tags) or "deception" in tags:
            assert detox[name] == "undesirable", name
        if "sentiment:negative" in tags:
            assert sentiment[name] == "undesirable", name
        if "deception" in tags:
            assert faithful[name] == "undesirable", name
    # Hostile emotions are toxic; sadness is negative but not toxic.
    assert detox["hatred"] == detox["anger"] == "undesirable"
    assert detox["sadness"] == "benign" and sentiment["sadness"] == "undesirable"
    # A crime is out of scope for sentiment: it can be described in a neutral tone.
    assert sentiment["tax evasion"] == "benign"


@pytest.mark.parametrize(
    ("file", "prefix"),
    [
        ("sentiment_prompts.jsonl", "sentiment-"),
        ("detox_prompts.jsonl", "detox-"),
        ("faithfulness_prompts.jsonl", "faithfulness-"),
    ],
)
def test_prompt_sets_have_sixty_unique_prompts(file: str, prefix: str) -> None:
    rows = _jsonl("eval", file)
    assert len(rows) >= 60
    for row in rows:
        assert set(row) == {"id", "prompt"}
        assert row["id"].startswith(prefix)
        assert isinstance(row["prompt"], str) and 3 <= len(row["prompt"].split()) <= 40
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["prompt"].lower() for r in rows}) == len(rows)


def test_knowledge_set_is_valid_multiple_choice() -> None:
    rows = _jsonl("eval", "knowledge_mc.jsonl")
    assert len(rows) >= 60
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["question"] for r in rows}) == len(rows)
    positions: Counter[int] = Counter()
    for row in rows:
        assert set(row) == {"id", "question", "choices", "answer"}
        choices = row["choices"]
        assert isinstance(choices, list) and len(choices) == 4
        assert all(isinstance(c, str) and c.strip() for c in choices)
        assert len(set(choices)) == 4, row
        answer = row["answer"]
        assert type(answer) is int and 0 <= answer < 4, row
        positions[answer] += 1
    # A model that always picks one position must not score well: answers are spread out.
    assert max(positions.values()) <= len(rows) // 2
    assert len(positions) == 4


def test_package_data_patterns_ship_the_files() -> None:
    """pyproject's package-data must match every data file, and each folder is a package."""
    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["*"]
    data = root / "sdk" / "pace" / "data"
    files = [p for p in data.rglob("*") if p.is_file() and p.suffix in {".json", ".jsonl"}]
    assert len(files) >= 7
    for path in files:
        assert any(path.match(pattern) for pattern in patterns), path
        assert (path.parent / "__init__.py").is_file(), path.parent
