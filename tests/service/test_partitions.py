"""Tasks and partitions: versions, labels, human overrides, validation, privacy."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import auth, error_of

LLM = {"kind": "llm", "name": "gpt-x"}


@pytest.fixture
def setup(client: Any, write_key: str) -> dict[str, Any]:
    """Concepts a, b, c in a published version, and a task."""
    ids = [
        client.post("/v1/concepts", json={"name": n}, headers=auth(write_key)).json()["id"]
        for n in ("a", "b", "c")
    ]
    s = client.post("/v1/concept-sets", json={"name": "s"}, headers=auth(write_key)).json()
    v = client.post(f"/v1/concept-sets/{s['id']}/versions", json={}, headers=auth(write_key)).json()
    client.post(
        f"/v1/concept-set-versions/{v['id']}/concepts",
        json={"concept_ids": ids},
        headers=auth(write_key),
    )
    client.post(f"/v1/concept-set-versions/{v['id']}/publish", headers=auth(write_key))
    task = client.post(
        "/v1/tasks", json={"name": "detox", "description": "no insults"}, headers=auth(write_key)
    )
    assert task.status_code == 201
    return {"ids": ids, "version_id": v["id"], "task_id": task.json()["id"]}


def _labels(ids: list[int], undesirable: set[int]) -> list[dict[str, Any]]:
    return [
        {
            "concept_id": cid,
            "label": "undesirable" if cid in undesirable else "benign",
            "score": 0.9,
            "rationale": "r",
            "labeler": LLM,
        }
        for cid in ids
    ]


def _partition(client: Any, key: str, setup: dict[str, Any], undesirable: set[int]) -> Any:
    return client.post(
        "/v1/partitions",
        json={
            "task_id": setup["task_id"],
            "concept_set_version_id": setup["version_id"],
            "labels": _labels(setup["ids"], undesirable),
            "provenance": {"partitioner": "gpt-x", "prompt": "p"},
        },
        headers=auth(key),
    )


def test_partition_versions_and_labels(
    client: Any, write_key: str, read_key: str, setup: dict[str, Any]
) -> None:
    a, b, _c = setup["ids"]
    first = _partition(client, write_key, setup, {a})
    assert first.status_code == 201, first.text
    p1 = first.json()
    assert p1["version"] == 1 and p1["n_undesirable"] == 1 and p1["n_benign"] == 2
    assert p1["labels"][0] == {
        "concept_id": a,
        "label": "undesirable",
        "score": 0.9,
        "rationale": "r",
        "labeler": LLM,
    }
    p2 = _partition(client, write_key, setup, {a, b}).json()
    assert p2["version"] == 2 and p2["parent_id"] is None
    got = client.get(f"/v1/partitions/{p1['id']}", headers=auth(read_key)).json()
    assert got == p1
    listed = client.get(
        "/v1/partitions",
        params={"task_id": setup["task_id"], "concept_set_version_id": setup["version_id"]},
        headers=auth(read_key),
    ).json()
    assert [p["version"] for p in listed["items"]] == [2, 1] and listed["total"] == 2
    latest = client.get(
        "/v1/partitions/latest", params={"task_id": setup["task_id"]}, headers=auth(read_key)
    ).json()
    assert latest["id"] == p2["id"]


def test_human_override_makes_a_new_version(
    client: Any, write_key: str, setup: dict[str, Any]
) -> None:
    a, b, c = setup["ids"]
    p1 = _partition(client, write_key, setup, {a}).json()
    response = client.post(
        f"/v1/partitions/{p1['id']}/overrides",
        json={
            "labels": [{"concept_id": b, "label": "undesirable", "rationale": "slur"}],
            "note": "review",
        },
        headers=auth(write_key),
    )
    assert response.status_code == 201, response.text
    p2 = response.json()
    assert p2["version"] == 2 and p2["parent_id"] == p1["id"]
    assert p2["provenance"]["kind"] == "human_override"
    assert p2["provenance"]["overridden"] == [b]
    by_id = {label["concept_id"]: label for label in p2["labels"]}
    assert by_id[b]["label"] == "undesirable"
    assert by_id[b]["labeler"] == {"kind": "human", "name": "team-a"}
    assert by_id[a] == next(lab for lab in p1["labels"] if lab["concept_id"] == a)
    assert by_id[c]["label"] == "benign"
    # the parent is unchanged
    again = client.get(f"/v1/partitions/{p1['id']}", headers=auth(write_key)).json()
    assert again == p1


def test_bad_labels_name_the_field(client: Any, write_key: str, setup: dict[str, Any]) -> None:
    a, b, _c = setup["ids"]
    base = {"task_id": setup["task_id"], "concept_set_version_id": setup["version_id"]}
    outsider = client.post("/v1/concepts", json={"name": "z"}, headers=auth(write_key)).json()
    cases = [
        ({**base, "labels": _labels([a, outsider["id"]], set())}, 422, "labels.1.concept_id"),
        ({**base, "labels": _labels([a, b, a], set())}, 422, "labels.2.concept_id"),
        ({**base, "labels": [{**_labels([a], set())[0], "label": "meh"}]}, 422, "labels.0.label"),
        (
            {
                **base,
                "labels": [{**_labels([a], set())[0], "labeler": {"kind": "robot", "name": "x"}}],
            },
            422,
            "labels.0.labeler.kind",
        ),
        ({**base, "task_id": 99999, "labels": []}, 404, "task_id"),
        ({**base, "concept_set_version_id": 99999, "labels": []}, 404, "concept_set_version_id"),
    ]
    for body, status, field in cases:
        response = client.post("/v1/partitions", json=body, headers=auth(write_key))
        assert response.status_code == status, (body, response.text)
        assert error_of(response)["field"] == field
    assert client.get("/v1/partitions", headers=auth(write_key)).json()["total"] == 0


def test_partitions_and_tasks_are_private(
    client: Any, write_key: str, make_key: Any, setup: dict[str, Any]
) -> None:
    p1 = _partition(client, write_key, setup, set()).json()
    other = make_key("team-b", "admin")
    assert client.get(f"/v1/partitions/{p1['id']}", headers=auth(other)).status_code == 404
    assert client.get(f"/v1/tasks/{setup['task_id']}", headers=auth(other)).status_code == 404
    override = client.post(
        f"/v1/partitions/{p1['id']}/overrides",
        json={"labels": [{"concept_id": setup["ids"][0], "label": "benign"}]},
        headers=auth(other),
    )
    assert override.status_code == 404
    assert client.get("/v1/partitions", headers=auth(other)).json()["total"] == 0


def test_task_crud(client: Any, write_key: str, read_key: str) -> None:
    task = client.post("/v1/tasks", json={"name": "t"}, headers=auth(write_key)).json()
    dup = client.post("/v1/tasks", json={"name": "t"}, headers=auth(write_key))
    assert dup.status_code == 409 and error_of(dup)["field"] == "name"
    assert client.post("/v1/tasks", json={"name": "u"}, headers=auth(read_key)).status_code == 403
    patched = client.patch(
        f"/v1/tasks/{task['id']}", json={"description": "goal"}, headers=auth(write_key)
    ).json()
    assert patched["description"] == "goal"
    for blank in ("", "   "):  # a rename is held to the create rule
        renamed = client.patch(
            f"/v1/tasks/{task['id']}", json={"name": blank}, headers=auth(write_key)
        )
        assert renamed.status_code == 422 and error_of(renamed)["field"] == "name"
    assert client.get("/v1/tasks?name=t", headers=auth(read_key)).json()["total"] == 1
    assert client.delete(f"/v1/tasks/{task['id']}", headers=auth(write_key)).status_code == 204
    assert client.get(f"/v1/tasks/{task['id']}", headers=auth(read_key)).status_code == 404
