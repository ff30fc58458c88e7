"""Render every error as ``{"error": {"code", "message", "field"}}``.

- :class:`~pace_service.errors.ServiceError` -> its status and code;
- request validation errors -> 422 ``validation_error``, ``field`` = the error's
  location joined by ``"."`` without the leading ``body``/``query``/``path``/``header``
  part (``"stimuli.0.text"``, ``"limit"``);
- database integrity errors that slip past the repository checks -> 409 ``duplicate``
  (unique), 409 ``immutable`` (the published-version triggers), 404 ``not_found``
  (a reference to an unknown row), 409 ``conflict`` (a delete of a referenced row),
  422 ``validation_error`` (check constraints, out-of-range data);
- a lost or refused database connection (PostgreSQL restarting, crashed, or
  unreachable) -> 503 ``unavailable`` with ``Retry-After``: nothing was committed, and
  the same request can be retried as is; so is a connection pool that stayed
  exhausted for its timeout (overload);
- anything else -> 500 ``internal`` (a bug: logged with its traceback).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ServiceError

__all__ = ["IMMUTABLE_SQLSTATE", "error_body", "field_from_loc", "install_error_handlers"]

_log = logging.getLogger(__name__)

IMMUTABLE_SQLSTATE = "PC409"
"""Raised by the published-version triggers of migration 0001."""

_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
}

# unique constraint name -> the request field it concerns
_UNIQUE_FIELDS = {
    "uq_namespaces_name": "name",
    "uq_concepts_namespace_id_name": "name",
    "uq_concept_sets_namespace_id_name": "name",
    "uq_tasks_namespace_id_name": "name",
    "uq_models_hf_id_revision": "hf_id",
    "uq_stimuli_concept_id_text_sha256": "stimuli",
}


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The error envelope of the API contract."""
    return {"error": {"code": code, "message": message, "field": field}}


def _response(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_body(code, message, field))


def field_from_loc(loc: Sequence[int | str]) -> str | None:
    """``("body", "stimuli", 0, "text")`` -> ``"stimuli.0.text"``."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    return ".".join(parts) or None


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return _response(exc.status_code, exc.code, exc.message, exc.field)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if not errors:
        return _response(422, "validation_error", "invalid request")
    first = errors[0]
    field = field_from_loc(first.get("loc", ()))
    message = str(first.get("msg", "invalid value"))
    if field:
        message = f"{field}: {message}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return _response(422, "validation_error", message, field)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error" if exc.status_code < 500 else "internal")
    response = _response(exc.status_code, code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def _constraint(orig: Any) -> str | None:
    diag = getattr(orig, "diag", None)
    name = getattr(diag, "constraint_name", None)
    return str(name) if name else None


_CONNECTION_LOST_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})  # shutdown, crash, starting
RETRY_AFTER_S = 1


def _connection_lost(orig: object) -> bool:
    """Whether a driver error means the database went away, not that the request is bad."""
    if not isinstance(orig, psycopg.OperationalError):
        return False
    sqlstate = orig.sqlstate or ""
    # no SQLSTATE: the driver lost (or never got) the connection
    return not sqlstate or sqlstate.startswith("08") or sqlstate in _CONNECTION_LOST_SQLSTATES


def _unavailable(exc: BaseException) -> JSONResponse:
    _log.warning("database unavailable: %s", exc)
    response = _response(
        503,
        "unavailable",
        "the database connection was lost or refused; nothing was committed: retry",
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


async def _pool_exhausted(_request: Request, exc: Exception) -> JSONResponse:
    """No pooled connection came free within the pool's timeout: overload, not a bug."""
    _log.warning("database connection pool exhausted: %s", exc)
    response = _response(
        503,
        "unavailable",
        "the service is busy: no database connection came free in time; "
        "nothing was committed: retry",
    )
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


async def _driver_error(_request: Request, exc: Exception) -> JSONResponse:
    """A psycopg error raised outside SQLAlchemy (the binary COPY and search paths):
    mapped as if SQLAlchemy had wrapped it."""
    if _connection_lost(exc):
        return _unavailable(exc)
    return _mapped(exc, exc)


async def _db_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    orig = exc.orig
    if exc.connection_invalidated or _connection_lost(orig):
        return _unavailable(exc)
    return _mapped(orig, exc)


def _mapped(orig: object, exc: Exception) -> JSONResponse:
    """The response for driver error ``orig`` (``exc``: what to log if it is a bug)."""
    sqlstate = getattr(orig, "sqlstate", None) or ""
    detail = str(getattr(getattr(orig, "diag", None), "message_primary", "") or orig)
    if sqlstate == IMMUTABLE_SQLSTATE:
        return _response(409, "immutable", detail)
    if sqlstate == "23505":
        name = _constraint(orig)
        field = _UNIQUE_FIELDS.get(name or "")
        return _response(409, "duplicate", f"already exists ({name})", field)
    if sqlstate == "23503":
        if re.search(r"is still referenced", detail):
            return _response(409, "conflict", detail)
        return _response(404, "not_found", f"a referenced id does not exist: {detail}")
    if sqlstate.startswith("23") or sqlstate.startswith("22"):
        return _response(422, "validation_error", detail)
    if not sqlstate and isinstance(orig, psycopg.DataError):
        # raised by the driver before the server saw it, e.g. a NUL character in text
        return _response(422, "validation_error", f"invalid value: {orig}")
    if sqlstate == "40001" or sqlstate == "40P01":
        return _response(409, "conflict", "concurrent update; retry the request")
    _log.exception("database error", exc_info=exc)
    return _response(500, "internal", "internal database error")


async def _unhandled(_request: Request, exc: Exception) -> JSONResponse:
    _log.exception("unhandled error", exc_info=exc)
    return _response(500, "internal", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Register the envelope renderers on ``app``."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _db_error)
    app.add_exception_handler(psycopg.Error, _driver_error)
    app.add_exception_handler(PoolTimeout, _pool_exhausted)
    app.add_exception_handler(Exception, _unhandled)
