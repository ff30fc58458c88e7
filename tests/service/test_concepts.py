"""Concepts and stimuli: CRUD, dedup, bulk import in one transaction, bad input."""

from __future__ import annotations

from typing import Any

from helpers import auth, error_of
from sqlalchemy import text

STIMULI = [
    {"text": "You shout at a stranger.", "source": "generated", "provenance": {"model": "m"}},
    {"text": "You slam the door.", "source": "human"},
]


def _create(client: Any, key: str, name: str = "anger", **extra: Any) -> dict[str, Any]:
    body = {"name": name, "description": "d", "tags": ["emotion"], "stimuli": STIMULI, **extra}
    response = client.post("/v1/concepts", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def test_create_read_list_concept(client: Any, write_key: str, read_key: str) -> None:
    created = _create(client, write_key)
    assert created["namespace"] == "team-a" and created["n_stimuli"] == 2
    assert [s["text"] for s in created["stimuli"]] == [s["text"] for s in STIMULI]
    assert created["stimuli"][0]["provenance"] == {"model": "m"}
    got = client.get(f"/v1/concepts/{created['id']}", headers=auth(read_key)).json()
    assert got == created
    _create(client, write_key, name="Anger", tags=["other"])  # names are case-sensitive
    listed = client.get("/v1/concepts?tag=emotion", headers=auth(read_key)).json()
    assert listed["total"] == 1 and listed["items"][0]["name"] == "anger"
    by_name = client.get("/v1/concepts", params={"name": "Anger"}, headers=auth(read_key))
    assert [c["name"] for c in by_name.json()["items"]] == ["Anger"]
    page = client.get("/v1/concepts?limit=1&offset=1", headers=auth(read_key)).json()
    assert page["total"] == 2 and page["limit"] == 1 and len(page["items"]) == 1


def test_identical_stimuli_are_stored_once(client: Any, write_key: str, app: Any) -> None:
    created = _create(client, write_key, stimuli=[STIMULI[0], STIMULI[0], STIMULI[1]])
    assert created["n_stimuli"] == 2
    patched = client.patch(
        f"/v1/concepts/{created['id']}",
        json={"add_stimuli": [STIMULI[1], {"text": "You glare."}]},
        headers=auth(write_key),
    ).json()
    assert patched["n_stimuli"] == 3
    with app.state.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM stimuli")).scalar() == 3


def test_retire_and_readd_stimulus(client: Any, write_key: str) -> None:
    created = _create(client, write_key)
    first = created["stimuli"][0]
    url = f"/v1/concepts/{created['id']}"
    retired = client.patch(url, json={"retire_stimuli": [first["id"]]}, headers=auth(write_key))
    assert [s["text"] for s in retired.json()["stimuli"]] == [STIMULI[1]["text"]]
    back = client.patch(url, json={"add_stimuli": [STIMULI[0]]}, headers=auth(write_key)).json()
    assert first["id"] in {s["id"] for s in back["stimuli"]}


def test_duplicate_name_is_409_naming_the_field(client: Any, write_key: str) -> None:
    _create(client, write_key)
    response = client.post("/v1/concepts", json={"name": "anger"}, headers=auth(write_key))
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "duplicate" and error["field"] == "name"
    other = _create(client, write_key, name="calm")
    rename = client.patch(
        f"/v1/concepts/{other['id']}", json={"name": "anger"}, headers=auth(write_key)
    )
    assert rename.status_code == 409 and error_of(rename)["field"] == "name"


def test_validation_errors_name_the_field(client: Any, write_key: str) -> None:
    cases = [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        (
            {"name": "x", "stimuli": [{"text": "ok"}, {"text": "a", "source": "alien"}]},
            "stimuli.1.source",
        ),
        ({"name": "x", "stimuli": [{"text": ""}]}, "stimuli.0.text"),
        ({"name": "x", "tags": "notalist"}, "tags"),
        ({"description": "no name"}, "name"),
    ]
    for body, field in cases:
        response = client.post("/v1/concepts", json=body, headers=auth(write_key))
        assert response.status_code == 422, body
        error = error_of(response)
        assert (error["code"], error["field"]) == ("validation_error", field), body
    bad_json = client.post(
        "/v1/concepts",
        content=b"{not json",
        headers={**auth(write_key), "content-type": "application/json"},
    )
    assert bad_json.status_code == 422 and error_of(bad_json)["code"] == "validation_error"


def test_unknown_ids_are_404(client: Any, write_key: str) -> None:
    for method in ("get", "patch", "delete"):
        kwargs = {"json": {"description": "x"}} if method == "patch" else {}
        response = getattr(client, method)("/v1/concepts/999999", headers=auth(write_key), **kwargs)
        assert response.status_code == 404, method
        assert error_of(response)["code"] == "not_found"
    non_int = client.get("/v1/concepts/abc", headers=auth(write_key))
    assert non_int.status_code == 422 and error_of(non_int)["field"] == "concept_id"


def test_read_key_cannot_write(client: Any, read_key: str, write_key: str) -> None:
    response = client.post("/v1/concepts", json={"name": "x"}, headers=auth(read_key))
    assert response.status_code == 403 and error_of(response)["code"] == "forbidden"
    created = _create(client, write_key)
    delete = client.delete(f"/v1/concepts/{created['id']}", headers=auth(read_key))
    assert delete.status_code == 403


def test_other_namespace_private_concept_is_404(client: Any, write_key: str, make_key: Any) -> None:
    created = _create(client, write_key)
    other = make_key("team-b", "admin")
    assert client.get(f"/v1/concepts/{created['id']}", headers=auth(other)).status_code == 404
    response = client.patch(
        f"/v1/concepts/{created['id']}", json={"description": "x"}, headers=auth(other)
    )
    assert response.status_code == 404
    assert client.get("/v1/concepts", headers=auth(other)).json()["total"] == 0


def test_delete_concept(client: Any, write_key: str) -> None:
    created = _create(client, write_key)
    url = f"/v1/concepts/{created['id']}"
    assert client.delete(url, headers=auth(write_key)).status_code == 204
    assert client.get(url, headers=auth(write_key)).status_code == 404


def test_bulk_import_creates_all(client: Any, write_key: str) -> None:
    items = [
        {"name": f"c{i}", "stimuli": [{"text": f"s{i}"}, {"text": "shared"}]} for i in range(300)
    ]
    response = client.post("/v1/concepts:bulk", json=items, headers=auth(write_key))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["created"] == 300 and body["existing"] == 0
    assert [i["name"] for i in body["items"]] == [f"c{i}" for i in range(300)]
    one = client.get(f"/v1/concepts/{body['items'][7]['id']}", headers=auth(write_key)).json()
    assert one["name"] == "c7" and {s["text"] for s in one["stimuli"]} == {"s7", "shared"}
    again = client.post(
        "/v1/concepts:bulk?on_existing=skip",
        json=[*items[:2], {"name": "new"}],
        headers=auth(write_key),
    ).json()
    assert again["created"] == 1 and again["existing"] == 2
    assert again["items"][0]["id"] == body["items"][0]["id"]


def test_failing_bulk_import_leaves_nothing(client: Any, write_key: str, app: Any) -> None:
    _create(client, write_key, name="taken")
    items = [{"name": f"c{i}", "stimuli": [{"text": "s"}]} for i in range(50)]
    items.append({"name": "taken"})
    response = client.post("/v1/concepts:bulk", json=items, headers=auth(write_key))
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "duplicate" and error["field"] == "50.name"
    repeated = client.post(
        "/v1/concepts:bulk", json=[{"name": "a"}, {"name": "a"}], headers=auth(write_key)
    )
    assert repeated.status_code == 409 and error_of(repeated)["field"] == "1.name"
    invalid = client.post(
        "/v1/concepts:bulk",
        json=[{"name": "ok"}, {"name": "ok2", "stimuli": [{"text": ""}]}],
        headers=auth(write_key),
    )
    assert invalid.status_code == 422 and error_of(invalid)["field"] == "1.stimuli.0.text"
    with app.state.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM concepts")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM stimuli")).scalar() == 2


def test_failure_after_writes_rolls_back_the_request(client: Any, write_key: str, app: Any) -> None:
    """A request that fails after it wrote (here: a stimulus retire of a foreign id, checked
    after the rename) leaves nothing behind."""
    created = _create(client, write_key)
    response = client.patch(
        f"/v1/concepts/{created['id']}",
        json={"description": "changed", "retire_stimuli": [987654]},
        headers=auth(write_key),
    )
    assert response.status_code == 404 and error_of(response)["field"] == "retire_stimuli"
    got = client.get(f"/v1/concepts/{created['id']}", headers=auth(write_key)).json()
    assert got["description"] == "d"
