"""The nearest search's ASGI hot path (api/nearest_fast.py): what it answers itself, and
that everything it declines reaches the route with its body intact."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers import auth, error_of, post_binary_nearest
from vectors_support import seed_uploaded


def _setup(client: Any, app: Any, key: str) -> tuple[Any, np.ndarray[Any, Any]]:
    return seed_uploaded(client, app, key, 30)


@pytest.fixture
def route_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the searches the route's full path runs."""
    from pace_service.api.routes import search as route

    calls: list[int] = []
    full_path = route._search

    def counting(*args: Any) -> bytes:
        calls.append(1)
        return full_path(*args)

    monkeypatch.setattr(route, "_search", counting)
    return calls


def test_a_repeated_search_is_answered_before_the_routing(
    client: Any, app: Any, write_key: str, route_calls: list[int]
) -> None:
    s, vecs = _setup(client, app, write_key)
    where = {"model_id": s.model_id, "layer": 0, "k": 3}
    first = post_binary_nearest(client, write_key, vecs[4].astype("<f4").tobytes(), **where)
    assert first.status_code == 200 and route_calls == [1]  # key and hint not known yet
    for i in (4, 5, 6):
        r = post_binary_nearest(client, write_key, vecs[i].astype("<f4").tobytes(), **where)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        assert int(r.headers["content-length"]) == len(r.content)
        assert r.json()["results"][0]["concept_id"] == s.concept_ids[i]
        assert r.json()["exact"] is False
    j = client.post(
        "/v1/search/nearest", json={**where, "vector": vecs[7].tolist()}, headers=auth(write_key)
    )
    assert j.json()["results"][0]["concept_id"] == s.concept_ids[7]
    assert route_calls == [1]  # all four answered by the hot path
    assert (
        r.json()
        == post_binary_nearest(client, write_key, vecs[6].astype("<f4").tobytes(), **where).json()
    )


def test_declined_requests_reach_the_route_with_their_body(
    client: Any, app: Any, write_key: str, route_calls: list[int]
) -> None:
    s, vecs = _setup(client, app, write_key)
    where = {"model_id": s.model_id, "layer": 0, "k": 3}
    good = vecs[2].astype("<f4").tobytes()
    assert post_binary_nearest(client, write_key, good, **where).status_code == 200
    calls = len(route_calls)
    # cached key and hint, but a bad request: the route reports it, field and all
    bad = vecs[2].astype("<f4").copy()
    bad[9] = np.nan
    r = post_binary_nearest(client, write_key, bad.tobytes(), **where)
    assert (r.status_code, error_of(r)["code"], error_of(r)["field"]) == (
        422,
        "non_finite",
        "vector.9",
    )
    r = post_binary_nearest(client, write_key, good, **{**where, "k": 0})
    assert (r.status_code, error_of(r)["field"]) == (422, "k")
    # a filter is never guessed: the route answers it, from the same body
    r = post_binary_nearest(client, write_key, good, **where, concept_set_version_id=s.version_id)
    assert r.status_code == 200 and r.json()["results"][0]["concept_id"] == s.concept_ids[2]
    # no key, another scheme: the route's 401
    r = client.post(
        "/v1/search/nearest",
        params=where,
        content=good,
        headers={"Authorization": f"Basic {write_key}", "Content-Type": "application/octet-stream"},
    )
    assert (r.status_code, error_of(r)["code"]) == (401, "unauthenticated")
    # over the route's 1 MiB bound (streamed, no length declared): the route's 413
    chunks = (b"\0" * (256 << 10) for _ in range(5))
    r = client.post(
        "/v1/search/nearest",
        params=where,
        content=chunks,
        headers={**auth(write_key), "Content-Type": "application/octet-stream"},
    )
    assert (r.status_code, error_of(r)["code"]) == (413, "payload_too_large")
    assert len(route_calls) == calls + 4  # NaN, k = 0, the filter, the 401: the full path
