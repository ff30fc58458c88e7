"""A seeded world for the isolation and immutability tests (``from isolation_support import ...``).

Namespace ``alpha`` owns one of each resource, made over HTTP with alpha's admin key;
namespace ``beta`` has keys and one task. Every private name, description, stimulus,
rationale and provenance of alpha carries :data:`PRIVATE_MARK`, so a response that
leaks one of them to another namespace is found by a substring search.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from helpers import auth
from vectors_support import upload_body

__all__ = ["HIDDEN", "LAYERS", "PRIVATE_MARK", "World", "make_world"]

PRIVATE_MARK = "zq-private"
HIDDEN = 16
LAYERS = (0, 1)


@dataclass
class World:
    """Ids and secrets of the seeded world (``ids`` by symbolic name, ``keys`` by caller)."""

    ids: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)


def _ok(response: Any, *codes: int) -> Any:
    assert response.status_code in (codes or (200, 201)), (response.status_code, response.text)
    return response.json()


def _key(app: Any, namespace: str, role: str) -> tuple[int, str]:
    from pace_service.store.keys import create_key, get_or_create_namespace

    with app.state.session_factory() as session:
        ns, _ = get_or_create_namespace(session, namespace)
        new = create_key(session, ns, role)
        session.commit()
    return new.id, new.key


def _concept(client: Any, key: str, name: str, texts: list[str]) -> int:
    body = {
        "name": name,
        "description": f"about {name}",
        "stimuli": [{"text": t, "source": "human"} for t in texts],
    }
    concept_id: int = _ok(client.post("/v1/concepts", json=body, headers=auth(key)))["id"]
    return concept_id


def _set_with_versions(
    client: Any, key: str, name: str, public: bool, members: list[int]
) -> tuple[int, int, int]:
    """A set with version 1 published (``members``) and version 2 a draft copy."""
    h = auth(key)
    set_id = _ok(
        client.post(
            "/v1/concept-sets",
            json={"name": name, "description": f"{name} set", "public": public},
            headers=h,
        )
    )["id"]
    v1 = _ok(client.post(f"/v1/concept-sets/{set_id}/versions", json={"empty": True}, headers=h))
    _ok(
        client.post(
            f"/v1/concept-set-versions/{v1['id']}/concepts",
            json={"concept_ids": members},
            headers=h,
        )
    )
    _ok(client.post(f"/v1/concept-set-versions/{v1['id']}/publish", headers=h))
    v2 = _ok(client.post(f"/v1/concept-sets/{set_id}/versions", json={}, headers=h))
    return set_id, v1["id"], v2["id"]


def make_world(client: Any, app: Any) -> World:
    """Seed alpha and beta (see the module docstring); returns the ids and keys."""
    w = World()
    ids = w.ids
    for caller, (ns, role) in {
        "alpha_admin": ("alpha", "admin"),
        "alpha_write": ("alpha", "write"),
        "alpha_read": ("alpha", "read"),
        "alpha_spare": ("alpha", "read"),
        "beta_write": ("beta", "write"),
        "beta_admin": ("beta", "admin"),
    }.items():
        ids[f"key_{caller}"], w.keys[caller] = _key(app, ns, role)
    h = auth(w.keys["alpha_admin"])
    model = {"hidden_size": HIDDEN, "num_layers": 4, "architecture": "LlamaForCausalLM"}
    ids["model"] = _ok(client.post("/v1/models", json={"hf_id": "t/used", **model}, headers=h))[
        "id"
    ]
    ids["model_unused"] = _ok(
        client.post("/v1/models", json={"hf_id": "t/unused", **model}, headers=h)
    )["id"]
    recipe = {"token_position": "last", "reduction": "mean", "prompt_template": "{stimulus}"}
    ids["recipe"] = _ok(
        client.post("/v1/recipes", json={**recipe, "code_version": "used"}, headers=h)
    )["id"]
    ids["recipe_unused"] = _ok(
        client.post("/v1/recipes", json={**recipe, "code_version": "unused"}, headers=h)
    )["id"]

    key = w.keys["alpha_admin"]
    m = PRIVATE_MARK
    ids["c_priv"] = _concept(client, key, f"{m}-a", [f"{m} stimulus a1", f"{m} stimulus a2"])
    ids["c_priv2"] = _concept(client, key, f"{m}-b", [f"{m} stimulus b1"])
    ids["c_free"] = _concept(client, key, f"{m}-free", [f"{m} stimulus f1"])
    ids["c_pub"] = _concept(client, key, "open-concept", ["an open stimulus"])
    ids["c_pub_extra"] = _concept(client, key, "open-extra", ["another open stimulus"])
    ids["set_priv"], ids["v_priv"], ids["v_priv_draft"] = _set_with_versions(
        client, key, f"{m}-set", False, [ids["c_priv"], ids["c_priv2"]]
    )
    ids["set_pub"], ids["v_pub"], ids["v_pub_draft"] = _set_with_versions(
        client, key, "open-set", True, [ids["c_pub"]]
    )
    ids["set_draft_only"] = _ok(
        client.post("/v1/concept-sets", json={"name": f"{m}-drafts"}, headers=h)
    )["id"]

    vectors = np.random.default_rng(0).standard_normal((6, HIDDEN)).astype(np.float32)
    concepts = [ids["c_priv"], ids["c_priv2"], ids["c_pub"]]
    body = upload_body(vectors, [c for c in concepts for _ in LAYERS], [*LAYERS] * 3)
    _ok(
        client.post(
            f"/v1/models/{ids['model']}/vectors",
            params={"recipe_id": ids["recipe"]},
            content=body,
            headers={**h, "Content-Type": "application/octet-stream"},
        )
    )
    ids["vector_query"] = vectors[0].tolist()

    ids["task"] = _ok(
        client.post("/v1/tasks", json={"name": f"{m}-task", "description": m}, headers=h)
    )["id"]
    ids["task_empty"] = _ok(client.post("/v1/tasks", json={"name": f"{m}-task-empty"}, headers=h))[
        "id"
    ]
    labeler = {"kind": "human", "name": "seed"}
    ids["partition"] = _ok(
        client.post(
            "/v1/partitions",
            json={
                "task_id": ids["task"],
                "concept_set_version_id": ids["v_priv"],
                "labels": [
                    {
                        "concept_id": ids["c_priv"],
                        "label": "undesirable",
                        "rationale": m,
                        "labeler": labeler,
                    },
                    {
                        "concept_id": ids["c_priv2"],
                        "label": "benign",
                        "rationale": m,
                        "labeler": labeler,
                    },
                ],
                "provenance": {"note": m},
            },
            headers=h,
        )
    )["id"]
    for name, version, partition in (
        ("dict_priv", ids["v_priv"], ids["partition"]),
        ("dict_pub", ids["v_pub"], None),
    ):
        ids[name] = _ok(
            client.post(
                "/v1/dictionaries",
                json={
                    "concept_set_version_id": version,
                    "model_id": ids["model"],
                    "layers": list(LAYERS),
                    "recipe_id": ids["recipe"],
                    "partition_id": partition,
                },
                headers=h,
            )
        )["hash"]
    ids["task_beta"] = _ok(
        client.post("/v1/tasks", json={"name": "beta-task"}, headers=auth(w.keys["beta_write"]))
    )["id"]
    return w
