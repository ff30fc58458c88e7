"""The SDK's exception tree. Every error the SDK raises on purpose is a ``PaceError``.

``ServiceError`` subclasses carry the service's stable machine-readable ``code``::

    PaceError
    ├── DictionaryFormatError (ValueError)     a file is not pace.dictionary/1
    ├── IntegrityError                          bytes do not match their content hash
    ├── ClientClosedError (RuntimeError)        a Client used after close()
    ├── UnexpectedResponseError                 a 2xx response the SDK cannot read
    ├── TransportError                          wraps httpx's network errors
    │   └── RequestTimeoutError (TimeoutError)
    └── ServiceError                            any 4xx/5xx from the service
        ├── BadRequestError (ValueError)        400: empty_body, malformed_safetensors
        ├── AuthenticationError                 401: unauthenticated
        ├── PermissionDeniedError               403: forbidden
        ├── NotFoundError (LookupError)         404: not_found
        ├── ConflictError                       409: conflict
        │   ├── DuplicateError                  409: duplicate
        │   └── ImmutableError                  409: immutable
        ├── PreconditionFailedError             412: precondition_failed
        ├── PayloadTooLargeError                413: payload_too_large
        ├── ValidationError (ValueError)        422: validation_error
        │   ├── DimensionMismatchError          422: dimension_mismatch
        │   └── NonFiniteError                  422: non_finite
        ├── RateLimitedError                    429
        └── ServerError                         5xx: internal, bad gateway, ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConflictError",
    "DictionaryFormatError",
    "DimensionMismatchError",
    "DuplicateError",
    "ImmutableError",
    "IntegrityError",
    "NonFiniteError",
    "NotFoundError",
    "PaceError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PreconditionFailedError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ServerError",
    "ServiceError",
    "SlowBodyError",
    "TransportError",
    "UnexpectedResponseError",
    "ValidationError",
]


class PaceError(Exception):
    """Base of every error raised by the pace SDK."""


class DictionaryFormatError(PaceError, ValueError):
    """A dictionary file or response is not valid ``pace.dictionary/1``."""


class IntegrityError(PaceError):
    """Downloaded or cached bytes do not match the content hash they were asked for."""


class ClientClosedError(PaceError, RuntimeError):
    """A ``Client`` was used after ``close()``."""


class UnexpectedResponseError(PaceError):
    """The service answered 2xx with a body the SDK cannot interpret."""


class TransportError(PaceError):
    """The request did not get an HTTP answer (connection refused or dropped, ...).

    The underlying ``httpx`` exception is chained as ``__cause__``.
    """

    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.request = request


class RequestTimeoutError(TransportError, TimeoutError):
    """A connect, read, write or pool timeout."""


class ServiceError(PaceError):
    """The service answered with an error status.

    Attributes mirror the service's error body
    ``{"error": {"code", "message", "field"}}``; ``code`` is ``None`` when the body
    was not in that shape (e.g. a proxy's 502 page).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        field: str | None = None,
        request: httpx.Request | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field
        self.request = request
        self.response = response

    def __str__(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        code = self.code or "http_error"
        return f"{self.status} {code}: {self.message}{where}"


class BadRequestError(ServiceError, ValueError):
    """400: the request body was empty or not a valid safetensors file."""


class AuthenticationError(ServiceError):
    """401: no API key, or an unknown one."""


class PermissionDeniedError(ServiceError):
    """403: the key's role or namespace does not allow this."""


class NotFoundError(ServiceError, LookupError):
    """404: the resource does not exist (or is not visible to this key)."""


class ConflictError(ServiceError):
    """409: the request conflicts with the stored state."""


class DuplicateError(ConflictError):
    """409 ``duplicate``: a resource with the same identity already exists."""


class ImmutableError(ConflictError):
    """409 ``immutable``: an edit of a published version."""


class PreconditionFailedError(ServiceError):
    """412: a precondition (e.g. ``If-Match``) did not hold."""


class PayloadTooLargeError(ServiceError):
    """413: the request body is above the service's limit."""


class ValidationError(ServiceError, ValueError):
    """422: a field is invalid; ``field`` names it (``layers.0``, ``stimuli.2.text``, ...)."""


class DimensionMismatchError(ValidationError):
    """422 ``dimension_mismatch``: a vector's length is not the model's hidden size."""


class NonFiniteError(ValidationError):
    """422 ``non_finite``: a vector contains NaN or infinity."""


class SlowBodyError(ServiceError, TimeoutError):
    """408 ``request_timeout``: the service stopped waiting for the request body (it
    stalled or trickled); nothing was stored. Idempotent requests are retried."""


class RateLimitedError(ServiceError):
    """429: too many requests (retried automatically, honouring ``Retry-After``)."""


class ServerError(ServiceError):
    """5xx: the service (or a proxy in front of it) failed."""
