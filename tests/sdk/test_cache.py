"""The on-disk dictionary cache: atomic writes, integrity checks, locking."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest
import torch

from pace.client import DictionaryCache, default_cache_dir
from pace.client._cache import check_blob, validate_hash
from pace.dictionary import ConceptDictionary
from pace.errors import IntegrityError


def make_dictionary_bytes(seed: int, n: int = 5, d: int = 16) -> tuple[str, bytes]:
    """A real pace.dictionary/1 file and its content hash (derived from the content)."""
    g = torch.Generator().manual_seed(seed)
    atoms = {3: torch.randn(n, d, generator=g), 7: torch.randn(n, d, generator=g)}
    h = hashlib.sha256(f"dict-{seed}-{n}-{d}".encode()).hexdigest()
    dictionary = ConceptDictionary(
        atoms=atoms,
        concept_names=[f"c{i}" for i in range(n)],
        concept_ids=torch.arange(n, dtype=torch.int64) + 100,
        labels=torch.tensor([1, 0] * (n // 2) + [-1] * (n % 2), dtype=torch.int8),
        metadata={"content_hash": h, "missing": []},
    )
    return h, dictionary.to_bytes()


def leftovers(cache: DictionaryCache) -> list[Path]:
    return sorted(cache.blobs.glob(".*.part")) if cache.blobs.exists() else []


def test_put_then_get_roundtrips_a_verified_blob(tmp_path: Path) -> None:
    cache = DictionaryCache(tmp_path)
    h, data = make_dictionary_bytes(1)
    assert cache.get(h) is None and h not in cache
    path = cache.put_bytes(h, data)
    assert path == tmp_path / "dictionaries" / "blobs" / f"{h}.safetensors"
    assert cache.get(h) == path and h in cache
    assert path.read_bytes() == data
    assert cache.hashes() == [h]
    loaded = ConceptDictionary.load(path)
    assert loaded.content_hash == h and list(loaded.concept_names) == [f"c{i}" for i in range(5)]
    assert leftovers(cache) == []


@pytest.mark.parametrize(
    "bad", ["", "abc", "../" + "a" * 61, "A" * 64, "g" * 64, "a" * 65, "a" * 63 + "/"]
)
def test_hashes_that_are_not_sha256_hex_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="content hash"):
        validate_hash(bad)
    with pytest.raises(ValueError):
        DictionaryCache(tmp_path).blob_path(bad)


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    cache = DictionaryCache(tmp_path)
    h, data = make_dictionary_bytes(2)
    with pytest.raises(ConnectionResetError), cache.writer(h) as f:
        f.write(data[: len(data) // 2])
        raise ConnectionResetError("simulated drop mid-download")
    assert cache.get(h) is None
    assert not cache.blob_path(h).exists()
    assert leftovers(cache) == []


def test_a_truncated_write_is_rejected_by_the_length_check(tmp_path: Path) -> None:
    cache = DictionaryCache(tmp_path)
    h, data = make_dictionary_bytes(3)
    with pytest.raises(IntegrityError, match="implies"):
        cache.put_bytes(h, data[:-10])
    assert not cache.blob_path(h).exists() and leftovers(cache) == []


def test_bytes_of_another_dictionary_are_rejected(tmp_path: Path) -> None:
    cache = DictionaryCache(tmp_path)
    h1, _ = make_dictionary_bytes(4)
    _, data2 = make_dictionary_bytes(5)
    with pytest.raises(IntegrityError, match="content hash"):
        cache.put_bytes(h1, data2)
    assert cache.get(h1) is None and leftovers(cache) == []


def test_a_corrupted_blob_is_detected_and_removed(tmp_path: Path) -> None:
    cache = DictionaryCache(tmp_path)
    h, data = make_dictionary_bytes(6)
    path = cache.put_bytes(h, data)
    with open(path, "r+b") as f:  # disk damage / an external truncation
        f.truncate(len(data) - 1)
    with pytest.raises(IntegrityError):
        check_blob(path, h)
    assert cache.get(h) is None
    assert not path.exists()


def test_garbage_in_the_blob_slot_is_removed(tmp_path: Path) -> None:
    cache = DictionaryCache(tmp_path)
    h, _ = make_dictionary_bytes(7)
    cache.blobs.mkdir(parents=True)
    cache.blob_path(h).write_bytes(b"\xff" * 40)
    assert cache.get(h) is None
    assert not cache.blob_path(h).exists()


def test_concurrent_writers_of_one_hash_leave_one_good_blob(tmp_path: Path) -> None:
    cache = DictionaryCache(tmp_path)
    h, data = make_dictionary_bytes(8, n=64, d=256)
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def write() -> None:
        try:
            start.wait()
            with cache.writer(h) as f:
                for i in range(0, len(data), 4096):  # interleave with the other writers
                    f.write(data[i : i + 4096])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert cache.blob_path(h).read_bytes() == data
    assert leftovers(cache) == []


def test_the_lock_admits_one_holder_at_a_time(tmp_path: Path) -> None:
    cache = DictionaryCache(tmp_path)
    h, _ = make_dictionary_bytes(9)
    inside = 0
    peak = 0
    guard = threading.Lock()

    def hold() -> None:
        nonlocal inside, peak
        with cache.lock(h):
            with guard:
                inside += 1
                peak = max(peak, inside)
            time.sleep(0.02)
            with guard:
                inside -= 1

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 1


def test_default_cache_dir_honours_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACE_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert DictionaryCache().blobs == tmp_path / "c" / "dictionaries" / "blobs"
    monkeypatch.delenv("PACE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "pace"
