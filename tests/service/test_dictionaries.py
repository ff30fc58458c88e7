"""Materialized dictionaries: format, content addressing, build-once, ETag, access."""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
from helpers import auth, error_of
from safetensors.numpy import load as st_load
from vectors_support import activation_like, seed, upload_body


def _upload(client: Any, key: str, s: Any, vecs: Any, ids: list[int], layers: Any) -> None:
    r = client.post(
        f"/v1/models/{s.model_id}/vectors?recipe_id={s.recipe_id}",
        content=upload_body(vecs, ids, layers),
        headers=auth(key),
    )
    assert r.status_code == 200, r.text


def _meta(data: bytes) -> dict[str, str]:
    size = int.from_bytes(data[:8], "little")
    meta: dict[str, str] = json.loads(data[8 : 8 + size])["__metadata__"]
    return meta


def _request(s: Any, layers: list[int], partition_id: int | None = None) -> dict[str, Any]:
    return {
        "concept_set_version_id": s.version_id,
        "model_id": s.model_id,
        "layers": layers,
        "recipe_id": s.recipe_id,
        "partition_id": partition_id,
    }


def test_dictionary_content_labels_and_missing_concepts(
    client: Any, app: Any, write_key: str
) -> None:
    s = seed(
        app, n_concepts=6, hidden_size=32, num_layers=4, labels={0: "undesirable", 2: "benign"}
    )
    ids = s.concept_ids
    v1 = activation_like(6, 32, seed=1).astype(np.float16)
    v3 = activation_like(6, 32, seed=3).astype(np.float16)
    _upload(client, write_key, s, v1, ids, 1)
    _upload(client, write_key, s, v3[:5], ids[:5], 3)  # the last concept lacks layer 3

    r = client.post(
        "/v1/dictionaries", json=_request(s, [3, 1], s.partition_id), headers=auth(write_key)
    )
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["n_concepts"] == 5 and info["layers"] == [1, 3]
    assert info["missing"] == [s.names[5]]

    r = client.get(f"/v1/dictionaries/{info['hash']}", headers=auth(write_key))
    assert r.status_code == 200
    assert r.headers["etag"] == f'"{info["hash"]}"'
    assert r.headers["content-type"] == "application/octet-stream"
    data = r.content
    assert len(data) == info["size_bytes"]
    tensors = st_load(data)
    np.testing.assert_array_equal(tensors["atoms.1"], v1[:5])
    np.testing.assert_array_equal(tensors["atoms.3"], v3[:5])
    assert tensors["atoms.1"].dtype == np.float16
    np.testing.assert_array_equal(tensors["concept_ids"], ids[:5])
    np.testing.assert_array_equal(tensors["labels"], [1, -1, 0, -1, -1])
    assert tensors["labels"].dtype == np.int8
    assert tensors["scores"][0] == np.float32(0.5) and np.isnan(tensors["scores"][1])
    meta = _meta(data)
    assert meta["format"] == "pace.dictionary/1"
    assert meta["content_hash"] == info["hash"]
    assert json.loads(meta["concept_names"]) == s.names[:5]
    assert json.loads(meta["layers"]) == [1, 3]
    assert json.loads(meta["missing"]) == [s.names[5]]
    assert json.loads(meta["model"])["hidden_size"] == 32
    assert json.loads(meta["recipe"])["reduction"] == "mean"
    assert json.loads(meta["concept_set"])["version_id"] == s.version_id
    assert json.loads(meta["partition"])["id"] == s.partition_id


def test_sdk_reads_the_service_file(client: Any, app: Any, write_key: str) -> None:
    """The wire contract end to end: the SDK's reader accepts what the service writes."""
    from pace.dictionary import ConceptDictionary

    s = seed(app, n_concepts=3, hidden_size=16, labels={1: "undesirable"})
    vecs = activation_like(3, 16).astype(np.float16)
    _upload(client, write_key, s, vecs, s.concept_ids, 0)
    h = client.post(
        "/v1/dictionaries", json=_request(s, [0], s.partition_id), headers=auth(write_key)
    ).json()["hash"]
    d = ConceptDictionary.from_bytes(
        client.get(f"/v1/dictionaries/{h}", headers=auth(write_key)).content
    )
    assert d.content_hash == h and list(d.concept_names) == s.names
    assert d.undesirable.tolist() == [False, True, False]
    np.testing.assert_array_equal(d.atoms[0].numpy(), vecs)


def test_same_inputs_same_hash_built_once_and_new_content_new_hash(
    client: Any, app: Any, write_key: str, settings: Any
) -> None:
    s = seed(app, n_concepts=4, hidden_size=8, publish=False)
    _upload(client, write_key, s, activation_like(4, 8), s.concept_ids, 0)
    first = client.post("/v1/dictionaries", json=_request(s, [0]), headers=auth(write_key))
    assert first.status_code == 201
    h = first.json()["hash"]
    blob = settings.blob_dir / h
    mtime = blob.stat().st_mtime_ns
    again = client.post("/v1/dictionaries", json=_request(s, [0]), headers=auth(write_key))
    assert again.status_code == 200 and again.json()["hash"] == h
    assert blob.stat().st_mtime_ns == mtime  # served, not rebuilt

    # Another concept gets atoms (the draft version already holds it): new content.
    from pace_service.models import VersionConcept

    extra = seed(app, n_concepts=1, hidden_size=8, prefix="extra", publish=False)
    with app.state.session_factory() as session:
        session.add(VersionConcept(version_id=s.version_id, concept_id=extra.concept_ids[0]))
        session.commit()
    with_missing = client.post("/v1/dictionaries", json=_request(s, [0]), headers=auth(write_key))
    assert with_missing.json()["hash"] != h and with_missing.json()["missing"] == ["extra-0"]
    _upload(client, write_key, extra, activation_like(1, 8, seed=9), extra.concept_ids, 0)
    grown = client.post("/v1/dictionaries", json=_request(s, [0]), headers=auth(write_key)).json()
    assert grown["n_concepts"] == 5 and grown["hash"] not in (h, with_missing.json()["hash"])


def test_concurrent_requests_build_once(app: Any, write_key: str, settings: Any) -> None:
    """Parallel POSTs for one new dictionary: one 201, the rest 200, one intact file."""
    from fastapi.testclient import TestClient

    s = seed(app, n_concepts=40, hidden_size=256)
    with TestClient(app) as c:
        _upload(c, write_key, s, activation_like(40, 256), s.concept_ids, [0] * 40)
        statuses: list[int] = []
        hashes: list[str] = []

        def pull() -> None:
            r = c.post("/v1/dictionaries", json=_request(s, [0]), headers=auth(write_key))
            statuses.append(r.status_code)
            hashes.append(r.json()["hash"])

        threads = [threading.Thread(target=pull) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(statuses) == [200, 200, 200, 201]
    assert len(set(hashes)) == 1
    files = [p for p in settings.blob_dir.iterdir()]
    assert [p.name for p in files] == [hashes[0]]  # no temp files left behind
    assert st_load(files[0].read_bytes())["atoms.0"].shape == (40, 256)


def test_if_none_match_gets_304(client: Any, app: Any, write_key: str) -> None:
    s = seed(app, n_concepts=2, hidden_size=8)
    _upload(client, write_key, s, activation_like(2, 8), s.concept_ids, 0)
    h = client.post("/v1/dictionaries", json=_request(s, [0]), headers=auth(write_key)).json()[
        "hash"
    ]
    url = f"/v1/dictionaries/{h}"
    r = client.get(url, headers={**auth(write_key), "If-None-Match": f'"{h}"'})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == f'"{h}"'
    r = client.get(url, headers={**auth(write_key), "If-None-Match": '"' + "0" * 64 + '"'})
    assert r.status_code == 200 and len(r.content) > 0


def test_bad_requests_and_access(client: Any, app: Any, write_key: str, make_key: Any) -> None:
    s = seed(app, n_concepts=2, hidden_size=8, num_layers=4, labels={0: "benign"})
    _upload(client, write_key, s, activation_like(2, 8), s.concept_ids, 0)
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        ({"layers": [4]}, 422, "validation_error", "layers.0"),
        ({"layers": []}, 422, "validation_error", "layers"),
        ({"layers": [0, 0]}, 422, "validation_error", "layers"),
        ({"layers": [2]}, 422, "validation_error", "layers"),  # no atoms there
        ({"model_id": 10**9}, 404, "not_found", "model_id"),
        ({"recipe_id": 10**9}, 404, "not_found", "recipe_id"),
        ({"concept_set_version_id": 10**9}, 404, "not_found", "concept_set_version_id"),
        ({"partition_id": 10**9}, 404, "not_found", "partition_id"),
    ]
    for change, status, code, field in cases:
        body = {**_request(s, [0]), **change}
        r = client.post("/v1/dictionaries", json=body, headers=auth(write_key))
        assert r.status_code == status, (change, r.text)
        assert (error_of(r)["code"], error_of(r)["field"]) == (code, field), change

    h = client.post("/v1/dictionaries", json=_request(s, [0]), headers=auth(write_key)).json()[
        "hash"
    ]
    other = make_key("team-b", "admin")
    r = client.post("/v1/dictionaries", json=_request(s, [0]), headers=auth(other))
    assert (r.status_code, error_of(r)["field"]) == (404, "concept_set_version_id")
    assert client.get(f"/v1/dictionaries/{h}", headers=auth(other)).status_code == 404
    r = client.get("/v1/dictionaries/not-a-hash", headers=auth(write_key))
    assert (r.status_code, error_of(r)["code"]) == (404, "not_found")
    assert client.get(f"/v1/dictionaries/{h}").status_code == 401

    # A partition of another concept-set version cannot label this one.
    s2 = seed(app, n_concepts=1, hidden_size=8, prefix="second", labels={0: "benign"})
    r = client.post(
        "/v1/dictionaries", json=_request(s, [0], s2.partition_id), headers=auth(write_key)
    )
    assert (r.status_code, error_of(r)["field"]) == (422, "partition_id")


def test_public_sets_are_readable_by_other_namespaces(
    client: Any, app: Any, write_key: str, make_key: Any
) -> None:
    s = seed(app, n_concepts=2, hidden_size=8, public=True)
    _upload(client, write_key, s, activation_like(2, 8), s.concept_ids, 0)
    reader = make_key("team-b", "read")
    r = client.post("/v1/dictionaries", json=_request(s, [0]), headers=auth(reader))
    assert r.status_code == 201, r.text
    assert (
        client.get(f"/v1/dictionaries/{r.json()['hash']}", headers=auth(reader)).status_code == 200
    )
