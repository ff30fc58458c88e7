"""Models and recipes."""

from __future__ import annotations

from typing import Any

from helpers import auth, error_of

LLAMA = {
    "hf_id": "meta-llama/Llama-2-7b-chat-hf",
    "revision": "main",
    "hidden_size": 4096,
    "num_layers": 32,
    "architecture": "LlamaForCausalLM",
}


def test_model_crud_and_duplicate(client: Any, write_key: str, read_key: str) -> None:
    created = client.post("/v1/models", json=LLAMA, headers=auth(write_key))
    assert created.status_code == 201
    model = created.json()
    assert {k: model[k] for k in LLAMA} == LLAMA
    dup = client.post("/v1/models", json=LLAMA, headers=auth(write_key))
    assert dup.status_code == 409 and error_of(dup) == {
        "code": "duplicate",
        "message": error_of(dup)["message"],
        "field": "hf_id",
    }
    other_rev = client.post(
        "/v1/models", json={**LLAMA, "revision": "abc"}, headers=auth(write_key)
    )
    assert other_rev.status_code == 201
    found = client.get(
        "/v1/models", params={"hf_id": LLAMA["hf_id"], "revision": "abc"}, headers=auth(read_key)
    ).json()
    assert found["total"] == 1 and found["items"][0]["id"] == other_rev.json()["id"]
    assert client.get(f"/v1/models/{model['id']}", headers=auth(read_key)).json() == model
    assert client.get("/v1/models/424242", headers=auth(read_key)).status_code == 404
    assert client.post("/v1/models", json=LLAMA, headers=auth(read_key)).status_code == 403


def test_model_shape_validation(client: Any, write_key: str) -> None:
    for field, value in (("hidden_size", 16001), ("hidden_size", 0), ("num_layers", 0)):
        response = client.post("/v1/models", json={**LLAMA, field: value}, headers=auth(write_key))
        assert response.status_code == 422
        assert error_of(response)["field"] == field
    big = client.post("/v1/models", json={**LLAMA, "hidden_size": 16000}, headers=auth(write_key))
    assert big.status_code == 201


def test_recipe_get_or_create_by_content(client: Any, write_key: str) -> None:
    body = {
        "token_position": "last",
        "reduction": "pc1",
        "prompt_template": "Q: {stimulus}",
        "code_version": "0.1.0",
    }
    first = client.post("/v1/recipes", json=body, headers=auth(write_key))
    second = client.post("/v1/recipes", json=body, headers=auth(write_key))
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json() == second.json()
    other = client.post(
        "/v1/recipes", json={**body, "reduction": "mean"}, headers=auth(write_key)
    ).json()
    assert other["id"] != first.json()["id"]
    assert other["content_hash"] != first.json()["content_hash"]
    bad = client.post(
        "/v1/recipes", json={**body, "prompt_template": "no slot"}, headers=auth(write_key)
    )
    assert bad.status_code == 422 and error_of(bad)["field"] == "prompt_template"
    bad_pos = client.post(
        "/v1/recipes", json={**body, "token_position": "first"}, headers=auth(write_key)
    )
    assert bad_pos.status_code == 422 and error_of(bad_pos)["field"] == "token_position"
    listed = client.get("/v1/recipes", headers=auth(write_key)).json()
    assert listed["total"] == 2


def test_delete_unused_model_and_recipe_but_not_used_ones(
    client: Any, admin_key: str, write_key: str, app: Any
) -> None:
    from sqlalchemy import text

    model = client.post("/v1/models", json=LLAMA, headers=auth(write_key)).json()
    spare = client.post("/v1/models", json={**LLAMA, "revision": "x"}, headers=auth(write_key))
    recipe = client.post("/v1/recipes", json={"code_version": "1"}, headers=auth(write_key)).json()
    spare_recipe = client.post(
        "/v1/recipes", json={"code_version": "2"}, headers=auth(write_key)
    ).json()
    concept = client.post("/v1/concepts", json={"name": "c"}, headers=auth(write_key)).json()
    with app.state.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO atoms (model_id, layer, recipe_id, concept_id, vector) "
                "VALUES (:m, 0, :r, :c, array_fill(1::real, ARRAY[4096])::halfvec)"
            ),
            {"m": model["id"], "r": recipe["id"], "c": concept["id"]},
        )
    url = f"/v1/models/{model['id']}"
    assert client.delete(url, headers=auth(write_key)).status_code == 403
    used = client.delete(url, headers=auth(admin_key))
    assert used.status_code == 409 and error_of(used)["code"] == "conflict"
    used_recipe = client.delete(f"/v1/recipes/{recipe['id']}", headers=auth(admin_key))
    assert used_recipe.status_code == 409
    spare_url = f"/v1/models/{spare.json()['id']}"
    assert client.delete(spare_url, headers=auth(admin_key)).status_code == 204
    assert client.get(spare_url, headers=auth(admin_key)).status_code == 404
    gone = client.delete(f"/v1/recipes/{spare_recipe['id']}", headers=auth(admin_key))
    assert gone.status_code == 204
