"""Nearest concepts: index path vs exact, filters, labels, access, bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
import pytest
from helpers import auth, error_of
from vectors_support import activation_like, create_pc1_recipe, seed, upload_body


def _upload(client: Any, key: str, s: Any, vecs: Any, ids: list[int], layer: int) -> None:
    r = client.post(
        f"/v1/models/{s.model_id}/vectors?recipe_id={s.recipe_id}",
        content=upload_body(vecs, ids, layer),
        headers=auth(key),
    )
    assert r.status_code == 200, r.text


def _exact_top(vecs: np.ndarray[Any, Any], q: np.ndarray[Any, Any], k: int) -> list[int]:
    x = vecs.astype(np.float16).astype(np.float64)
    qq = q.astype(np.float16).astype(np.float64)
    sims = x @ qq / (np.linalg.norm(x, axis=1) * np.linalg.norm(qq))
    return [int(i) for i in np.argsort(-sims, kind="stable")[:k]]


def _search(client: Any, key: str, **body: Any) -> Any:
    return client.post("/v1/search/nearest", json=body, headers=auth(key))


def test_index_path_matches_exact_search(client: Any, app: Any, write_key: str) -> None:
    s = seed(app, n_concepts=200, hidden_size=64, num_layers=2)
    vecs = activation_like(200, 64)
    _upload(client, write_key, s, vecs, s.concept_ids, 1)
    rng = np.random.default_rng(5)
    hits = 0
    for trial in range(5):
        q = vecs[trial * 30] + 0.3 * rng.standard_normal(64).astype(np.float32)
        want = [s.concept_ids[i] for i in _exact_top(vecs, q, 10)]
        approx = _search(client, write_key, model_id=s.model_id, layer=1, k=10, vector=q.tolist())
        exact = _search(
            client, write_key, model_id=s.model_id, layer=1, k=10, vector=q.tolist(), exact=True
        )
        assert approx.status_code == 200, approx.text
        assert approx.json()["exact"] is False and exact.json()["exact"] is True
        got_exact = [r["concept_id"] for r in exact.json()["results"]]
        assert got_exact == want
        sims = [r["similarity"] for r in exact.json()["results"]]
        assert sims == sorted(sims, reverse=True) and -1 <= sims[-1] <= sims[0] <= 1
        top = exact.json()["results"][0]
        assert top["name"] == s.names[s.concept_ids.index(top["concept_id"])]
        hits += len(set(r["concept_id"] for r in approx.json()["results"]) & set(want))
    # 200 atoms, a pool of 64 candidates re-ranked exactly: near-perfect recall
    assert hits / 50 >= 0.9


@pytest.mark.parametrize("dim", [4096, 5120])
def test_index_is_used_above_4000_dimensions(
    client: Any, app: Any, write_key: str, database_url: str, dim: int
) -> None:
    s = seed(app, n_concepts=30, hidden_size=dim, num_layers=1, hf_id=f"test/d{dim}")
    vecs = activation_like(30, dim)
    _upload(client, write_key, s, vecs, s.concept_ids, 0)
    q = vecs[7]
    r = _search(client, write_key, model_id=s.model_id, layer=0, k=3, vector=q.tolist())
    assert r.json()["exact"] is False
    assert r.json()["results"][0]["concept_id"] == s.concept_ids[7]
    assert r.json()["results"][0]["similarity"] == pytest.approx(1.0, abs=1e-3)
    # The planner really takes the partial Hamming HNSW index for this query shape.
    from pace_service.store.search_index import index_name

    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        conn.execute("SET enable_seqscan = off")  # 30 rows: make the cost model honest
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                f"EXPLAIN SELECT concept_id FROM atoms a WHERE a.model_id = {s.model_id} "
                f"AND a.layer = 0 AND a.recipe_id = {s.recipe_id} ORDER BY "
                f"a.code::bit({dim}) <~> %s::bit({dim}) LIMIT 64",
                ("".join("1" if x > 0 else "0" for x in q.astype(np.float16)),),
            ).fetchall()
        )
    assert index_name(s.model_id, 0, s.recipe_id) in plan


def test_concept_set_filter_and_labels(client: Any, app: Any, write_key: str) -> None:
    big = seed(app, n_concepts=40, hidden_size=32, prefix="all")
    vecs = activation_like(40, 32)
    _upload(client, write_key, big, vecs, big.concept_ids, 0)
    # a second version holding only the odd concepts, with a partition of two versions
    from pace_service.models import ConceptSetVersion, Label, Partition, Task, VersionConcept

    odd = big.concept_ids[1::2]
    with app.state.session_factory() as session:
        v = ConceptSetVersion(set_id=big.set_id, number=2, status="draft")
        session.add(v)
        session.flush()
        session.add_all([VersionConcept(version_id=v.id, concept_id=c) for c in odd])
        task = Task(namespace_id=_ns(session), name="t")
        session.add(task)
        session.flush()
        p1 = Partition(task_id=task.id, concept_set_version_id=v.id, version=1)
        p2 = Partition(task_id=task.id, concept_set_version_id=v.id, version=2)
        session.add_all([p1, p2])
        session.flush()
        session.add(Label(partition_id=p1.id, concept_id=odd[0], label="benign", score=0.1))
        session.add(Label(partition_id=p2.id, concept_id=odd[0], label="undesirable", score=0.9))
        session.commit()
        version_id, task_id, p1_id = v.id, task.id, p1.id

    q = vecs[1] + 0.01
    for exact in (False, True):
        r = _search(
            client,
            write_key,
            model_id=big.model_id,
            layer=0,
            k=5,
            vector=q.tolist(),
            concept_set_version_id=version_id,
            task_id=task_id,
            exact=exact,
        )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert len(results) == 5 and all(x["concept_id"] in odd for x in results)
        assert results[0]["concept_id"] == odd[0]
        assert results[0]["label"] == "undesirable"  # the task's latest partition
        assert all(x["label"] is None for x in results[1:])
    r = _search(
        client,
        write_key,
        model_id=big.model_id,
        layer=0,
        k=5,
        vector=q.tolist(),
        partition_id=p1_id,
    )
    assert r.json()["results"][0]["label"] == "benign"
    assert all(x["concept_id"] in odd for x in r.json()["results"])


def _ns(session: Any) -> int:
    from sqlalchemy import select

    from pace_service.models import Namespace

    return int(session.scalars(select(Namespace.id).where(Namespace.name == "team-a")).one())


def test_private_concepts_of_other_namespaces_never_show(
    client: Any, app: Any, write_key: str, make_key: Any
) -> None:
    mine = seed(app, n_concepts=20, hidden_size=16, prefix="mine")
    theirs = seed(app, namespace="team-b", n_concepts=20, hidden_size=16, prefix="theirs")
    vecs = activation_like(40, 16)
    _upload(client, write_key, mine, vecs[:20], mine.concept_ids, 0)
    _upload(client, make_key("team-b", "write"), theirs, vecs[20:], theirs.concept_ids, 0)
    q = vecs[25]  # nearest to one of theirs
    for exact in (False, True):
        r = _search(
            client, write_key, model_id=mine.model_id, layer=0, k=10, vector=q.tolist(), exact=exact
        )
        names = [x["name"] for x in r.json()["results"]]
        assert len(names) == 10 and all(n.startswith("mine-") for n in names), names
    r = _search(
        client, make_key("team-c", "read"), model_id=mine.model_id, layer=0, k=10, vector=q.tolist()
    )
    assert r.json()["results"] == []


def test_bad_requests(client: Any, app: Any, write_key: str, make_key: Any) -> None:
    s = seed(app, n_concepts=3, hidden_size=8, num_layers=3)
    _upload(client, write_key, s, activation_like(3, 8), s.concept_ids, 0)
    ok = {"model_id": s.model_id, "layer": 0, "k": 2, "vector": [0.5] * 8}
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        ({"vector": [0.5] * 9}, 422, "dimension_mismatch", "vector"),
        ({"vector": [0.0] * 8}, 422, "validation_error", "vector"),
        ({"vector": [1e6] + [0.5] * 7}, 422, "non_finite", "vector.0"),
        ({"k": 0}, 422, "validation_error", "k"),
        ({"k": 1001}, 422, "validation_error", "k"),
        ({"layer": 3}, 422, "validation_error", "layer"),
        ({"layer": 1}, 404, "not_found", "layer"),  # no atoms there
        ({"model_id": 10**9}, 404, "not_found", "model_id"),
        ({"recipe_id": 10**9}, 404, "not_found", "recipe_id"),
        ({"concept_set_version_id": 10**9}, 404, "not_found", "concept_set_version_id"),
        ({"partition_id": 10**9}, 404, "not_found", "partition_id"),
        ({"task_id": 10**9}, 404, "not_found", "task_id"),
    ]
    for change, status, code, field in cases:
        r = _search(client, write_key, **{**ok, **change})
        assert r.status_code == status, (change, r.text)
        assert (error_of(r)["code"], error_of(r)["field"]) == (code, field), change
    # NaN cannot be sent as strict JSON; a raw body with NaN is still refused precisely
    raw = f'{{"model_id": {s.model_id}, "layer": 0, "k": 2, "vector": [NaN, 1, 1, 1, 1, 1, 1, 1]}}'
    r = client.post(
        "/v1/search/nearest",
        content=raw,
        headers={**auth(write_key), "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and error_of(r)["field"] in ("vector.0", "vector")
    r = _search(
        client, make_key("team-b", "read"), **{**ok, "concept_set_version_id": s.version_id}
    )
    assert (r.status_code, error_of(r)["field"]) == (404, "concept_set_version_id")


def test_recipe_is_required_when_a_layer_has_several(client: Any, app: Any, write_key: str) -> None:
    s = seed(app, n_concepts=2, hidden_size=8)
    _upload(client, write_key, s, activation_like(2, 8), s.concept_ids, 0)
    other_recipe = create_pc1_recipe(client, auth(write_key))
    client.post(
        f"/v1/models/{s.model_id}/vectors?recipe_id={other_recipe}",
        content=upload_body(activation_like(2, 8, seed=4), s.concept_ids, 0),
        headers=auth(write_key),
    )
    body = {"model_id": s.model_id, "layer": 0, "k": 1, "vector": [0.5] * 8}
    r = _search(client, write_key, **body)
    assert (r.status_code, error_of(r)["field"]) == (422, "recipe_id")
    assert _search(client, write_key, **body, recipe_id=other_recipe).status_code == 200


def test_migration_0002_indexes_stored_groups_and_its_downgrade_drops_them(pg_server: Any) -> None:
    from pace_service.migrate import downgrade, upgrade

    url = pg_server.ensure_database("search_index_migration")
    upgrade(url, "0001")
    libpq = pg_server.libpq_url("search_index_migration")
    vec = "[" + ",".join(["0.5", "-0.25"] * 2048) + "]"
    with psycopg.connect(libpq) as conn:
        conn.execute("INSERT INTO namespaces (name) VALUES ('n')")
        conn.execute("INSERT INTO concepts (namespace_id, name) VALUES (1, 'c')")
        conn.execute(
            "INSERT INTO recipes (token_position, reduction, prompt_template, code_version, "
            "content_hash) VALUES ('last', 'mean', '{stimulus}', 'v', 'h')"
        )
        conn.execute(
            "INSERT INTO models (hf_id, revision, hidden_size, num_layers, architecture) "
            "VALUES ('m', 'main', 4096, 8, 'x')"
        )
        conn.execute(
            "INSERT INTO atoms (model_id, layer, recipe_id, concept_id, vector) "
            "VALUES (1, 5, 1, 1, %s::halfvec)",
            (vec,),
        )

    def indexes() -> list[tuple[str, bool]]:
        with psycopg.connect(libpq) as conn:
            rows = conn.execute(
                "SELECT c.relname, i.indisvalid FROM pg_class c JOIN pg_index i "
                "ON i.indexrelid = c.oid WHERE c.relname LIKE 'ix_atoms_bq_%'"
            ).fetchall()
        return [(str(r[0]), bool(r[1])) for r in rows]

    upgrade(url)
    assert indexes() == [("ix_atoms_bq_m1_l5_r1", True)]
    downgrade(url, "0001")
    assert indexes() == []
    upgrade(url)
    assert indexes() == [("ix_atoms_bq_m1_l5_r1", True)]
    downgrade(url, "base")
