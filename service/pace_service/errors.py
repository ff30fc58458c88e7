"""The service's error tree: each error has an HTTP status and a stable ``code``.

Repository functions (``pace_service.store``) raise these; ``pace_service.api.errors``
renders every one as ``{"error": {"code", "message", "field"}}``. The codes are part
of the API contract (docs/api.md) and the SDK maps them to exception classes.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "Conflict",
    "DimensionMismatch",
    "Duplicate",
    "EmptyBody",
    "Forbidden",
    "Immutable",
    "MalformedSafetensors",
    "NonFinite",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "ServiceError",
    "Unauthenticated",
    "ValidationFailed",
]


class ServiceError(Exception):
    """Base of every deliberate error response.

    ``field`` names the offending request field (a dotted path such as
    ``"stimuli.3.text"`` or ``"concept_ids"``), or ``None``.
    """

    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Unauthenticated(ServiceError):
    """No API key, or an unknown or revoked one (401)."""

    status_code = 401
    code = "unauthenticated"


class Forbidden(ServiceError):
    """The key's role does not allow this (403)."""

    status_code = 403
    code = "forbidden"


class NotFound(ServiceError):
    """Unknown id, or a private resource of another namespace (404, no existence leak)."""

    status_code = 404
    code = "not_found"


class Duplicate(ServiceError):
    """A unique name or key already exists (409)."""

    status_code = 409
    code = "duplicate"


class Immutable(ServiceError):
    """An edit of a published version (409)."""

    status_code = 409
    code = "immutable"


class Conflict(ServiceError):
    """The request contradicts stored state (409), e.g. a different existing vector."""

    status_code = 409
    code = "conflict"


class PreconditionFailed(ServiceError):
    """An ``If-Match`` style precondition did not hold (412)."""

    status_code = 412
    code = "precondition_failed"


class PayloadTooLarge(ServiceError):
    """The request body is over the configured limit (413)."""

    status_code = 413
    code = "payload_too_large"


class EmptyBody(ServiceError):
    """A required request body is empty (400)."""

    status_code = 400
    code = "empty_body"


class MalformedSafetensors(ServiceError):
    """The body is not a valid safetensors file with the expected tensors (400)."""

    status_code = 400
    code = "malformed_safetensors"


class DimensionMismatch(ServiceError):
    """A vector's length differs from the model's hidden size (422)."""

    status_code = 422
    code = "dimension_mismatch"


class NonFinite(ServiceError):
    """NaN or Inf in a vector (422)."""

    status_code = 422
    code = "non_finite"


class ValidationFailed(ServiceError):
    """A field value is invalid (422)."""

    status_code = 422
    code = "validation_error"
