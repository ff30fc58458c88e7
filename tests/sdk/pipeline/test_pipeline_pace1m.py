"""PaCE-1M import on the real 40,000-name index, plus hostile names and files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pace.pipeline.errors import ConceptFormatError, UnsafePathError
from pace.pipeline.pace1m import import_pace1m, read_concept_index, safe_child_path

REAL_INDEX = Path(__file__).resolve().parents[3].parent / "shared/data/pace1m_concept_index.txt"
if not REAL_INDEX.exists():  # the shared checkout sits next to the repository
    REAL_INDEX = Path("/work/shared/data/pace1m_concept_index.txt")

MALICIOUS = [
    "../../etc/passwd",
    "/etc/passwd",
    "..",
    ".",
    "a/b",
    "back\\slash",
    "nul\x00byte",
    "zz-symlink-escape",  # a symlink pointing outside the folder
    "",
]


def write_list(path: Path, items: list[str]) -> None:
    path.write_text(repr(items), encoding="utf-8")


@pytest.fixture
def real_layout(tmp_path: Path) -> tuple[Path, list[str]]:
    """The real index plus malicious names; stimuli files for a sample of real names."""
    names = read_concept_index(REAL_INDEX)
    root = tmp_path / "pace1m"
    (root / "concept").mkdir(parents=True)
    write_list(root / "concept_index.txt", names + MALICIOUS)
    sample = ["said", "Said", "time", "P.M.", "p.m.", "2:30-:34.3", ".30-mbf", names[-1]]
    for name in sample:
        write_list(root / "concept" / f"{name}.txt", [f"You see {name}.", f"{name} again."])
    # a file outside the folder that traversal would reach, and a symlink pointing at it
    (tmp_path / "secret.txt").write_text(repr(["TOP SECRET"]))
    os.symlink(tmp_path / "secret.txt", root / "concept" / "zz-symlink-escape.txt")
    return root, sample


def test_real_index_names_only(real_layout: tuple[Path, list[str]]) -> None:
    root, _ = real_layout
    result = import_pace1m(index_path=root / "concept_index.txt", require_stimuli=False)
    rep = result.report
    assert rep.total_names == 40_000 + len(MALICIOUS)
    # exactly the index's repeats are merged
    assert sum(rep.repeats.values()) - len(rep.repeats) == 1376
    names = [r.name for r in result.records]
    assert len(names) == len(set(names))
    assert len(rep.case_groups) == 4074 and sum(map(len, rep.case_groups)) == 8150
    assert {"said", "Said", "P.M.", "p.m.", "P.m.", "2:30-:34.3", ".30-mbf"} <= set(names)
    # names that are not valid concept names at all are reported, not imported
    assert {n for n, _ in rep.invalid} == {"nul\x00byte", ""}
    assert "../../etc/passwd" in names  # a valid (odd) name; it just never becomes a path
    assert all(not r.stimuli for r in result.records)


def test_real_index_with_stimuli_sample(real_layout: tuple[Path, list[str]]) -> None:
    root, sample = real_layout
    result = import_pace1m(root)
    rep = result.report
    assert sorted(r.name for r in result.records) == sorted(sample)
    pm = next(r for r in result.records if r.name == "P.M.")
    assert pm.texts == ["You see P.M..", "P.M. again."]
    assert pm.stimuli[0].provenance == {"dataset": "PaCE-1M", "file": "concept/P.M..txt"}
    unsafe = {n for n, _ in rep.unsafe}
    assert {
        "../../etc/passwd",
        "/etc/passwd",
        "..",
        ".",
        "a/b",
        "back\\slash",
        "zz-symlink-escape",
    } <= unsafe
    assert "nul\x00byte" in unsafe
    assert all("TOP SECRET" not in t for r in result.records for t in r.texts)
    assert rep.imported == len(sample) and rep.skipped == 40_000 - 1376 - len(sample) + 9
    assert len(rep.missing) == 40_000 - 1376 - len(sample)
    assert "imported" in rep.summary()


def test_case_variants_can_be_merged(tmp_path: Path) -> None:
    (tmp_path / "concept").mkdir()
    write_list(tmp_path / "concept_index.txt", ["Will", "will", "WILL", "will", "other"])
    write_list(tmp_path / "concept" / "Will.txt", ["You Will go.", "shared"])
    write_list(tmp_path / "concept" / "will.txt", ["You will go.", "Shared"])
    result = import_pace1m(tmp_path, case_variants="merge")
    assert [r.name for r in result.records] == ["Will"]
    # stimuli unioned, "Shared" being a duplicate of "shared" up to case
    assert result.records[0].texts == ["You Will go.", "shared"]
    assert result.report.case_merged == {"will": "Will", "WILL": "Will"}
    assert result.report.repeats == {"will": 2}
    assert set(result.report.missing) == {"WILL", "other"}


def test_malformed_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "concept").mkdir()
    write_list(tmp_path / "concept_index.txt", ["a", "b", "c", "d"])
    (tmp_path / "concept" / "a.txt").write_text("__import__('os').system('echo pwned')")
    (tmp_path / "concept" / "b.txt").write_text("['ok', 3]")
    (tmp_path / "concept" / "c.txt").write_text("['  ', '']")
    write_list(tmp_path / "concept" / "d.txt", ["fine"])
    result = import_pace1m(tmp_path)
    assert [r.name for r in result.records] == ["d"]
    reasons = dict(result.report.invalid)
    assert "not a Python list literal" in reasons["a"]
    assert "b.txt[1] is a int" in reasons["b"]
    assert result.report.empty == ["c"]


def test_bad_index() -> None:
    with pytest.raises(ConceptFormatError, match="not a list"):
        import_pace1m(index_path=_tmp_file("{'a': 1}"), require_stimuli=False)
    with pytest.raises(ValueError, match="root"):
        import_pace1m()


def _tmp_file(text: str) -> Path:
    import tempfile

    d = Path(tempfile.mkdtemp())
    (d / "concept_index.txt").write_text(text)
    return d / "concept_index.txt"


def test_safe_child_path(tmp_path: Path) -> None:
    assert safe_child_path(tmp_path, ".hidden") == tmp_path.resolve() / ".hidden.txt"
    assert safe_child_path(tmp_path, "a:b").name == "a:b.txt"
    for bad in ["../x", "..", "/abs", "a/../../b", "x\x00", "x" * 300]:
        with pytest.raises(UnsafePathError):
            safe_child_path(tmp_path, bad)
    shutil.rmtree(tmp_path)
