"""Map the service's error responses and httpx's exceptions onto ``pace.errors``."""

from __future__ import annotations

import json
from typing import Any

import httpx

from pace.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    DimensionMismatchError,
    DuplicateError,
    ImmutableError,
    NonFiniteError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PreconditionFailedError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    ServiceError,
    SlowBodyError,
    TransportError,
    ValidationError,
)

__all__ = ["error_from_response", "transport_error"]

_BY_CODE: dict[str, type[ServiceError]] = {
    "unauthenticated": AuthenticationError,
    "forbidden": PermissionDeniedError,
    "not_found": NotFoundError,
    "duplicate": DuplicateError,
    "immutable": ImmutableError,
    "conflict": ConflictError,
    "precondition_failed": PreconditionFailedError,
    "payload_too_large": PayloadTooLargeError,
    "empty_body": BadRequestError,
    "malformed_safetensors": BadRequestError,
    "dimension_mismatch": DimensionMismatchError,
    "non_finite": NonFiniteError,
    "validation_error": ValidationError,
    "request_timeout": SlowBodyError,
    "internal": ServerError,
}

_BY_STATUS: dict[int, type[ServiceError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: SlowBodyError,
    409: ConflictError,
    412: PreconditionFailedError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitedError,
}


def _error_class(status: int, code: str | None) -> type[ServiceError]:
    if code is not None and code in _BY_CODE:
        return _BY_CODE[code]
    # An unknown code (a newer service) or no code at all: fall back on the status.
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    return ServiceError


def _parse_error_body(response: httpx.Response) -> tuple[str | None, str | None, str | None]:
    """Return (code, message, field) from ``{"error": {...}}``; Nones when absent."""
    try:
        body: Any = json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, None, None
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return None, None, None
    code, message, field = err.get("code"), err.get("message"), err.get("field")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
        field if isinstance(field, str) else None,
    )


def error_from_response(response: httpx.Response) -> ServiceError:
    """The ``ServiceError`` subclass for an error response (its body must be read)."""
    code, message, field = _parse_error_body(response)
    if message is None:
        text = response.text.strip()
        message = text[:500] if text else (response.reason_phrase or "error")
    cls = _error_class(response.status_code, code)
    return cls(
        message,
        status=response.status_code,
        code=code,
        field=field,
        request=response.request,
        response=response,
    )


def transport_error(exc: httpx.TransportError) -> TransportError:
    """Wrap an httpx transport exception; the caller chains it with ``from exc``."""
    try:
        request: httpx.Request | None = exc.request
    except RuntimeError:  # httpx raises when the request was never attached
        request = None
    where = f" ({request.method} {request.url})" if request is not None else ""
    message = f"{type(exc).__name__}: {exc}{where}"
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeoutError(message, request=request)
    return TransportError(message, request=request)
