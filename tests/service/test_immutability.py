"""A published version never changes: a storm of edits by every role leaves its hash.

The version comprises its row, its members (ids and names), each member's stimuli
snapshot (texts), the atoms its dictionary was built from, the labels of a partition
over it, and the dictionary (its row and the bytes of its file). They are hashed
through the API and directly in SQL and on disk, before and after a storm: every
mutating operation of the OpenAPI schema, by alpha's admin, write and read keys and
beta's write and admin keys, aimed at the version and everything it references, once
in order and then concurrently from threads against the live service. Attempts that
would change the version must get a 4xx; the rest (a new draft, a new partition
version, live stimuli, metadata) may succeed but must leave the hash as it was. No
attempt may get a 5xx.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from helpers import auth
from isolation_support import HIDDEN, LAYERS, World, make_world
from vectors_support import upload_body

ROLES = ("alpha_admin", "alpha_write", "alpha_read", "beta_write", "beta_admin")
ALPHA_WRITERS = frozenset({"alpha_admin", "alpha_write"})
WRITERS = frozenset({"alpha_admin", "alpha_write", "beta_write", "beta_admin"})
ADMINS = frozenset({"alpha_admin", "beta_admin"})
# POSTs that read: they are not edits, so the storm need not include them
READ_POSTS = {"/v1/models/{model_id}/vectors:present", "/v1/search/nearest"}
_unique = itertools.count()


def _digest(value: Any) -> str:
    if isinstance(value, bytes):
        return hashlib.sha256(value).hexdigest()
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def snapshot(client: Any, world: World, libpq_url: str, blob_dir: Path) -> dict[str, str]:
    """Hashes of everything the published version comprises, by component."""
    ids = world.ids
    h = auth(world.keys["alpha_admin"])
    v, p, d = ids["v_priv"], ids["partition"], ids["dict_priv"]
    out: dict[str, str] = {}
    version = client.get(f"/v1/concept-set-versions/{v}", headers=h).json()
    version.pop("set_name")  # the set's name is the set's, and may change
    out["api.version"] = _digest(version)
    members = client.get("/v1/concepts", params={"concept_set_version_id": v}, headers=h).json()
    out["api.members"] = _digest([(c["id"], c["name"], c["namespace"]) for c in members["items"]])
    out["api.partition"] = _digest(client.get(f"/v1/partitions/{p}", headers=h).json())
    blob = client.get(f"/v1/dictionaries/{d}", headers=h)
    assert blob.status_code == 200
    out["api.dictionary_bytes"] = _digest(blob.content)
    with psycopg.connect(libpq_url) as conn:

        def rows(query: str, *args: Any) -> str:
            return _digest([list(r) for r in conn.execute(query, args)])

        out["sql.version"] = rows("SELECT * FROM concept_set_versions WHERE id = %s", v)
        out["sql.members"] = rows(
            "SELECT concept_id, stimulus_ids FROM version_concepts WHERE version_id = %s "
            "ORDER BY concept_id",
            v,
        )
        out["sql.concepts"] = rows(
            "SELECT c.id, c.namespace_id, c.name FROM concepts c JOIN version_concepts vc "
            "ON vc.concept_id = c.id WHERE vc.version_id = %s ORDER BY c.id",
            v,
        )
        out["sql.stimuli"] = rows(
            "SELECT s.id, s.concept_id, s.text, s.source, s.provenance, s.created_at "
            "FROM version_concepts vc CROSS JOIN LATERAL unnest(vc.stimulus_ids) AS u(sid) "
            "JOIN stimuli s ON s.id = u.sid WHERE vc.version_id = %s ORDER BY s.id",
            v,
        )
        out["sql.atoms"] = rows(
            "SELECT a.concept_id, a.layer, a.model_id, a.recipe_id, a.vector::text "
            "FROM atoms a JOIN version_concepts vc ON vc.concept_id = a.concept_id "
            "WHERE vc.version_id = %s AND a.model_id = %s AND a.recipe_id = %s "
            "AND a.layer = ANY(%s) ORDER BY 1, 2",
            v,
            ids["model"],
            ids["recipe"],
            list(LAYERS),
        )
        out["sql.partition"] = rows("SELECT * FROM partitions WHERE id = %s", p)
        out["sql.labels"] = rows(
            "SELECT * FROM labels WHERE partition_id = %s ORDER BY concept_id", p
        )
        out["sql.dictionary"] = rows("SELECT * FROM dictionaries WHERE hash = %s", d)
    out["disk.dictionary_bytes"] = _digest((blob_dir / d).read_bytes())
    return out


@dataclass(frozen=True)
class Attempt:
    """One edit aimed at the version or what it references; ``may`` may succeed."""

    name: str
    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    json: Callable[[dict[str, Any]], Any] | None = None
    content: Callable[[dict[str, Any]], bytes] | None = None
    query: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    may: frozenset[str] = frozenset()


def _vectors(ids: dict[str, Any], rows: list[tuple[str, int]]) -> bytes:
    values = np.full((len(rows), HIDDEN), 7.0, np.float32)
    return upload_body(values, [ids[c] for c, _ in rows], [layer for _, layer in rows])


def _u(prefix: str) -> str:
    return f"{prefix}-{next(_unique)}"


RECIPE = {"token_position": "last", "reduction": "mean", "prompt_template": "{stimulus}"}
MODEL = {"hidden_size": HIDDEN, "num_layers": 4, "architecture": "LlamaForCausalLM"}
HUMAN = {"kind": "human", "name": "storm"}
V = {"version_id": "v_priv"}
RECIPE_Q: Callable[[dict[str, Any]], dict[str, Any]] = lambda i: {"recipe_id": i["recipe"]}  # noqa: E731

ATTEMPTS: list[Attempt] = [
    # the version itself: membership, publication, deletion
    Attempt("add member", "POST", "/v1/concept-set-versions/{version_id}/concepts", V,
            json=lambda i: {"concept_ids": [i["c_free"]]}),
    Attempt("remove member", "DELETE", "/v1/concept-set-versions/{version_id}/concepts", V,
            json=lambda i: {"concept_ids": [i["c_priv"]]}),
    Attempt("remove member (POST)", "POST",
            "/v1/concept-set-versions/{version_id}/concepts:remove", V,
            json=lambda i: {"concept_ids": [i["c_priv2"]]}),
    Attempt("publish again", "POST", "/v1/concept-set-versions/{version_id}/publish", V),
    Attempt("delete version", "DELETE", "/v1/concept-set-versions/{version_id}", V),
    Attempt("delete set", "DELETE", "/v1/concept-sets/{set_id}", {"set_id": "set_priv"}),
    # its concepts and stimuli
    Attempt("rename member", "PATCH", "/v1/concepts/{concept_id}", {"concept_id": "c_priv"},
            json=lambda i: {"name": _u("renamed")}),
    Attempt("delete member", "DELETE", "/v1/concepts/{concept_id}", {"concept_id": "c_priv"}),
    Attempt("delete member 2", "DELETE", "/v1/concepts/{concept_id}",
            {"concept_id": "c_priv2"}),
    Attempt("retire snapshot stimuli, retag", "PATCH", "/v1/concepts/{concept_id}",
            {"concept_id": "c_priv"}, may=ALPHA_WRITERS,
            json=lambda i: {"retire_stimuli": i["stimuli_priv"], "tags": [_u("t")],
                            "description": _u("d")}),
    Attempt("add stimuli", "PATCH", "/v1/concepts/{concept_id}", {"concept_id": "c_priv2"},
            may=ALPHA_WRITERS,
            json=lambda i: {"add_stimuli": [{"text": _u("new stimulus"), "source": "human"}]}),
    Attempt("concept with a member's name", "POST", "/v1/concepts", may=WRITERS - ALPHA_WRITERS,
            json=lambda i: {"name": i["name_priv"]}),
    Attempt("bulk with a member's name", "POST", "/v1/concepts:bulk",
            may=WRITERS - ALPHA_WRITERS, json=lambda i: [{"name": i["name_priv2"]}]),
    # its vectors, model and recipe
    Attempt("overwrite atoms", "POST", "/v1/models/{model_id}/vectors", {"model_id": "model"},
            query=RECIPE_Q, content=lambda i: _vectors(i, [("c_priv", 0), ("c_priv2", 1)])),
    Attempt("new atom + overwritten atom", "POST", "/v1/models/{model_id}/vectors",
            {"model_id": "model"}, query=RECIPE_Q,
            content=lambda i: _vectors(i, [("c_priv", 3), ("c_priv2", 0)])),
    Attempt("atom at a new layer", "POST", "/v1/models/{model_id}/vectors",
            {"model_id": "model"}, query=RECIPE_Q, may=ALPHA_WRITERS,
            content=lambda i: _vectors(i, [("c_priv2", 2)])),
    Attempt("delete model", "DELETE", "/v1/models/{model_id}", {"model_id": "model"}),
    Attempt("delete recipe", "DELETE", "/v1/recipes/{recipe_id}", {"recipe_id": "recipe"}),
    Attempt("same model again", "POST", "/v1/models", json=lambda i: {"hf_id": "t/used", **MODEL}),
    Attempt("same recipe again", "POST", "/v1/recipes", may=WRITERS,
            json=lambda i: {**RECIPE, "code_version": "used"}),
    Attempt("another model", "POST", "/v1/models", may=WRITERS,
            json=lambda i: {"hf_id": _u("t/other"), **MODEL}),
    # its partition and labels
    Attempt("override labels", "POST", "/v1/partitions/{partition_id}/overrides",
            {"partition_id": "partition"}, may=ALPHA_WRITERS,
            json=lambda i: {"labels": [{"concept_id": i["c_priv"], "label": "benign"}]}),
    Attempt("new partition version", "POST", "/v1/partitions", may=ALPHA_WRITERS,
            json=lambda i: {"task_id": i["task"], "concept_set_version_id": i["v_priv"],
                            "labels": [{"concept_id": i["c_priv2"], "label": "undesirable",
                                        "labeler": HUMAN}]}),
    Attempt("delete task", "DELETE", "/v1/tasks/{task_id}", {"task_id": "task"}),
    Attempt("edit task", "PATCH", "/v1/tasks/{task_id}", {"task_id": "task"},
            may=ALPHA_WRITERS, json=lambda i: {"description": _u("goal")}),
    Attempt("task with its name", "POST", "/v1/tasks", may=WRITERS - ALPHA_WRITERS,
            json=lambda i: {"name": i["task_name"]}),
    # its dictionary
    Attempt("rebuild dictionary", "POST", "/v1/dictionaries",
            may=frozenset({"alpha_admin", "alpha_write", "alpha_read"}),
            json=lambda i: {"concept_set_version_id": i["v_priv"], "model_id": i["model"],
                            "layers": list(LAYERS), "recipe_id": i["recipe"],
                            "partition_id": i["partition"]}),
    # its set: new drafts, forks and metadata are allowed, the published version stays
    Attempt("edit set", "PATCH", "/v1/concept-sets/{set_id}", {"set_id": "set_priv"},
            may=ALPHA_WRITERS, json=lambda i: {"description": _u("d")}),
    Attempt("set with its name", "POST", "/v1/concept-sets", may=WRITERS - ALPHA_WRITERS,
            json=lambda i: {"name": i["set_name"]}),
    Attempt("new draft from it", "POST", "/v1/concept-sets/{set_id}/versions",
            {"set_id": "set_priv"}, may=ALPHA_WRITERS, json=lambda i: {"from_version": 1}),
    Attempt("fork it", "POST", "/v1/concept-sets/{set_id}/fork", {"set_id": "set_priv"},
            may=ALPHA_WRITERS, json=lambda i: {"name": _u("fork")}),
    Attempt("edit the draft", "POST", "/v1/concept-set-versions/{version_id}/concepts",
            {"version_id": "v_priv_draft"}, may=ALPHA_WRITERS,
            json=lambda i: {"concept_ids": [i["c_free"]]}),
    Attempt("delete the draft", "DELETE", "/v1/concept-set-versions/{version_id}",
            {"version_id": "v_priv_draft"}, may=ALPHA_WRITERS),
    Attempt("delete a non-member", "DELETE", "/v1/concepts/{concept_id}",
            {"concept_id": "c_free"}, may=ALPHA_WRITERS),
    # keys: not part of the version, in the storm so that every operation is
    Attempt("new key", "POST", "/v1/keys", may=ADMINS, json=lambda i: {"role": "read"}),
    Attempt("revoke a key", "DELETE", "/v1/keys/{key_id}", {"key_id": "key_alpha_spare"},
            may=frozenset({"alpha_admin"})),
]  # fmt: skip


def _storm_ids(client: Any, world: World) -> dict[str, Any]:
    ids = dict(world.ids)
    h = auth(world.keys["alpha_admin"])
    concept = client.get(f"/v1/concepts/{ids['c_priv']}", headers=h).json()
    ids["stimuli_priv"] = [s["id"] for s in concept["stimuli"]]
    ids["name_priv"] = concept["name"]
    ids["name_priv2"] = client.get(f"/v1/concepts/{ids['c_priv2']}", headers=h).json()["name"]
    ids["task_name"] = client.get(f"/v1/tasks/{ids['task']}", headers=h).json()["name"]
    ids["set_name"] = client.get(f"/v1/concept-sets/{ids['set_priv']}", headers=h).json()["name"]
    return ids


def _request(attempt: Attempt, ids: dict[str, Any], key: str) -> dict[str, Any]:
    headers = auth(key)
    kwargs: dict[str, Any] = {"headers": headers}
    if attempt.query is not None:
        kwargs["params"] = attempt.query(ids)
    if attempt.content is not None:
        kwargs["content"] = attempt.content(ids)
        headers["Content-Type"] = "application/octet-stream"
    elif attempt.json is not None:
        kwargs["json"] = attempt.json(ids)
    path = attempt.path.format(**{k: ids[v] for k, v in attempt.params.items()})
    return {"method": attempt.method, "url": path, **kwargs}


def _judge(attempt: Attempt, role: str, status: int) -> str | None:
    """Why this answer is wrong, or None."""
    if status >= 500:
        return f"{attempt.name} as {role}: {status}"
    if role not in attempt.may and not 400 <= status < 500:
        return f"{attempt.name} as {role}: {status}, expected a 4xx"
    return None


def test_storm_leaves_a_published_version_unchanged(
    client: Any, app: Any, live_service: tuple[str, str], database_url: str, settings: Any
) -> None:
    world = make_world(client, app)
    libpq = "postgresql://" + database_url.split("://", 1)[1]
    before = snapshot(client, world, libpq, settings.blob_dir)
    ids = _storm_ids(client, world)
    schema = app.openapi()
    mutating = {
        (m.upper(), path)
        for path, item in schema["paths"].items()
        for m in item
        if m in {"post", "put", "patch", "delete"} and path not in READ_POSTS
    }
    assert {(a.method, a.path) for a in ATTEMPTS} >= mutating, "an edit is missing"

    wrong: list[str] = []
    answers: Counter[tuple[str, int]] = Counter()
    succeeded: set[str] = set()
    # 1. in order: every attempt by every role
    for attempt in ATTEMPTS:
        for role in ROLES:
            response = client.request(**_request(attempt, ids, world.keys[role]))
            answers[(role, response.status_code)] += 1
            if response.status_code < 300:
                succeeded.add(attempt.name)
                if attempt.name == "rebuild dictionary":  # same inputs, same bytes
                    assert response.status_code == 200
                    assert response.json()["hash"] == ids["dict_priv"]
            if (why := _judge(attempt, role, response.status_code)) is not None:
                wrong.append(f"{why}: {response.text[:200]}")
    assert wrong == []
    assert succeeded == {a.name for a in ATTEMPTS if a.may}, "an allowed edit never ran"

    # 2. concurrently: three rounds of every (attempt, role), shuffled, 8 threads
    base_url = live_service[0]
    jobs = [(a, r) for a in ATTEMPTS for r in ROLES] * 3
    random.Random(6).shuffle(jobs)

    def run(job: tuple[Attempt, str], http: httpx.Client) -> tuple[Attempt, str, int, str]:
        attempt, role = job
        response = http.request(**_request(attempt, ids, world.keys[role]))
        return attempt, role, response.status_code, response.text[:200]

    with httpx.Client(base_url=base_url, timeout=60) as http, ThreadPoolExecutor(8) as pool:
        for attempt, role, status, text in pool.map(lambda j: run(j, http), jobs):
            answers[(role, status)] += 1
            if (why := _judge(attempt, role, status)) is not None:
                wrong.append(f"{why}: {text}")
    assert wrong == []

    after = snapshot(client, world, libpq, settings.blob_dir)
    assert {k for k in before if before[k] != after[k]} == set()
    assert after == before
    total = sum(answers.values())
    assert total == len(ATTEMPTS) * len(ROLES) * 4
    print(f"storm: {total} attempts; by role and status: {sorted(answers.items())}")


def test_direct_sql_cannot_change_what_a_published_version_comprises(
    client: Any, app: Any, database_url: str
) -> None:
    """The database refuses (SQLSTATE PC409) what the API refuses, for anyone with SQL."""
    world = make_world(client, app)
    i = world.ids
    libpq = "postgresql://" + database_url.split("://", 1)[1]
    refused = [
        ("UPDATE concepts SET name = 'x' WHERE id = %s", i["c_priv"]),
        ("UPDATE stimuli SET text = 'x' WHERE concept_id = %s", i["c_priv"]),
        ("DELETE FROM stimuli WHERE concept_id = %s", i["c_priv"]),
        ("UPDATE partitions SET provenance = '{}' WHERE id = %s", i["partition"]),
        ("DELETE FROM partitions WHERE id = %s", i["partition"]),
        ("DELETE FROM tasks WHERE id = %s", i["task"]),
        ("UPDATE labels SET label = 'benign' WHERE partition_id = %s", i["partition"]),
        ("DELETE FROM labels WHERE partition_id = %s", i["partition"]),
        ("UPDATE atoms SET layer = layer WHERE concept_id = %s", i["c_priv"]),
        ("DELETE FROM atoms WHERE concept_id = %s", i["c_priv"]),
        ("DELETE FROM models WHERE id = %s", i["model"]),
        ("DELETE FROM recipes WHERE id = %s", i["recipe"]),
    ]
    allowed = [  # the live parts of a member, and rows of drafts
        ("UPDATE concepts SET description = 'live', tags = '{t}' WHERE id = %s", i["c_priv"]),
        ("UPDATE stimuli SET retired_at = now() WHERE concept_id = %s", i["c_priv"]),
        ("UPDATE stimuli SET retired_at = NULL WHERE concept_id = %s", i["c_priv"]),
        ("UPDATE concepts SET name = 'renamed' WHERE id = %s", i["c_free"]),
        ("DELETE FROM atoms WHERE concept_id = %s", i["c_free"]),
        ("DELETE FROM tasks WHERE id = %s", i["task_empty"]),
    ]
    with psycopg.connect(libpq, autocommit=True) as conn:
        for statement, arg in refused:
            try:
                conn.execute(statement, (arg,))
            except psycopg.Error as exc:
                assert exc.sqlstate == "PC409", (statement, exc)
            else:
                raise AssertionError(f"not refused: {statement}")
        for statement, arg in allowed:
            conn.execute(statement, (arg,))
