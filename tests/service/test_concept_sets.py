"""Concept sets and versions: drafts, publish immutability, diff, fork, lineage, access."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import auth, error_of
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError


def _concept(client: Any, key: str, name: str, stimuli: list[str]) -> int:
    body = {"name": name, "stimuli": [{"text": t} for t in stimuli]}
    response = client.post("/v1/concepts", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    concept_id: int = response.json()["id"]
    return concept_id


def _set(client: Any, key: str, name: str = "harms", public: bool = False) -> dict[str, Any]:
    response = client.post(
        "/v1/concept-sets", json={"name": name, "public": public}, headers=auth(key)
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def _draft(client: Any, key: str, set_id: int, **body: Any) -> dict[str, Any]:
    response = client.post(f"/v1/concept-sets/{set_id}/versions", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def _add(client: Any, key: str, vid: int, ids: list[int]) -> Any:
    return client.post(
        f"/v1/concept-set-versions/{vid}/concepts", json={"concept_ids": ids}, headers=auth(key)
    )


@pytest.fixture
def published(client: Any, write_key: str) -> dict[str, Any]:
    """A set with a published version 1 holding concepts a and b."""
    a = _concept(client, write_key, "a", ["a1", "a2"])
    b = _concept(client, write_key, "b", ["b1"])
    s = _set(client, write_key)
    v1 = _draft(client, write_key, s["id"])
    assert v1["number"] == 1 and v1["status"] == "draft" and v1["concept_ids"] == []
    assert _add(client, write_key, v1["id"], [b, a, a]).json()["concept_ids"] == sorted([a, b])
    response = client.post(f"/v1/concept-set-versions/{v1['id']}/publish", headers=auth(write_key))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "published" and response.json()["published_at"]
    return {"set": s, "v1": response.json(), "a": a, "b": b}


def test_published_version_is_immutable_for_everyone(
    client: Any, write_key: str, admin_key: str, published: dict[str, Any], app: Any
) -> None:
    vid = published["v1"]["id"]
    c = _concept(client, write_key, "c", ["c1"])
    for key in (write_key, admin_key):
        attempts = [
            _add(client, key, vid, [c]),
            client.request(
                "DELETE",
                f"/v1/concept-set-versions/{vid}/concepts",
                json={"concept_ids": [published["a"]]},
                headers=auth(key),
            ),
            client.post(f"/v1/concept-set-versions/{vid}/publish", headers=auth(key)),
            client.delete(f"/v1/concept-set-versions/{vid}", headers=auth(key)),
            client.delete(f"/v1/concepts/{published['a']}", headers=auth(key)),
            client.delete(f"/v1/concept-sets/{published['set']['id']}", headers=auth(key)),
        ]
        for response in attempts:
            assert response.status_code == 409, response.request.url
            assert error_of(response)["code"] == "immutable"
    after = client.get(f"/v1/concept-set-versions/{vid}", headers=auth(write_key)).json()
    assert after["concept_ids"] == published["v1"]["concept_ids"]
    # direct SQL is refused too (the triggers), e.g. an admin with psql
    with app.state.engine.connect() as conn:
        for statement in (
            f"DELETE FROM version_concepts WHERE version_id = {vid}",
            f"UPDATE concept_set_versions SET status = 'draft', published_at = NULL "
            f"WHERE id = {vid}",
            f"DELETE FROM concepts WHERE id = {published['a']}",
        ):
            with pytest.raises(DBAPIError, match="immutable"):
                conn.execute(text(statement))
            conn.rollback()


def test_published_snapshot_keeps_stimuli_while_drafts_follow_edits(
    client: Any, write_key: str, published: dict[str, Any]
) -> None:
    a = published["a"]
    concept = client.get(f"/v1/concepts/{a}", headers=auth(write_key)).json()
    a1 = next(s["id"] for s in concept["stimuli"] if s["text"] == "a1")
    client.patch(
        f"/v1/concepts/{a}",
        json={"retire_stimuli": [a1], "add_stimuli": [{"text": "a3"}]},
        headers=auth(write_key),
    )
    v2 = _draft(client, write_key, published["set"]["id"])
    assert v2["number"] == 2 and v2["parent_version_id"] == published["v1"]["id"]
    assert v2["concept_ids"] == published["v1"]["concept_ids"]
    diff = client.get(
        f"/v1/concept-set-versions/{published['v1']['id']}/diff/{v2['id']}",
        headers=auth(write_key),
    ).json()
    assert diff["added"] == [] and diff["removed"] == []
    assert diff["stimuli_changed"] == [
        {"concept_id": a, "name": "a", "added": ["a3"], "removed": ["a1"]}
    ]


def test_diff_reports_added_and_removed(
    client: Any, write_key: str, published: dict[str, Any]
) -> None:
    c = _concept(client, write_key, "c", ["c1"])
    v2 = _draft(client, write_key, published["set"]["id"])
    _add(client, write_key, v2["id"], [c])
    removed = client.request(
        "DELETE",
        f"/v1/concept-set-versions/{v2['id']}/concepts",
        json={"concept_ids": [published["b"]]},
        headers=auth(write_key),
    )
    assert removed.status_code == 200
    assert removed.json()["concept_ids"] == sorted([published["a"], c])
    diff = client.get(
        f"/v1/concept-set-versions/{published['v1']['id']}/diff/{v2['id']}",
        headers=auth(write_key),
    ).json()
    assert diff["added"] == [{"id": c, "name": "c"}]
    assert diff["removed"] == [{"id": published["b"], "name": "b"}]
    assert diff["stimuli_changed"] == []
    reverse = client.get(
        f"/v1/concept-set-versions/{v2['id']}/diff/{published['v1']['id']}",
        headers=auth(write_key),
    ).json()
    assert reverse["added"] == diff["removed"] and reverse["removed"] == diff["added"]


def test_draft_options_and_deletes(client: Any, write_key: str, published: dict[str, Any]) -> None:
    set_id = published["set"]["id"]
    empty = _draft(client, write_key, set_id, empty=True)
    assert empty["concept_ids"] == [] and empty["number"] == 2
    from_v1 = _draft(client, write_key, set_id, from_version=1)
    assert from_v1["parent_version_id"] == published["v1"]["id"]
    assert len(from_v1["concept_ids"]) == 2
    missing = client.post(
        f"/v1/concept-sets/{set_id}/versions", json={"from_version": 9}, headers=auth(write_key)
    )
    assert missing.status_code == 404 and error_of(missing)["field"] == "from_version"
    assert (
        client.delete(
            f"/v1/concept-set-versions/{empty['id']}", headers=auth(write_key)
        ).status_code
        == 204
    )
    listed = client.get(f"/v1/concept-sets/{set_id}/versions", headers=auth(write_key)).json()
    assert [v["number"] for v in listed["items"]] == [1, 3] and listed["total"] == 2
    unknown = _add(client, write_key, from_v1["id"], [999999])
    assert unknown.status_code == 404 and error_of(unknown)["field"] == "concept_ids"


def test_set_crud_and_duplicates(client: Any, write_key: str, read_key: str) -> None:
    s = _set(client, write_key, "one")
    dup = client.post("/v1/concept-sets", json={"name": "one"}, headers=auth(write_key))
    assert dup.status_code == 409 and error_of(dup)["field"] == "name"
    patched = client.patch(
        f"/v1/concept-sets/{s['id']}",
        json={"description": "new", "public": True},
        headers=auth(write_key),
    ).json()
    assert patched["description"] == "new" and patched["public"] is True
    forbidden = client.patch(
        f"/v1/concept-sets/{s['id']}", json={"description": "x"}, headers=auth(read_key)
    )
    assert forbidden.status_code == 403
    assert client.get("/v1/concept-sets?name=one", headers=auth(read_key)).json()["total"] == 1
    assert client.delete(f"/v1/concept-sets/{s['id']}", headers=auth(write_key)).status_code == 204
    assert client.get(f"/v1/concept-sets/{s['id']}", headers=auth(read_key)).status_code == 404


def test_private_set_of_other_namespace_is_404_everywhere(
    client: Any, write_key: str, make_key: Any, published: dict[str, Any]
) -> None:
    other = make_key("team-b", "admin")
    set_id, vid = published["set"]["id"], published["v1"]["id"]
    requests = [
        ("get", f"/v1/concept-sets/{set_id}", None),
        ("get", f"/v1/concept-sets/{set_id}/versions", None),
        ("get", f"/v1/concept-set-versions/{vid}", None),
        ("get", f"/v1/concept-set-versions/{vid}/diff/{vid}", None),
        ("get", f"/v1/concept-set-versions/{vid}/lineage", None),
        ("post", f"/v1/concept-sets/{set_id}/fork", {"name": "mine"}),
        ("post", f"/v1/concept-sets/{set_id}/versions", {}),
        ("patch", f"/v1/concept-sets/{set_id}", {"public": True}),
        ("post", f"/v1/concept-set-versions/{vid}/concepts", {"concept_ids": [1]}),
        ("get", f"/v1/concepts/{published['a']}", None),
    ]
    for method, url, body in requests:
        kwargs = {"json": body} if body is not None else {}
        response = client.request(method.upper(), url, headers=auth(other), **kwargs)
        assert response.status_code == 404, (method, url, response.text)
        assert error_of(response)["code"] == "not_found"
    assert client.get("/v1/concept-sets", headers=auth(other)).json()["total"] == 0


def test_fork_public_set_across_namespaces_keeps_lineage(
    client: Any, write_key: str, make_key: Any, published: dict[str, Any]
) -> None:
    set_id = published["set"]["id"]
    client.patch(f"/v1/concept-sets/{set_id}", json={"public": True}, headers=auth(write_key))
    other = make_key("team-b", "write")
    # readable, but not writable, by the other namespace
    listed = client.get("/v1/concept-sets?public=true", headers=auth(other)).json()
    assert [s["id"] for s in listed["items"]] == [set_id]
    assert client.get(f"/v1/concepts/{published['a']}", headers=auth(other)).status_code == 200
    write = client.post(f"/v1/concept-sets/{set_id}/versions", json={}, headers=auth(other))
    assert write.status_code == 403 and error_of(write)["code"] == "forbidden"

    fork = client.post(
        f"/v1/concept-sets/{set_id}/fork", json={"name": "our-harms"}, headers=auth(other)
    )
    assert fork.status_code == 201, fork.text
    fork_body = fork.json()
    assert fork_body["namespace"] == "team-b" and fork_body["forked_from_set_id"] == set_id
    assert fork_body["public"] is False
    (v1,) = fork_body["versions"]
    assert v1["parent_version_id"] == published["v1"]["id"] and v1["status"] == "draft"
    fork_version = client.get(f"/v1/concept-set-versions/{v1['id']}", headers=auth(other)).json()
    assert fork_version["concept_ids"] == published["v1"]["concept_ids"]
    # the fork evolves independently: own concept added, source untouched
    mine = _concept(client, other, "mine", ["m1"])
    assert _add(client, other, v1["id"], [mine]).status_code == 200
    source = client.get(
        f"/v1/concept-set-versions/{published['v1']['id']}", headers=auth(write_key)
    ).json()
    assert mine not in source["concept_ids"]
    lineage = client.get(f"/v1/concept-set-versions/{v1['id']}/lineage", headers=auth(other))
    assert lineage.json() == [
        {
            "version_id": published["v1"]["id"],
            "set_id": set_id,
            "set_name": "harms",
            "namespace": "team-a",
            "number": 1,
            "status": "published",
        }
    ]
    # a private fork is invisible to its source's namespace
    assert (
        client.get(f"/v1/concept-sets/{fork_body['id']}", headers=auth(write_key)).status_code
        == 404
    )
    dup = client.post(
        f"/v1/concept-sets/{set_id}/fork", json={"name": "our-harms"}, headers=auth(other)
    )
    assert dup.status_code == 409 and error_of(dup)["code"] == "duplicate"


def test_cannot_add_private_concepts_of_another_namespace(
    client: Any, write_key: str, make_key: Any
) -> None:
    secret = _concept(client, write_key, "secret", ["s"])
    other = make_key("team-b", "write")
    s = _set(client, other, "theirs")
    v = _draft(client, other, s["id"])
    response = _add(client, other, v["id"], [secret])
    assert response.status_code == 404 and error_of(response)["field"] == "concept_ids"


def test_published_member_keeps_its_name_but_metadata_is_editable(
    client: Any, write_key: str, published: dict[str, Any]
) -> None:
    url = f"/v1/concepts/{published['a']}"
    rename = client.patch(url, json={"name": "renamed"}, headers=auth(write_key))
    assert rename.status_code == 409
    assert error_of(rename)["code"] == "immutable" and error_of(rename)["field"] == "name"
    retag = client.patch(url, json={"tags": ["t"], "description": "d"}, headers=auth(write_key))
    assert retag.status_code == 200 and retag.json()["tags"] == ["t"]
    draft_only = _concept(client, write_key, "draft-only", [])
    s = _set(client, write_key, "drafts")
    v = _draft(client, write_key, s["id"])
    _add(client, write_key, v["id"], [draft_only])
    ok = client.patch(
        f"/v1/concepts/{draft_only}", json={"name": "renamed"}, headers=auth(write_key)
    )
    assert ok.status_code == 200 and ok.json()["name"] == "renamed"


def test_list_concepts_of_a_public_version_from_another_namespace(
    client: Any, write_key: str, make_key: Any, published: dict[str, Any]
) -> None:
    vid = published["v1"]["id"]
    other = make_key("team-b", "read")
    hidden = client.get(f"/v1/concepts?concept_set_version_id={vid}", headers=auth(other))
    assert hidden.status_code == 404
    assert error_of(hidden)["field"] == "concept_set_version_id"
    client.patch(
        f"/v1/concept-sets/{published['set']['id']}",
        json={"public": True},
        headers=auth(write_key),
    )
    listed = client.get(f"/v1/concepts?concept_set_version_id={vid}", headers=auth(other)).json()
    assert [(c["name"], c["namespace"]) for c in listed["items"]] == [
        ("a", "team-a"),
        ("b", "team-a"),
    ]
    assert [c["n_stimuli"] for c in listed["items"]] == [2, 1]


def test_version_by_reference(client: Any, write_key: str, published: dict[str, Any]) -> None:
    set_id = published["set"]["id"]
    v2 = _draft(client, write_key, set_id)
    url = f"/v1/concept-sets/{set_id}/versions"
    assert client.get(f"{url}/latest", headers=auth(write_key)).json()["id"] == v2["id"]
    published_v = client.get(f"{url}/published", headers=auth(write_key)).json()
    assert published_v["id"] == published["v1"]["id"]
    assert client.get(f"{url}/2", headers=auth(write_key)).json()["id"] == v2["id"]
    missing = client.get(f"{url}/7", headers=auth(write_key))
    assert missing.status_code == 404 and error_of(missing)["field"] == "ref"
    bad = client.get(f"{url}/newest", headers=auth(write_key))
    assert bad.status_code == 422 and error_of(bad)["field"] == "ref"
