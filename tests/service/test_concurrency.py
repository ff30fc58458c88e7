"""Concurrent requests on a real server: unique rules hold and nothing 500s."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from helpers import auth


def test_parallel_writes_keep_numbering_and_uniqueness(live_service: tuple[str, str]) -> None:
    base_url, key = live_service
    with httpx.Client(base_url=base_url, headers=auth(key), timeout=60) as client:
        set_id = client.post("/v1/concept-sets", json={"name": "s"}).json()["id"]

        def new_draft(_: int) -> httpx.Response:
            return client.post(f"/v1/concept-sets/{set_id}/versions", json={"empty": True})

        def same_name(_: int) -> httpx.Response:
            return client.post("/v1/concepts", json={"name": "contested"})

        with ThreadPoolExecutor(max_workers=6) as pool:
            drafts = list(pool.map(new_draft, range(12)))
            names = list(pool.map(same_name, range(8)))
    assert [r.status_code for r in drafts] == [201] * 12
    assert sorted(r.json()["number"] for r in drafts) == list(range(1, 13))
    codes = sorted(r.status_code for r in names)
    assert codes == [201] + [409] * 7
    assert {r.json()["error"]["code"] for r in names if r.status_code == 409} == {"duplicate"}
