"""JSONL import and export."""

from __future__ import annotations

from pathlib import Path

import pytest

from pace.pipeline.errors import JsonlFormatError
from pace.pipeline.jsonl import iter_jsonl, read_jsonl, write_jsonl
from pace.pipeline.records import ConceptRecord, Stimulus


def test_round_trip(tmp_path: Path) -> None:
    records = [
        ConceptRecord(
            "hatred",
            "intense dislike",
            ("emotion", "negative"),
            (
                Stimulus("You hate him.", "generated", {"model": "m", "n": 1}),
                Stimulus("Ünïcode hatred ✓", "human"),
            ),
        ),
        ConceptRecord("Paris"),
    ]
    path = tmp_path / "out" / "c.jsonl"
    assert write_jsonl(records, path) == 2
    assert path.read_text(encoding="utf-8").count("\n") == 2
    assert list(iter_jsonl(path)) == records
    assert not list(path.parent.glob("*.tmp"))


def test_plain_strings_and_dedupe() -> None:
    lines = ['\ufeff{"name": "x", "stimuli": ["A b", "a  B", {"text": "c"}]}', "", "  "]
    (rec,) = read_jsonl(lines).records
    assert rec.texts == ["A b", "c"] and {s.source for s in rec.stimuli} == {"imported"}


BAD = [
    '{"name": "ok"}',
    "{not json",
    '{"name": 3}',
    '{"name": "y", "stimuli": [{"text": "t", "source": "robot"}]}',
    '{"name": "z", "colour": "red"}',
    '["a list"]',
    '{"name": "ok"}',
    '{"name": "w", "stimuli": ["fine", 5]}',
]


def test_bad_lines_name_their_line_number(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(BAD) + "\n", encoding="utf-8")
    with pytest.raises(JsonlFormatError, match=r"bad\.jsonl:2: invalid JSON") as info:
        read_jsonl(path)
    assert info.value.line == 2
    result = read_jsonl(path, on_error="collect")
    assert [r.name for r in result.records] == ["ok"]
    assert [e.line for e in result.errors] == [2, 3, 4, 5, 6, 7, 8]
    messages = [str(e) for e in result.errors]
    assert "name must be a string" in messages[1]
    assert "robot" in messages[2] and "colour" in messages[3]
    assert "duplicate concept name 'ok' (first on line 1)" in messages[5]
    assert "stimuli[1]" in messages[6]
