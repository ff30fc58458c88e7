"""Authentication, /v1/me and key management."""

from __future__ import annotations

from typing import Any

from helpers import auth, error_of


def test_me_reports_namespace_and_role(client: Any, read_key: str) -> None:
    response = client.get("/v1/me", headers=auth(read_key))
    assert response.status_code == 200
    assert response.json() == {"namespace": "team-a", "role": "read"}


def test_missing_or_unknown_key_is_401(client: Any, admin_key: str) -> None:
    missing = client.get("/v1/me")
    assert missing.status_code == 401
    assert error_of(missing)["code"] == "unauthenticated"
    unknown = client.get("/v1/me", headers=auth(admin_key + "x"))
    assert unknown.status_code == 401
    assert error_of(unknown)["code"] == "unauthenticated"


def test_admin_creates_key_shown_once_and_stored_hashed(
    client: Any, admin_key: str, app: Any
) -> None:
    response = client.post("/v1/keys", json={"role": "write"}, headers=auth(admin_key))
    assert response.status_code == 201
    body = response.json()
    assert body["key"].startswith("pace_") and body["role"] == "write"
    me = client.get("/v1/me", headers=auth(body["key"]))
    assert me.json() == {"namespace": "team-a", "role": "write"}
    listed = client.get("/v1/keys", headers=auth(admin_key)).json()
    assert listed["total"] == 2
    assert all(body["key"] not in str(item) for item in listed["items"])
    with app.state.engine.connect() as conn:
        from sqlalchemy import text

        stored = [r[0] for r in conn.execute(text("SELECT key_hash FROM api_keys"))]
    assert body["key"] not in stored
    assert all(len(h) == 64 for h in stored)


def test_non_admin_cannot_create_keys(client: Any, write_key: str) -> None:
    response = client.post("/v1/keys", json={"role": "read"}, headers=auth(write_key))
    assert response.status_code == 403
    assert error_of(response)["code"] == "forbidden"


def test_bad_role_names_the_field(client: Any, admin_key: str) -> None:
    response = client.post("/v1/keys", json={"role": "root"}, headers=auth(admin_key))
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_error" and error["field"] == "role"


def test_revoked_key_stops_working(client: Any, admin_key: str) -> None:
    new = client.post("/v1/keys", json={"role": "read"}, headers=auth(admin_key)).json()
    revoked = client.delete(f"/v1/keys/{new['id']}", headers=auth(admin_key))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert client.get("/v1/me", headers=auth(new["key"])).status_code == 401
