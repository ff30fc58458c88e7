"""Concurrent requests on a real server: unique rules hold and nothing 500s."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from helpers import auth, error_of


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


def _add_own_concept(
    client: httpx.Client, version_id: int, concept_id: int, stats: dict[str, int]
) -> None:
    """Read-modify-write with If-Match until it lands (412 means: read again)."""
    while True:
        read = client.get(f"/v1/concept-set-versions/{version_id}")
        assert read.status_code == 200, read.text
        etag = read.headers["ETag"]
        assert etag == f'"{read.json()["revision"]}"'
        members = read.json()["concept_ids"]
        wanted = sorted({*members, concept_id}) if concept_id not in members else members
        response = client.post(
            f"/v1/concept-set-versions/{version_id}/concepts",
            json={"concept_ids": wanted},
            headers={"If-Match": etag},
        )
        if response.status_code == 412:
            assert error_of(response)["code"] == "precondition_failed"
            stats["412"] += 1
            continue
        assert response.status_code == 200, response.text
        assert concept_id in response.json()["concept_ids"]
        stats["ok"] += 1
        return


def test_twenty_if_match_editors_lose_no_update(live_service: tuple[str, str]) -> None:
    base_url, key = live_service
    n = 20
    stats = {"ok": 0, "412": 0}
    with httpx.Client(base_url=base_url, headers=auth(key), timeout=60) as client:
        set_id = client.post("/v1/concept-sets", json={"name": "contended"}).json()["id"]
        version = client.post(f"/v1/concept-sets/{set_id}/versions", json={"empty": True}).json()
        ids = [client.post("/v1/concepts", json={"name": f"c{i}"}).json()["id"] for i in range(n)]

        def edit(i: int) -> None:
            # one client per thread: 20 separate connections, as 20 users would have
            with httpx.Client(base_url=base_url, headers=auth(key), timeout=60) as own:
                _add_own_concept(own, version["id"], ids[i], stats)

        with ThreadPoolExecutor(max_workers=n) as pool:
            list(pool.map(edit, range(n)))
        final = client.get(f"/v1/concept-set-versions/{version['id']}")
    print(f"\n{n} If-Match editors: {stats['ok']} updates landed, {stats['412']} got 412")
    assert stats["ok"] == n
    assert final.json()["concept_ids"] == sorted(ids)  # no lost update
    # each landed edit bumped the revision once; a 412 changed nothing
    assert final.json()["revision"] == version["revision"] + n
    assert final.headers["ETag"] == f'"{version["revision"] + n}"'


def test_stale_if_match_is_412_and_changes_nothing(live_service: tuple[str, str]) -> None:
    base_url, key = live_service
    with httpx.Client(base_url=base_url, headers=auth(key), timeout=60) as client:
        a, b = (client.post("/v1/concepts", json={"name": n}).json()["id"] for n in ("a", "b"))
        set_id = client.post("/v1/concept-sets", json={"name": "s"}).json()["id"]
        draft = client.post(f"/v1/concept-sets/{set_id}/versions", json={"empty": True})
        vid, stale = draft.json()["id"], draft.headers["ETag"]
        fresh = client.post(f"/v1/concept-set-versions/{vid}/concepts", json={"concept_ids": [a]})
        assert fresh.headers["ETag"] != stale
        before = client.get(f"/v1/concept-set-versions/{vid}").json()
        for method, path, body in [
            ("POST", f"/v1/concept-set-versions/{vid}/concepts", {"concept_ids": [b]}),
            ("DELETE", f"/v1/concept-set-versions/{vid}/concepts", {"concept_ids": [a]}),
            ("POST", f"/v1/concept-set-versions/{vid}/concepts:remove", {"concept_ids": [a]}),
            ("POST", f"/v1/concept-set-versions/{vid}/publish", None),
            ("DELETE", f"/v1/concept-set-versions/{vid}", None),
        ]:
            response = client.request(method, path, json=body, headers={"If-Match": stale})
            assert response.status_code == 412, (method, path, response.text)
            error = error_of(response)
            assert (error["code"], error["field"]) == ("precondition_failed", "If-Match")
        assert client.get(f"/v1/concept-set-versions/{vid}").json() == before
        # the current ETag (or '*', or a list holding it) passes
        ok = client.post(
            f"/v1/concept-set-versions/{vid}/concepts",
            json={"concept_ids": [b]},
            headers={"If-Match": f'"999", {fresh.headers["ETag"]}'},
        )
        assert ok.status_code == 200 and ok.json()["concept_ids"] == sorted([a, b])
        star = client.post(
            f"/v1/concept-set-versions/{vid}/concepts:remove",
            json={"concept_ids": [b]},
            headers={"If-Match": "*"},
        )
        assert star.status_code == 200 and star.json()["concept_ids"] == [a]


def test_if_match_on_concept_set_and_task_patch(live_service: tuple[str, str]) -> None:
    base_url, key = live_service
    with httpx.Client(base_url=base_url, headers=auth(key), timeout=60) as client:
        concept = client.post("/v1/concepts", json={"name": "x"})
        set_ = client.post("/v1/concept-sets", json={"name": "s"})
        task = client.post("/v1/tasks", json={"name": "t", "description": "d"})
        for created, path in [
            (concept, f"/v1/concepts/{concept.json()['id']}"),
            (set_, f"/v1/concept-sets/{set_.json()['id']}"),
            (task, f"/v1/tasks/{task.json()['id']}"),
        ]:
            etag = client.get(path).headers["ETag"]
            assert etag == created.headers["ETag"] == f'"{created.json()["revision"]}"'
            first = client.patch(path, json={"description": "first"}, headers={"If-Match": etag})
            assert first.status_code == 200, first.text
            assert first.json()["revision"] == created.json()["revision"] + 1
            assert first.headers["ETag"] != etag
            lost = client.patch(path, json={"description": "lost"}, headers={"If-Match": etag})
            assert lost.status_code == 412, lost.text
            assert error_of(lost)["code"] == "precondition_failed"
            weak = client.patch(
                path,
                json={"description": "weak"},
                headers={"If-Match": f"W/{first.headers['ETag']}"},
            )
            assert weak.status_code == 412  # If-Match compares strongly
            bad = client.patch(path, json={"description": "bad"}, headers={"If-Match": "abc"})
            assert bad.status_code == 422 and error_of(bad)["field"] == "If-Match"
            now = client.get(path)
            assert now.json()["description"] == "first"
            assert now.headers["ETag"] == first.headers["ETag"]
            # without If-Match the write is unconditional (and still bumps the revision)
            blind = client.patch(path, json={"description": "blind"})
            assert blind.status_code == 200
            assert blind.json()["revision"] == first.json()["revision"] + 1


def test_twenty_concurrent_publishes_make_one_published_version(
    live_service: tuple[str, str],
) -> None:
    base_url, key = live_service
    n = 20
    with httpx.Client(base_url=base_url, headers=auth(key), timeout=60) as client:
        ids = [client.post("/v1/concepts", json={"name": f"p{i}"}).json()["id"] for i in range(3)]
        set_id = client.post("/v1/concept-sets", json={"name": "pub"}).json()["id"]
        draft = client.post(f"/v1/concept-sets/{set_id}/versions", json={"empty": True}).json()
        client.post(f"/v1/concept-set-versions/{draft['id']}/concepts", json={"concept_ids": ids})

        def publish(_: int) -> httpx.Response:
            with httpx.Client(base_url=base_url, headers=auth(key), timeout=60) as own:
                return own.post(f"/v1/concept-set-versions/{draft['id']}/publish")

        with ThreadPoolExecutor(max_workers=n) as pool:
            results = list(pool.map(publish, range(n)))
        versions = client.get(f"/v1/concept-sets/{set_id}/versions").json()["items"]
    codes = sorted(r.status_code for r in results)
    print(f"\n{n} concurrent publishes: {codes.count(200)} x 200, {codes.count(409)} x 409")
    assert codes == [200] + [409] * (n - 1)
    assert {error_of(r)["code"] for r in results if r.status_code == 409} == {"immutable"}
    assert [(v["number"], v["status"]) for v in versions] == [(1, "published")]
    winner = next(r for r in results if r.status_code == 200).json()
    assert winner["number"] == 1 and winner["concept_ids"] == sorted(ids)


def test_an_edit_queued_behind_a_delete_is_404_not_500(app: Any, admin_key: str) -> None:
    """The edit passed its existence check, then waited for the row lock of a delete."""
    from pace_service.errors import NotFound
    from pace_service.models import Concept, ConceptSet, ConceptSetVersion
    from pace_service.store import versions
    from pace_service.store.keys import get_or_create_namespace
    from pace_service.store.revisions import claim

    factory = app.state.session_factory
    with factory() as s:
        ns, _ = get_or_create_namespace(s, "team-a")
        concept = Concept(namespace_id=ns.id, name="doomed", description="", tags=[])
        cset = ConceptSet(namespace_id=ns.id, name="s", description="", public=False)
        s.add_all([concept, cset])
        s.flush()
        draft = ConceptSetVersion(set_id=cset.id, number=1, status="draft")
        s.add(draft)
        s.commit()
        ns_id, concept_id, draft_id = ns.id, concept.id, draft.id

    # a row read, then deleted by another transaction before the edit locks it
    with factory() as editor:
        row = editor.get(Concept, concept_id)
        assert row is not None
        with factory() as deleter:
            deleter.delete(deleter.get(Concept, concept_id))
            deleter.commit()
        with pytest.raises(NotFound):
            claim(editor, row, None, f"concept {concept_id}")

    # an edit of a draft that waits on the lock of a delete about to commit
    outcome: list[BaseException | None] = []
    with factory() as deleter:
        deleter.delete(deleter.get(ConceptSetVersion, draft_id))
        deleter.flush()  # holds the row lock until commit

        def edit() -> None:
            with factory() as editor:
                try:
                    versions.add_members(editor, ns_id, draft_id, [])
                    outcome.append(None)
                except BaseException as exc:
                    outcome.append(exc)

        thread = threading.Thread(target=edit)
        thread.start()
        deadline = time.monotonic() + 20
        while not _waiting_on_lock(deleter) and time.monotonic() < deadline:
            time.sleep(0.02)
        deleter.commit()
    thread.join(20)
    assert len(outcome) == 1 and isinstance(outcome[0], NotFound), outcome


def _waiting_on_lock(session: Any) -> bool:
    from sqlalchemy import text

    waiting = session.execute(
        text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        )
    ).scalar_one()
    return bool(waiting)


def test_twenty_writers_without_if_match_and_on_a_concept(live_service: tuple[str, str]) -> None:
    """Blind member adds are atomic (none lost); concept tags by If-Match RMW lose none."""
    base_url, key = live_service
    n = 20
    retries = {"412": 0}
    with httpx.Client(base_url=base_url, headers=auth(key), timeout=60) as client:
        set_id = client.post("/v1/concept-sets", json={"name": "blind"}).json()["id"]
        vid = client.post(f"/v1/concept-sets/{set_id}/versions", json={"empty": True}).json()["id"]
        ids = [client.post("/v1/concepts", json={"name": f"b{i}"}).json()["id"] for i in range(n)]
        target = ids[0]

        def work(i: int) -> None:
            with httpx.Client(base_url=base_url, headers=auth(key), timeout=60) as own:
                added = own.post(
                    f"/v1/concept-set-versions/{vid}/concepts", json={"concept_ids": [ids[i]]}
                )
                assert added.status_code == 200, added.text
                while True:  # append tag t<i> to one shared concept
                    read = own.get(f"/v1/concepts/{target}")
                    tags = [*read.json()["tags"], f"t{i}"]
                    patched = own.patch(
                        f"/v1/concepts/{target}",
                        json={"tags": tags},
                        headers={"If-Match": read.headers["ETag"]},
                    )
                    if patched.status_code != 412:
                        assert patched.status_code == 200, patched.text
                        return
                    retries["412"] += 1

        with ThreadPoolExecutor(max_workers=n) as pool:
            list(pool.map(work, range(n)))
        members = client.get(f"/v1/concept-set-versions/{vid}").json()["concept_ids"]
        concept = client.get(f"/v1/concepts/{target}").json()
    print(f"\n{n} tag appenders on one concept: {retries['412']} x 412 on the way")
    assert members == sorted(ids)
    assert sorted(concept["tags"]) == sorted(f"t{i}" for i in range(n))
    assert concept["revision"] == 1 + n
