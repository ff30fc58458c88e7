"""Small helpers for service tests (import as ``from helpers import auth``)."""

from __future__ import annotations

from typing import Any

__all__ = ["auth", "error_of"]


def auth(key: str) -> dict[str, str]:
    """The Authorization header for ``key``."""
    return {"Authorization": f"Bearer {key}"}


def error_of(response: Any) -> dict[str, Any]:
    """The ``error`` object of an error response (asserts the envelope's shape)."""
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "field"}, error
    return error


def post_binary_nearest(client: Any, key: str, body: bytes, **params: Any) -> Any:
    """``POST /v1/search/nearest`` with a raw binary vector body."""
    return client.post(
        "/v1/search/nearest",
        params=params,
        content=body,
        headers={**auth(key), "Content-Type": "application/octet-stream"},
    )
