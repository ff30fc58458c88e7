"""JSONL import and export: one concept per line.

Each line is ``{"name": str, "description": str, "tags": [str], "stimuli": [str |
{"text": str, "source": "generated"|"imported"|"human", "provenance": {...}}]}``; only
``name`` is required. Plain-string stimuli get source "imported" on import. Duplicate
stimuli (same text up to case and spacing) are merged; a name repeated on two lines is an
error naming both lines. Blank lines are ignored; a UTF-8 BOM is accepted.

Example::

    write_jsonl(records, "concepts.jsonl")
    result = read_jsonl("concepts.jsonl", on_error="collect")
    result.records, [str(e) for e in result.errors]
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

from pace.pipeline.errors import ConceptFormatError, JsonlFormatError
from pace.pipeline.records import ConceptRecord

__all__ = ["JsonlImport", "dumps_record", "iter_jsonl", "read_jsonl", "write_jsonl"]


def dumps_record(record: ConceptRecord) -> str:
    """One JSONL line (no newline)."""
    return json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":"))


def _parse_lines(
    lines: Iterable[str], path: str | None, on_error: Literal["raise", "collect"]
) -> Iterator[ConceptRecord | JsonlFormatError]:
    first_line: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if number == 1:
            line = line.removeprefix("\ufeff")
        if not line.strip():
            continue
        try:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise JsonlFormatError(
                    f"invalid JSON at column {exc.colno}: {exc.msg}", line=number, path=path
                ) from exc
            try:
                record = ConceptRecord.from_dict(obj)
            except ConceptFormatError as exc:
                raise JsonlFormatError(str(exc), line=number, path=path) from exc
            if record.name in first_line:
                raise JsonlFormatError(
                    f"duplicate concept name {record.name!r} (first on line "
                    f"{first_line[record.name]})",
                    line=number,
                    path=path,
                )
            first_line[record.name] = number
        except JsonlFormatError as exc:
            if on_error == "raise":
                raise
            yield exc
            continue
        yield record


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[ConceptRecord]:
    """Stream the records of a JSONL file; the first bad line raises ``JsonlFormatError``."""
    with open(path, encoding="utf-8") as f:
        for item in _parse_lines(f, str(path), "raise"):
            yield cast(ConceptRecord, item)  # "raise" mode yields no errors


@dataclass
class JsonlImport:
    records: list[ConceptRecord] = field(default_factory=list)
    errors: list[JsonlFormatError] = field(default_factory=list)
    """One per bad line (``.line`` is 1-based), in file order; empty in "raise" mode."""


def read_jsonl(
    source: str | os.PathLike[str] | Iterable[str],
    *,
    on_error: Literal["raise", "collect"] = "raise",
) -> JsonlImport:
    """Read every record; ``on_error="collect"`` keeps the good lines and lists the bad."""
    if on_error not in ("raise", "collect"):
        raise ValueError(f"on_error must be 'raise' or 'collect', got {on_error!r}")
    result = JsonlImport()
    if isinstance(source, (str, os.PathLike)):
        with open(source, encoding="utf-8") as f:
            items = list(_parse_lines(f, str(source), on_error))
    else:
        items = list(_parse_lines(source, None, on_error))
    for item in items:
        if isinstance(item, JsonlFormatError):
            result.errors.append(item)
        else:
            result.records.append(item)
    return result


def write_jsonl(records: Iterable[ConceptRecord], path: str | os.PathLike[str]) -> int:
    """Write records atomically (temp file, then rename); returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for record in records:
                f.write(dumps_record(record))
                f.write("\n")
                count += 1
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count
