"""The nearest search's candidate pool: the ``search_pool`` setting (``PACE_SEARCH_POOL``)
decides how many Hamming candidates are re-ranked, on the route and on the hot path."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import auth, post_binary_nearest
from pydantic import ValidationError
from vectors_support import seed, upload_body

DIM = 2048  # from 2,048 dimensions on the pool is not widened: max(search_pool, 4 k)


def _atoms() -> np.ndarray[Any, Any]:
    """Four decoys whose codes equal the query's (all positive) but whose cosine is ~0.03,
    then the true nearest atom, whose code differs from the query's in 600 bits."""
    decoys = np.full((4, DIM), 0.01, np.float32)
    for i in range(4):
        decoys[i, i] = 100.0
    target = np.ones((1, DIM), np.float32)
    target[0, 1000:1600] = -0.01
    return np.concatenate([decoys, target])


def _top(client: Any, key: str, s: Any, *, binary: bool) -> tuple[int, bool]:
    q = np.ones(DIM, np.float32)
    where = {"model_id": s.model_id, "layer": 0, "k": 1}
    if binary:
        r = post_binary_nearest(client, key, q.tobytes(), **where)
    else:
        r = client.post(
            "/v1/search/nearest", json={**where, "vector": q.tolist()}, headers=auth(key)
        )
    assert r.status_code == 200, r.text
    return int(r.json()["results"][0]["concept_id"]), bool(r.json()["exact"])


def test_the_pool_setting_decides_which_candidates_are_reranked(
    client: Any, app: Any, settings: Any, write_key: str
) -> None:
    s = seed(app, n_concepts=5, hidden_size=DIM, num_layers=1)
    r = client.post(
        f"/v1/models/{s.model_id}/vectors?recipe_id={s.recipe_id}",
        content=upload_body(_atoms(), s.concept_ids, 0),
        headers=auth(write_key),
    )
    assert r.status_code == 200, r.text
    target, decoys = s.concept_ids[4], set(s.concept_ids[:4])
    # the default pool (48) holds all five atoms: the exact re-rank finds the target,
    # through the route first, then on the hot path (binary and JSON bodies)
    for binary in (False, True, False):
        assert _top(client, write_key, s, binary=binary) == (target, False)
    # a pool of 4 (the least at k = 1) holds only the decoys; the setting is read per
    # request, on both paths
    settings.search_pool = 1
    for binary in (True, False, True):
        top, exact = _top(client, write_key, s, binary=binary)
        assert top in decoys and exact is False
    settings.search_pool = 64
    assert _top(client, write_key, s, binary=True) == (target, False)


def test_the_pool_setting_is_read_from_the_environment_and_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pace_service.core.config import DEFAULT_SEARCH_POOL, Settings
    from pace_service.store.search import MIN_POOL, pool_size

    assert Settings().search_pool == DEFAULT_SEARCH_POOL == MIN_POOL
    assert pool_size(10, 4096) == 48 and pool_size(10, 4096, 64) == 64
    assert pool_size(20, 4096, 48) == 80  # 4 k when larger
    monkeypatch.setenv("PACE_SEARCH_POOL", "64")
    assert Settings().search_pool == 64
    for bad in ("0", "1001", "many"):
        monkeypatch.setenv("PACE_SEARCH_POOL", bad)
        with pytest.raises(ValidationError) as info:
            Settings()
        assert info.value.errors()[0]["loc"] == ("search_pool",)
