"""The error envelope, body size limits, the role matrix, and the live-service fixture."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from helpers import auth, error_of


def test_unknown_route_and_method_use_the_envelope(client: Any, read_key: str) -> None:
    missing = client.get("/v1/nope", headers=auth(read_key))
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    wrong = client.put("/v1/concepts", headers=auth(read_key))
    assert wrong.status_code == 405 and error_of(wrong)["code"] == "method_not_allowed"


def test_query_validation_names_the_parameter(client: Any, read_key: str) -> None:
    response = client.get("/v1/concepts?limit=0", headers=auth(read_key))
    assert response.status_code == 422
    assert error_of(response)["field"] == "limit"
    response = client.get("/v1/concepts?limit=1001", headers=auth(read_key))
    assert response.status_code == 422 and error_of(response)["field"] == "limit"


def test_body_limits_refuse_large_bodies(settings: Any, write_key: str) -> None:
    from fastapi.testclient import TestClient

    from pace_service.main import create_app

    settings.max_json_bytes = 1000
    settings.max_upload_bytes = 2000
    app = create_app(settings)
    try:
        with TestClient(app) as client:
            big = client.post(
                "/v1/concepts",
                json={"name": "x", "description": "y" * 5000},
                headers=auth(write_key),
            )
            assert big.status_code == 413
            assert error_of(big)["code"] == "payload_too_large"

            def chunks() -> Any:
                for _ in range(10):
                    yield b"x" * 500

            streamed = client.post(
                "/v1/concepts",
                content=chunks(),
                headers={**auth(write_key), "content-type": "application/json"},
            )
            assert streamed.status_code == 413
            small = client.post("/v1/concepts", json={"name": "x"}, headers=auth(write_key))
            assert small.status_code == 201
    finally:
        app.state.engine.dispose()


@pytest.mark.parametrize(
    ("role", "expected"),
    [("read", (200, 403, 403)), ("write", (200, 201, 403)), ("admin", (200, 201, 201))],
)
def test_role_matrix(client: Any, make_key: Any, role: str, expected: tuple[int, ...]) -> None:
    key = make_key("team-a", role)
    got = (
        client.get("/v1/concepts", headers=auth(key)).status_code,
        client.post("/v1/concepts", json={"name": f"c-{role}"}, headers=auth(key)).status_code,
        client.post("/v1/keys", json={"role": "read"}, headers=auth(key)).status_code,
    )
    assert got == expected


def test_live_service_serves_over_http(live_service: tuple[str, str]) -> None:
    base_url, key = live_service
    response = httpx.get(f"{base_url}/v1/me", headers=auth(key), timeout=10)
    assert response.json() == {"namespace": "team-a", "role": "admin"}
    docs = httpx.get(f"{base_url}/openapi.json", timeout=10).json()
    assert "/v1/concept-sets/{set_id}/fork" in docs["paths"]


def test_out_of_range_and_odd_input_never_500(client: Any, write_key: str) -> None:
    huge = 10**30
    assert client.get(f"/v1/concepts/{huge}", headers=auth(write_key)).status_code in (404, 422)
    add = client.post(
        "/v1/concept-sets/1/versions", json={"from_version": huge}, headers=auth(write_key)
    )
    assert add.status_code in (404, 422)
    nul = client.post("/v1/concepts", json={"name": "a\x00b"}, headers=auth(write_key))
    assert nul.status_code == 422 and error_of(nul)["code"] == "validation_error"
    not_object = client.post("/v1/concepts", json=[1, 2], headers=auth(write_key))
    assert not_object.status_code == 422


def test_settings_read_the_environment(monkeypatch: Any, tmp_path: Any) -> None:
    from pace_service.core.config import Settings

    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db:5432/pace")
    monkeypatch.setenv("PACE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PACE_MAX_UPLOAD_BYTES", "123")
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://u:p@db:5432/pace"
    assert settings.api_key_file == tmp_path / "api-key"
    assert settings.max_upload_bytes == 123
    monkeypatch.setenv("PACE_MAX_UPLOAD_BYTES", "-1")
    with pytest.raises(ValueError, match="max_upload_bytes"):
        Settings()
