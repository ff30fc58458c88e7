"""Isolation matrix: every operation of the OpenAPI schema x every kind of caller.

Callers: no key, a wrong key, alpha's read / write / admin keys, and beta's write and
admin keys (another namespace). Targets are alpha's private resources, alpha's public
set (and what it holds), global models and recipes, and beta's own task. Each case
asserts the exact status in both directions (refused where it must be, allowed where
it must be), and that no response to beta contains any of alpha's private text and no
response contains any key's secret. ``test_matrix_covers_the_schema`` fails when an
endpoint is added without a row here.

Rules checked (docs/api.md, "Authentication and authorization"): 401 without a valid
key; 403 for a role too low; 404 for another namespace's private resource (its
existence is not leaked); 403 for a write to another namespace's *readable* resource
(a public set or concept); models and recipes are global (admin of any namespace may
delete an unused one; one in use is 409).

Reads, and writes that must be refused, share one clone of the seeded database (a
refused write must leave every table's fingerprint as it was); writes that must
succeed each run on a fresh clone.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from helpers import auth
from isolation_support import HIDDEN, PRIVATE_MARK, World, make_world
from psycopg import sql
from vectors_support import upload_body

AUTHED = ("alpha_read", "alpha_write", "alpha_admin", "beta_write", "beta_admin")
CALLERS = ("no_key", "wrong_key", *AUTHED)
WRONG_KEY = "pace_" + "x" * 43
SAFE_METHODS = {"GET"}
_clones = itertools.count()


def own_read(ok: int = 200) -> dict[str, int]:
    """Alpha's private resource, read: alpha's keys succeed, beta's get 404."""
    return {"alpha_read": ok, "alpha_write": ok, "alpha_admin": ok, "beta_write": 404,
            "beta_admin": 404}  # fmt: skip


def own_write(ok: int = 200, *, alpha: int | None = None) -> dict[str, int]:
    """Alpha's private resource, written: read key 403, beta 404."""
    got = alpha if alpha is not None else ok
    return {"alpha_read": 403, "alpha_write": got, "alpha_admin": got, "beta_write": 404,
            "beta_admin": 404}  # fmt: skip


def public_write(ok: int = 200) -> dict[str, int]:
    """Alpha's public (readable) resource, written: read key 403, beta 403."""
    return {"alpha_read": 403, "alpha_write": ok, "alpha_admin": ok, "beta_write": 403,
            "beta_admin": 403}  # fmt: skip


def everyone(ok: int = 200) -> dict[str, int]:
    """Readable by every key (global, public, or the caller's own)."""
    return dict.fromkeys(AUTHED, ok)


def writers(ok: int = 201) -> dict[str, int]:
    """Creates in the caller's own namespace (or a global row): any write key."""
    return {"alpha_read": 403, "alpha_write": ok, "alpha_admin": ok, "beta_write": ok,
            "beta_admin": ok}  # fmt: skip


def admins(ok: int, *, beta_admin: int) -> dict[str, int]:
    """Admin only; ``beta_admin`` says what another namespace's admin gets."""
    return {"alpha_read": 403, "alpha_write": 403, "alpha_admin": ok, "beta_write": 403,
            "beta_admin": beta_admin}  # fmt: skip


def _vectors_body(ids: dict[str, Any], concept: str) -> bytes:
    vec = np.full((1, HIDDEN), 0.25, np.float32)
    return upload_body(vec, [ids[concept]], 3)


@dataclass(frozen=True)
class Op:
    """One operation aimed at one target: request parts may name world ids as ``@name``."""

    method: str
    path: str
    target: str
    expect: dict[str, int]
    params: dict[str, str] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    content: Callable[[dict[str, Any]], bytes] | None = None
    check: Callable[[World, str, Any], None] | None = None


def _no_alpha_keys(world: World, caller: str, response: Any) -> None:
    if caller.startswith("beta") and response.status_code == 200:
        alpha = {v for k, v in world.ids.items() if k.startswith("key_alpha")}
        assert not alpha & {item["id"] for item in response.json()["items"]}


def _present_only_readable(world: World, caller: str, response: Any) -> None:
    if caller.startswith("beta"):
        assert response.json()["present"] == [world.ids["c_pub"]]


def _nearest_only_readable(world: World, caller: str, response: Any) -> None:
    found = {r["concept_id"] for r in response.json()["results"]}
    if caller.startswith("beta"):
        assert found == {world.ids["c_pub"]}
    else:
        assert {world.ids["c_priv"], world.ids["c_pub"]} <= found


def _own_namespace(world: World, caller: str, response: Any) -> None:
    assert response.json()["namespace"] == caller.split("_")[0]


DICT = {"model_id": "@model", "layers": [0, 1], "recipe_id": "@recipe"}
LABEL = {"label": "benign", "labeler": {"kind": "human", "name": "t"}}
NEAR = {"model_id": "@model", "layer": 0, "recipe_id": "@recipe", "vector": "@vector_query"}

OPS: list[Op] = [
    # me and keys
    Op("GET", "/v1/me", "-", everyone(), check=_own_namespace),
    Op("POST", "/v1/keys", "-", admins(201, beta_admin=201), json={"role": "read"},
       check=_own_namespace),
    Op("GET", "/v1/keys", "-", admins(200, beta_admin=200), check=_no_alpha_keys),
    Op("DELETE", "/v1/keys/{key_id}", "alpha key", admins(200, beta_admin=404),
       {"key_id": "@key_alpha_spare"}),
    # models and recipes: global
    Op("POST", "/v1/models", "-", writers(),
       json={"hf_id": "t/new", "hidden_size": 8, "num_layers": 2, "architecture": "X"}),
    Op("GET", "/v1/models", "-", everyone()),
    Op("GET", "/v1/models/{model_id}", "global", everyone(), {"model_id": "@model"}),
    Op("DELETE", "/v1/models/{model_id}", "unused", admins(204, beta_admin=204),
       {"model_id": "@model_unused"}),
    Op("DELETE", "/v1/models/{model_id}", "in use", admins(409, beta_admin=409),
       {"model_id": "@model"}),
    Op("POST", "/v1/recipes", "-", writers(),
       json={"token_position": "mean", "reduction": "pc1", "prompt_template": "{stimulus}",
             "code_version": "new"}),
    Op("GET", "/v1/recipes", "-", everyone()),
    Op("GET", "/v1/recipes/{recipe_id}", "global", everyone(), {"recipe_id": "@recipe"}),
    Op("DELETE", "/v1/recipes/{recipe_id}", "unused", admins(204, beta_admin=204),
       {"recipe_id": "@recipe_unused"}),
    Op("DELETE", "/v1/recipes/{recipe_id}", "in use", admins(409, beta_admin=409),
       {"recipe_id": "@recipe"}),
    # concepts
    Op("POST", "/v1/concepts", "-", writers(), json={"name": "new-concept"}),
    Op("POST", "/v1/concepts:bulk", "-", writers(), json=[{"name": "bulk-1"}]),
    Op("GET", "/v1/concepts", "own", everyone()),
    Op("GET", "/v1/concepts", "private version", own_read(),
       query={"concept_set_version_id": "@v_priv"}),
    Op("GET", "/v1/concepts", "public version", everyone(),
       query={"concept_set_version_id": "@v_pub"}),
    Op("GET", "/v1/concepts/{concept_id}", "private", own_read(), {"concept_id": "@c_priv"}),
    Op("GET", "/v1/concepts/{concept_id}", "public", everyone(), {"concept_id": "@c_pub"}),
    Op("PATCH", "/v1/concepts/{concept_id}", "private", own_write(),
       {"concept_id": "@c_free"}, json={"description": "edited"}),
    Op("PATCH", "/v1/concepts/{concept_id}", "public", public_write(),
       {"concept_id": "@c_pub"}, json={"description": "edited"}),
    Op("DELETE", "/v1/concepts/{concept_id}", "private free", own_write(204),
       {"concept_id": "@c_free"}),
    Op("DELETE", "/v1/concepts/{concept_id}", "private published", own_write(409),
       {"concept_id": "@c_priv"}),
    Op("DELETE", "/v1/concepts/{concept_id}", "public published", public_write(409)
       | {"beta_write": 403, "beta_admin": 403}, {"concept_id": "@c_pub"}),
    # concept sets
    Op("POST", "/v1/concept-sets", "-", writers(), json={"name": "new-set"}),
    Op("GET", "/v1/concept-sets", "-", everyone()),
    Op("GET", "/v1/concept-sets/{set_id}", "private", own_read(), {"set_id": "@set_priv"}),
    Op("GET", "/v1/concept-sets/{set_id}", "public", everyone(), {"set_id": "@set_pub"}),
    Op("PATCH", "/v1/concept-sets/{set_id}", "private", own_write(), {"set_id": "@set_priv"},
       json={"description": "edited"}),
    Op("PATCH", "/v1/concept-sets/{set_id}", "public", public_write(), {"set_id": "@set_pub"},
       json={"description": "edited"}),
    Op("DELETE", "/v1/concept-sets/{set_id}", "private drafts only", own_write(204),
       {"set_id": "@set_draft_only"}),
    Op("DELETE", "/v1/concept-sets/{set_id}", "private published", own_write(409),
       {"set_id": "@set_priv"}),
    Op("DELETE", "/v1/concept-sets/{set_id}", "public published", public_write(409),
       {"set_id": "@set_pub"}),
    Op("POST", "/v1/concept-sets/{set_id}/fork", "private", own_write(201),
       {"set_id": "@set_priv"}, json={"name": "fork"}),
    Op("POST", "/v1/concept-sets/{set_id}/fork", "public", writers(), {"set_id": "@set_pub"},
       json={"name": "fork"}),
    Op("POST", "/v1/concept-sets/{set_id}/versions", "private", own_write(201),
       {"set_id": "@set_priv"}, json={}),
    Op("POST", "/v1/concept-sets/{set_id}/versions", "public", public_write(201),
       {"set_id": "@set_pub"}, json={}),
    Op("GET", "/v1/concept-sets/{set_id}/versions", "private", own_read(),
       {"set_id": "@set_priv"}),
    Op("GET", "/v1/concept-sets/{set_id}/versions", "public", everyone(),
       {"set_id": "@set_pub"}),
    Op("GET", "/v1/concept-sets/{set_id}/versions/{ref}", "private", own_read(),
       {"set_id": "@set_priv", "ref": "published"}),
    Op("GET", "/v1/concept-sets/{set_id}/versions/{ref}", "public", everyone(),
       {"set_id": "@set_pub", "ref": "1"}),
    # versions
    Op("GET", "/v1/concept-set-versions/{version_id}", "private", own_read(),
       {"version_id": "@v_priv"}),
    Op("GET", "/v1/concept-set-versions/{version_id}", "public", everyone(),
       {"version_id": "@v_pub"}),
    Op("DELETE", "/v1/concept-set-versions/{version_id}", "private draft", own_write(204),
       {"version_id": "@v_priv_draft"}),
    Op("DELETE", "/v1/concept-set-versions/{version_id}", "private published", own_write(409),
       {"version_id": "@v_priv"}),
    Op("DELETE", "/v1/concept-set-versions/{version_id}", "public draft", public_write(204),
       {"version_id": "@v_pub_draft"}),
    Op("DELETE", "/v1/concept-set-versions/{version_id}", "public published", public_write(409),
       {"version_id": "@v_pub"}),
    Op("POST", "/v1/concept-set-versions/{version_id}/concepts", "private draft", own_write(),
       {"version_id": "@v_priv_draft"}, json={"concept_ids": ["@c_free"]}),
    Op("POST", "/v1/concept-set-versions/{version_id}/concepts", "private published",
       own_write(409), {"version_id": "@v_priv"}, json={"concept_ids": ["@c_free"]}),
    Op("POST", "/v1/concept-set-versions/{version_id}/concepts", "public draft", public_write(),
       {"version_id": "@v_pub_draft"}, json={"concept_ids": ["@c_pub_extra"]}),
    Op("DELETE", "/v1/concept-set-versions/{version_id}/concepts", "private draft", own_write(),
       {"version_id": "@v_priv_draft"}, json={"concept_ids": ["@c_priv"]}),
    Op("DELETE", "/v1/concept-set-versions/{version_id}/concepts", "public published",
       public_write(409), {"version_id": "@v_pub"}, json={"concept_ids": ["@c_pub"]}),
    Op("POST", "/v1/concept-set-versions/{version_id}/concepts:remove", "private draft",
       own_write(), {"version_id": "@v_priv_draft"}, json={"concept_ids": ["@c_priv"]}),
    Op("POST", "/v1/concept-set-versions/{version_id}/concepts:remove", "private published",
       own_write(409), {"version_id": "@v_priv"}, json={"concept_ids": ["@c_priv"]}),
    Op("POST", "/v1/concept-set-versions/{version_id}/concepts:remove", "public draft",
       public_write(), {"version_id": "@v_pub_draft"}, json={"concept_ids": ["@c_pub"]}),
    Op("POST", "/v1/concept-set-versions/{version_id}/publish", "private draft", own_write(),
       {"version_id": "@v_priv_draft"}),
    Op("POST", "/v1/concept-set-versions/{version_id}/publish", "public draft", public_write(),
       {"version_id": "@v_pub_draft"}),
    Op("POST", "/v1/concept-set-versions/{version_id}/publish", "public published",
       public_write(409), {"version_id": "@v_pub"}),
    Op("GET", "/v1/concept-set-versions/{a}/diff/{b}", "private", own_read(),
       {"a": "@v_priv", "b": "@v_priv_draft"}),
    Op("GET", "/v1/concept-set-versions/{a}/diff/{b}", "public to private", own_read(),
       {"a": "@v_pub", "b": "@v_priv"}),
    Op("GET", "/v1/concept-set-versions/{a}/diff/{b}", "public", everyone(),
       {"a": "@v_pub", "b": "@v_pub_draft"}),
    Op("GET", "/v1/concept-set-versions/{version_id}/lineage", "private", own_read(),
       {"version_id": "@v_priv_draft"}),
    Op("GET", "/v1/concept-set-versions/{version_id}/lineage", "public", everyone(),
       {"version_id": "@v_pub_draft"}),
    # tasks and partitions: always private
    Op("POST", "/v1/tasks", "-", writers(), json={"name": "new-task"}),
    Op("GET", "/v1/tasks", "-", everyone()),
    Op("GET", "/v1/tasks/{task_id}", "private", own_read(), {"task_id": "@task"}),
    Op("GET", "/v1/tasks/{task_id}", "beta's", {"alpha_read": 404, "alpha_write": 404,
       "alpha_admin": 404, "beta_write": 200, "beta_admin": 200}, {"task_id": "@task_beta"}),
    Op("PATCH", "/v1/tasks/{task_id}", "private", own_write(), {"task_id": "@task"},
       json={"description": "edited"}),
    Op("DELETE", "/v1/tasks/{task_id}", "private", own_write(204), {"task_id": "@task_empty"}),
    Op("DELETE", "/v1/tasks/{task_id}", "labels a published version", own_write(409),
       {"task_id": "@task"}),
    Op("POST", "/v1/partitions", "private", own_write(201),
       json={"task_id": "@task", "concept_set_version_id": "@v_priv",
             "labels": [{"concept_id": "@c_priv", **LABEL}]}),
    Op("POST", "/v1/partitions", "beta's task over public version",
       {"alpha_read": 403, "alpha_write": 404, "alpha_admin": 404, "beta_write": 201,
        "beta_admin": 201},
       json={"task_id": "@task_beta", "concept_set_version_id": "@v_pub",
             "labels": [{"concept_id": "@c_pub", **LABEL}]}),
    Op("POST", "/v1/partitions", "beta's task over private version",
       {"alpha_read": 403, "alpha_write": 404, "alpha_admin": 404, "beta_write": 404,
        "beta_admin": 404},
       json={"task_id": "@task_beta", "concept_set_version_id": "@v_priv", "labels": []}),
    Op("GET", "/v1/partitions", "-", everyone()),
    Op("GET", "/v1/partitions", "private task", own_read(), query={"task_id": "@task"}),
    Op("GET", "/v1/partitions", "private version", own_read(),
       query={"concept_set_version_id": "@v_priv"}),
    Op("GET", "/v1/partitions/latest", "private", own_read(), query={"task_id": "@task"}),
    Op("GET", "/v1/partitions/{partition_id}", "private", own_read(),
       {"partition_id": "@partition"}),
    Op("POST", "/v1/partitions/{partition_id}/overrides", "private", own_write(201),
       {"partition_id": "@partition"}, json={"labels": [{"concept_id": "@c_priv", **LABEL}]}),
    # vectors, dictionaries, search
    Op("POST", "/v1/models/{model_id}/vectors", "private concept", own_write(),
       {"model_id": "@model"}, query={"recipe_id": "@recipe"},
       content=lambda ids: _vectors_body(ids, "c_priv")),
    Op("POST", "/v1/models/{model_id}/vectors", "public concept", public_write(),
       {"model_id": "@model"}, query={"recipe_id": "@recipe"},
       content=lambda ids: _vectors_body(ids, "c_pub")),
    Op("POST", "/v1/models/{model_id}/vectors:present", "mixed", everyone(),
       {"model_id": "@model"},
       json={"recipe_id": "@recipe", "layers": [0], "concept_ids": ["@c_priv", "@c_pub"]},
       check=_present_only_readable),
    Op("POST", "/v1/dictionaries", "private", own_read(),
       json={"concept_set_version_id": "@v_priv", "partition_id": "@partition", **DICT}),
    Op("POST", "/v1/dictionaries", "public", everyone(),
       json={"concept_set_version_id": "@v_pub", **DICT}),
    Op("GET", "/v1/dictionaries/{content_hash}", "private", own_read(),
       {"content_hash": "@dict_priv"}),
    Op("GET", "/v1/dictionaries/{content_hash}", "public", everyone(),
       {"content_hash": "@dict_pub"}),
    Op("POST", "/v1/search/nearest", "readable", everyone(), json={**NEAR, "exact": True},
       check=_nearest_only_readable),
    Op("POST", "/v1/search/nearest", "private version", own_read(),
       json={**NEAR, "concept_set_version_id": "@v_priv"}),
    Op("POST", "/v1/search/nearest", "private partition", own_read(),
       json={**NEAR, "partition_id": "@partition"}),
    Op("POST", "/v1/search/nearest", "private task", own_read(),
       json={**NEAR, "concept_set_version_id": "@v_priv", "task_id": "@task"}),
    Op("POST", "/v1/search/nearest", "public version", everyone(),
       json={**NEAR, "concept_set_version_id": "@v_pub"}),
]  # fmt: skip

# Reads that are POSTs: they change nothing, so they share the read-only clone.
READ_POSTS = {
    "/v1/models/{model_id}/vectors:present",
    "/v1/dictionaries",
    "/v1/search/nearest",
}


def _resolve(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("@"):
        return ids[value[1:]]
    if isinstance(value, dict):
        return {k: _resolve(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, ids) for v in value]
    return value


def _headers(world: World, caller: str) -> dict[str, str]:
    if caller == "no_key":
        return {}
    if caller == "wrong_key":
        return auth(WRONG_KEY)
    return auth(world.keys[caller])


def expected(op: Op, caller: str) -> int:
    """The status ``caller`` must get for ``op``."""
    return 401 if caller in ("no_key", "wrong_key") else op.expect[caller]


def call(client: Any, world: World, op: Op, caller: str) -> Any:
    """Make the request of ``op`` as ``caller``."""
    ids = world.ids
    path = op.path.format(**{k: _resolve(v, ids) for k, v in op.params.items()})
    headers = _headers(world, caller)
    kwargs: dict[str, Any] = {"params": _resolve(op.query, ids), "headers": headers}
    if op.content is not None:
        kwargs["content"] = op.content(ids)
        headers["Content-Type"] = "application/octet-stream"
    elif op.json is not None:
        kwargs["json"] = _resolve(op.json, ids)
    return client.request(op.method, path, **kwargs)


# --------------------------------------------------------------------------- fixtures


@dataclass
class Seeded:
    """The seeded template database and its data dir (dictionary blobs)."""

    admin_url: str
    pg: Any
    name: str
    data_dir: Path
    world: World


def _clone(seeded: Seeded, name: str) -> str:
    with psycopg.connect(seeded.admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(seeded.name)
            )
        )
    url: str = seeded.pg.url(name)
    return url


def _drop(seeded: Seeded, name: str) -> None:
    with psycopg.connect(seeded.admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="module")
def seeded(
    pg_server: Any, template_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Seeded]:
    """Alpha's and beta's world, built once over HTTP, kept as a template database."""
    from fastapi.testclient import TestClient

    from pace_service.core.config import Settings
    from pace_service.main import create_app

    name = f"iso_seed_{next(_clones)}"
    admin_url = pg_server.libpq_url()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE pace_template").format(sql.Identifier(name))
        )
    data_dir = tmp_path_factory.mktemp("iso") / "pace-data"
    app = create_app(Settings(database_url=pg_server.url(name), data_dir=data_dir))
    with TestClient(app) as client:
        world = make_world(client, app)
    app.state.engine.dispose()
    out = Seeded(admin_url=admin_url, pg=pg_server, name=name, data_dir=data_dir, world=world)
    yield out
    _drop(out, name)


@contextmanager
def _app_client(seeded: Seeded, url: str, data_dir: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from pace_service.core.config import Settings
    from pace_service.main import create_app

    app = create_app(Settings(database_url=url, data_dir=data_dir))
    try:
        with TestClient(app) as client:
            yield client
    finally:
        app.state.engine.dispose()


@dataclass
class Shared:
    """One clone for every case that must change nothing, and a way to fingerprint it."""

    client: Any
    conn: psycopg.Connection[Any]
    query: sql.Composable
    data_dir: Path

    def fingerprint(self) -> dict[str, str]:
        """md5 of every table's rows (sorted), by table, and the data dir's files."""
        out = {str(name): str(digest) for name, digest in self.conn.execute(self.query)}
        out["files"] = str(sorted(str(p) for p in self.data_dir.rglob("*")))
        return out


def _fingerprint_query(conn: psycopg.Connection[Any]) -> sql.Composable:
    tables = [
        r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    ]
    return sql.SQL(" UNION ALL ").join(
        sql.SQL(
            "SELECT {}, md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {} x"
        ).format(sql.Literal(t), sql.Identifier(t))
        for t in sorted(tables)
    )


@contextmanager
def _shared_clone(seeded: Seeded, data_dir: Path) -> Iterator[Shared]:
    name = f"iso_read_{next(_clones)}"
    url = _clone(seeded, name)
    shutil.copytree(seeded.data_dir, data_dir)
    try:
        with (
            _app_client(seeded, url, data_dir) as client,
            psycopg.connect(seeded.pg.libpq_url(name), autocommit=True) as conn,
        ):
            yield Shared(client, conn, _fingerprint_query(conn), data_dir)
    finally:
        _drop(seeded, name)


@pytest.fixture(scope="module")
def shared(seeded: Seeded, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """A client on one clone for reads and for the writes that must be refused."""
    with _shared_clone(seeded, tmp_path_factory.mktemp("iso-read") / "pace-data") as out:
        yield out


@contextmanager
def fresh_client(seeded: Seeded, data_dir: Path) -> Iterator[Any]:
    """A client on a fresh clone of the seeded database, dropped afterwards."""
    name = f"iso_w_{next(_clones)}"
    url = _clone(seeded, name)
    try:
        with _app_client(seeded, url, data_dir) as client:
            yield client
    finally:
        _drop(seeded, name)


def _changes_nothing(op: Op) -> bool:
    return op.method in SAFE_METHODS or op.path in READ_POSTS


# ------------------------------------------------------------------------------ tests

CASES = [
    pytest.param(op, caller, id=f"{op.method} {op.path} [{op.target}] as {caller}")
    for op in OPS
    for caller in CALLERS
]


@pytest.mark.parametrize(("op", "caller"), CASES)
def test_isolation(op: Op, caller: str, seeded: Seeded, shared: Shared, tmp_path: Path) -> None:
    world = seeded.world
    want = expected(op, caller)
    if _changes_nothing(op):
        response = call(shared.client, world, op, caller)
    elif want >= 400:
        # refused: run on the shared clone and prove that nothing at all was written
        before = shared.fingerprint()
        response = call(shared.client, world, op, caller)
        after = shared.fingerprint()
        assert {t for t in before if before[t] != after[t]} == set(), "a refused call wrote"
    else:
        with fresh_client(seeded, tmp_path / "pace-data") as client:
            response = call(client, world, op, caller)
    assert response.status_code == want, response.text[:500]
    if want >= 400:
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}
        code = {401: "unauthenticated", 403: "forbidden", 404: "not_found"}.get(want)
        if code is not None:
            assert body["error"]["code"] == code, body
    raw = response.content
    if caller.startswith("beta"):
        assert PRIVATE_MARK.encode() not in raw, "alpha's private text reached beta"
    for secret in world.keys.values():
        assert secret.encode() not in raw
        assert all(secret not in v for v in response.headers.values())
    if op.check is not None and want < 400:
        op.check(world, caller, response)


def test_matrix_covers_the_schema() -> None:
    """Every operation of the OpenAPI schema has a row, and every row is an operation."""
    from pace_service.core.config import Settings
    from pace_service.main import create_app

    app = create_app(Settings(database_url="postgresql://nobody@localhost/none"))
    schema = app.openapi()
    operations = {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    app.state.engine.dispose()
    assert {(op.method, op.path) for op in OPS} == operations
    assert all(set(op.expect) == set(AUTHED) for op in OPS)


def test_fingerprint_sees_writes(seeded: Seeded, tmp_path: Path) -> None:
    """The refused-write check can fail: a row written, or a blob file, shows up."""
    with _shared_clone(seeded, tmp_path / "pace-data") as probe:
        before = probe.fingerprint()
        op = Op("PATCH", "/v1/tasks/{task_id}", "-", {}, {"task_id": "@task"},
                json={"description": "changed"})  # fmt: skip
        assert call(probe.client, seeded.world, op, "alpha_write").status_code == 200
        (probe.data_dir / "blobs" / "stray").write_bytes(b"x")
        after = probe.fingerprint()
    assert {t for t in before if before[t] != after[t]} == {"tasks", "files"}


def test_repeated_searches_stay_isolated(seeded: Seeded, tmp_path: Path) -> None:
    """The search's fast paths (cached key, guessed index statement) filter by namespace.

    The matrix makes one request per case; this repeats searches per key, JSON and
    binary bodies, indexed and exact, so that the cached and guessed paths serve them.
    """
    world, ids = seeded.world, seeded.world.ids
    vector = np.asarray(ids["vector_query"], np.float32)
    params = {"model_id": ids["model"], "layer": 0, "recipe_id": ids["recipe"]}
    with _shared_clone(seeded, tmp_path / "pace-data") as probe:

        def search(caller: str, *, binary: bool, **extra: Any) -> Any:
            headers = auth(world.keys[caller])
            if binary:
                headers["Content-Type"] = "application/octet-stream"
                return probe.client.post(
                    "/v1/search/nearest",
                    params={**params, **extra},
                    content=vector.tobytes(),
                    headers=headers,
                )
            body = {**params, **extra, "vector": vector.tolist()}
            return probe.client.post("/v1/search/nearest", json=body, headers=headers)

        for _ in range(3):
            # k=1: a full answer registers the guess that the fast path then uses
            for caller, binary, exact, k in itertools.product(
                ("alpha_read", "beta_write", "beta_admin"), (False, True), (False, True), (1, 10)
            ):
                got = search(caller, binary=binary, exact=exact, k=k)
                assert got.status_code == 200, got.text
                found = {r["concept_id"] for r in got.json()["results"]}
                if caller.startswith("beta"):
                    assert found == {ids["c_pub"]}
                    assert PRIVATE_MARK not in got.text
                    refused = search(caller, binary=binary, concept_set_version_id=ids["v_priv"])
                    assert refused.status_code == 404, refused.text
                else:
                    alpha = {ids["c_priv"], ids["c_priv2"], ids["c_pub"]}
                    assert found <= alpha and len(found) == min(k, 3)


def test_a_revoked_key_is_refused_at_once_everywhere(seeded: Seeded, tmp_path: Path) -> None:
    """Revocation clears the key cache: the next call, even a cached search, is 401."""
    world, ids = seeded.world, seeded.world.ids
    spare = auth(world.keys["alpha_spare"])
    body = {"model_id": ids["model"], "layer": 0, "recipe_id": ids["recipe"], "k": 1}
    body["vector"] = ids["vector_query"]
    with _shared_clone(seeded, tmp_path / "pace-data") as probe:
        client = probe.client
        for _ in range(3):  # warm the key cache and the search's guess
            assert client.post("/v1/search/nearest", json=body, headers=spare).status_code == 200
        admin = auth(world.keys["alpha_admin"])
        revoked = client.delete(f"/v1/keys/{ids['key_alpha_spare']}", headers=admin)
        assert revoked.status_code == 200
        assert client.post("/v1/search/nearest", json=body, headers=spare).status_code == 401
        assert client.get("/v1/me", headers=spare).status_code == 401
        assert client.get(f"/v1/concepts/{ids['c_priv']}", headers=spare).status_code == 401
