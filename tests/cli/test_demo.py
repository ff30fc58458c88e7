"""The main job, shortened: the real embedded service, SmolLM2, a slice of the starter pack.

Run twice: the second run must find every atom stored and the dictionary cached.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pace.models import model_cache_dir
from pace_cli.demo import DemoOptions, run_demo

pytestmark = pytest.mark.slow


@pytest.fixture
def demo_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    models = model_cache_dir()  # reuse the converted model: its cache is not under test here
    cache = tmp_path / "cache"
    cache.mkdir()
    models.mkdir(parents=True, exist_ok=True)
    (cache / "models").symlink_to(models, target_is_directory=True)
    monkeypatch.setenv("PACE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PACE_CACHE_DIR", str(cache))
    for var in ("PACE_URL", "PACE_API_KEY", "DATABASE_URL", "PACE_LLM_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    return cache


def test_demo_end_to_end_then_rerun_reuses_everything(demo_dirs: Path) -> None:
    options = DemoOptions(
        concept_limit=16,
        layers=(10, 14),
        prompts=("What do you really think of people who cut in line?",),
        max_new_tokens=6,
    )
    first = run_demo(options)
    assert first.extraction.concepts == 16 and first.extraction.skipped == 0
    assert first.n_concepts == 16
    assert 0 < first.n_undesirable < 16  # the starter partition labels both kinds
    [answer] = first.comparisons
    assert answer.vanilla and answer.steered
    blobs = sorted((demo_dirs / "dictionaries").rglob("*.safetensors"))
    assert [b.stem for b in blobs] == [first.dictionary_hash]
    mtime = blobs[0].stat().st_mtime_ns

    second = run_demo(options)
    assert second.extraction.concepts == 0 and second.extraction.skipped == 16
    assert second.dictionary_hash == first.dictionary_hash
    assert blobs[0].stat().st_mtime_ns == mtime  # served from the cache, not downloaded again
    # greedy decoding with the same dictionary: the same answers
    assert second.comparisons == first.comparisons
