"""Import the PaCE-1M format: ``concept_index.txt`` plus ``concept/<name>.txt``.

Both files are Python list literals (the authors wrote them with ``str(list)``); they are
parsed with ``ast.literal_eval`` only, never ``eval``.

How the real index's quirks are handled (all of it is listed in the report):

- **Exact repeats** (1,376 in the real index) are merged: one concept, first position
  kept; the report counts how often each name appeared.
- **Case variants** ("US" / "us", 4,074 groups in the real index) are kept as distinct
  concepts by default, because concept names are case-sensitive in the service and the
  variants are different words for a model's tokenizer. ``case_variants="merge"`` folds
  them into the first (most frequent) spelling and unions their stimuli instead. Note
  that on a case-insensitive file system both spellings read the same stimuli file.
- **Names that are odd but safe as file names** (containing ':', starting with '.', like
  '2:30-:34.3' or '.30-mbf') are imported normally.
- **Names that cannot be a safe file name** (containing '/', '\\\\' or NUL, '.' or '..',
  empty, absolute, or whose resolved path would leave the stimuli folder, e.g. through a
  symlink) never touch the file system: with ``require_stimuli=True`` they are skipped
  and reported as ``unsafe``; with ``require_stimuli=False`` the concept is still
  imported, without stimuli, when the name itself is valid.

Example::

    result = import_pace1m("PaCE-1M/", require_stimuli=True)
    result.records[:3], result.report.summary()
"""

from __future__ import annotations

import ast
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pace.pipeline.errors import ConceptFormatError, UnsafePathError
from pace.pipeline.records import ConceptRecord, Stimulus

__all__ = [
    "Pace1MImport",
    "Pace1MReport",
    "import_pace1m",
    "iter_pace1m",
    "parse_list_literal",
    "read_concept_index",
    "safe_child_path",
]

MAX_FILE_BYTES = 16 * 1024 * 1024
"""Stimuli and index files larger than this are refused (literal_eval is memory-hungry)."""
TAG = "pace-1m"


def parse_list_literal(text: str, *, what: str) -> list[str]:
    """Parse a Python list literal of strings with ``ast.literal_eval``."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ConceptFormatError(f"{what} is not a Python list literal: {exc}") from exc
    if not isinstance(value, (list, tuple)):
        raise ConceptFormatError(f"{what} is a {type(value).__name__}, not a list")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ConceptFormatError(f"{what}[{i}] is a {type(item).__name__}, not a string")
    return list(value)


def _read_text(path: Path, what: str) -> str:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ConceptFormatError(f"{what} is {size} bytes, over the {MAX_FILE_BYTES} limit")
    return path.read_text(encoding="utf-8")


def read_concept_index(path: str | os.PathLike[str]) -> list[str]:
    """The names in a ``concept_index.txt``, in file order, repeats included."""
    path = Path(path)
    return parse_list_literal(_read_text(path, str(path)), what=str(path))


def safe_child_path(folder: str | os.PathLike[str], name: str, suffix: str = ".txt") -> Path:
    """``folder/<name><suffix>``, or ``UnsafePathError`` if that could leave ``folder``.

    Rejects empty names, NUL, '/', '\\\\', '.', '..' and absolute names without touching
    the file system, then resolves the path (following symlinks) and checks it is still
    inside ``folder``.
    """
    _check_file_name(name, suffix)
    base = Path(folder).resolve()
    candidate = (base / f"{name}{suffix}").resolve()
    if candidate.parent != base:
        raise UnsafePathError(f"concept name {name!r} resolves outside {base}")
    return candidate


def _check_file_name(name: str, suffix: str) -> None:
    if not name or name in (".", "..") or any(c in name for c in ("/", "\\", "\x00")):
        raise UnsafePathError(f"concept name {name!r} cannot be a file name")
    if os.path.isabs(name) or len((name + suffix).encode("utf-8")) > 255:
        raise UnsafePathError(f"concept name {name!r} cannot be a file name")


@dataclass
class Pace1MReport:
    """What the import merged, kept apart, or skipped, and why."""

    total_names: int = 0
    imported: int = 0
    repeats: dict[str, int] = field(default_factory=dict)
    """name -> how many times it appeared (only names seen more than once); merged."""
    case_groups: list[list[str]] = field(default_factory=list)
    """Groups of names equal up to case (kept distinct, or merged into the first)."""
    case_merged: dict[str, str] = field(default_factory=dict)
    """With ``case_variants="merge"``: variant -> the spelling it was merged into."""
    unsafe: list[tuple[str, str]] = field(default_factory=list)
    """(name, reason): names that were never used to build a path."""
    missing: list[str] = field(default_factory=list)
    """Names whose stimuli file does not exist."""
    invalid: list[tuple[str, str]] = field(default_factory=list)
    """(name, reason): invalid names or unreadable / malformed stimuli files."""
    empty: list[str] = field(default_factory=list)
    """Names whose stimuli file holds no usable stimulus."""
    skipped: int = 0
    """Concepts not imported (no stimuli while ``require_stimuli``, or invalid)."""

    def summary(self) -> str:
        return (
            f"{self.total_names} names: {self.imported} imported, {self.skipped} skipped; "
            f"{sum(self.repeats.values()) - len(self.repeats)} repeats merged, "
            f"{len(self.case_groups)} case-variant groups, {len(self.unsafe)} unsafe names, "
            f"{len(self.missing)} without a stimuli file, {len(self.invalid)} invalid, "
            f"{len(self.empty)} empty"
        )


@dataclass
class Pace1MImport:
    records: list[ConceptRecord]
    report: Pace1MReport


def _resolve_layout(
    root: str | os.PathLike[str] | None,
    index_path: str | os.PathLike[str] | None,
    stimuli_dir: str | os.PathLike[str] | None,
) -> tuple[Path, Path | None]:
    if index_path is None:
        if root is None:
            raise ValueError("pass root (a PaCE-1M folder) or index_path")
        index_path = Path(root) / "concept_index.txt"
    if stimuli_dir is None and root is not None:
        stimuli_dir = Path(root) / "concept"
    return Path(index_path), Path(stimuli_dir) if stimuli_dir is not None else None


def iter_pace1m(
    root: str | os.PathLike[str] | None = None,
    *,
    index_path: str | os.PathLike[str] | None = None,
    stimuli_dir: str | os.PathLike[str] | None = None,
    require_stimuli: bool = True,
    case_variants: Literal["keep", "merge"] = "keep",
    max_stimuli: int | None = None,
    report: Pace1MReport | None = None,
) -> Iterator[ConceptRecord]:
    """Yield the concepts one by one (bounded memory); fills ``report`` as it goes.

    ``root`` is a folder with ``concept_index.txt`` and ``concept/``; or give the two
    paths. ``stimuli_dir=None`` without ``root`` imports names only (with
    ``require_stimuli=False``). ``max_stimuli`` keeps the first N stimuli of a concept.
    """
    if case_variants not in ("keep", "merge"):
        raise ValueError(f"case_variants must be 'keep' or 'merge', got {case_variants!r}")
    index, folder = _resolve_layout(root, index_path, stimuli_dir)
    if folder is not None and not folder.is_dir():
        raise ConceptFormatError(f"stimuli folder {folder} does not exist")
    report = report if report is not None else Pace1MReport()
    names = read_concept_index(index)
    report.total_names = len(names)
    counts = Counter(names)
    report.repeats = {n: c for n, c in counts.items() if c > 1}
    by_fold: dict[str, list[str]] = {}
    for name in counts:  # first-seen order, repeats already merged
        by_fold.setdefault(name.casefold(), []).append(name)
    report.case_groups = [g for g in by_fold.values() if len(g) > 1]
    merge = case_variants == "merge"
    if merge:
        report.case_merged = {v: g[0] for g in report.case_groups for v in g[1:]}

    for name in counts:
        if merge and name in report.case_merged:
            continue  # emitted with its group's first spelling
        group = by_fold[name.casefold()] if merge else [name]
        stimuli: list[Stimulus] = []
        for variant in group:
            stimuli.extend(_read_stimuli(variant, folder, report))
        if max_stimuli is not None:
            stimuli = stimuli[:max_stimuli]
        if not stimuli and require_stimuli:
            report.skipped += 1
            continue
        try:
            record = ConceptRecord(name, tags=(TAG,)).with_stimuli(stimuli)
        except ConceptFormatError as exc:
            report.invalid.append((name, str(exc)))
            report.skipped += 1
            continue
        report.imported += 1
        yield record


def _read_stimuli(name: str, folder: Path | None, report: Pace1MReport) -> list[Stimulus]:
    if folder is None:
        return []
    try:
        _check_file_name(name, ".txt")
        # Cheap existence test first: the name is one plain path component here, and the
        # full resolve (symlinks) is only paid for files that exist.
        if not os.path.lexists(os.path.join(folder, f"{name}.txt")):
            report.missing.append(name)
            return []
        path = safe_child_path(folder, name)
    except UnsafePathError as exc:
        report.unsafe.append((name, str(exc)))
        return []
    if not path.is_file():
        report.missing.append(name)
        return []
    rel = f"concept/{path.name}"
    try:
        texts = parse_list_literal(_read_text(path, rel), what=rel)
    except (ConceptFormatError, OSError, UnicodeDecodeError) as exc:
        report.invalid.append((name, str(exc)))
        return []
    prov = {"dataset": "PaCE-1M", "file": rel}
    out = [Stimulus(t.strip(), "imported", prov) for t in texts if t.strip()]
    if not out:
        report.empty.append(name)
    return out


def import_pace1m(
    root: str | os.PathLike[str] | None = None,
    *,
    index_path: str | os.PathLike[str] | None = None,
    stimuli_dir: str | os.PathLike[str] | None = None,
    require_stimuli: bool = True,
    case_variants: Literal["keep", "merge"] = "keep",
    max_stimuli: int | None = None,
) -> Pace1MImport:
    """Import a whole PaCE-1M folder into memory; see ``iter_pace1m`` and the module doc."""
    report = Pace1MReport()
    records = list(
        iter_pace1m(
            root,
            index_path=index_path,
            stimuli_dir=stimuli_dir,
            require_stimuli=require_stimuli,
            case_variants=case_variants,
            max_stimuli=max_stimuli,
            report=report,
        )
    )
    return Pace1MImport(records, report)
