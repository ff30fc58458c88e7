"""Decode a nearest-concepts request: a JSON body, or a binary vector plus a query string.

- ``application/json``: ``NearestRequest``, parsed and validated in one pass by
  pydantic's JSON parser (no intermediate Python objects from ``json.loads``);
- ``application/octet-stream``: the raw little-endian vector (``dtype`` float32 by
  default, or float16) and every other field in the query string (``NearestBinaryParams``).
  4,096 values are 16 KiB (8 KiB in float16) instead of ~80 KB of decimal text, and the
  client need not format them.

Errors keep the API's envelope: 422 ``validation_error`` naming the field (``k``,
``dtype``, ``vector``), 400 ``empty_body``, 415 for any other content type. Finiteness
and the vector's length against the model are checked by the store, for both forms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException

from ..errors import EmptyBody, ValidationFailed
from ..schemas.search import MAX_VECTOR_VALUES, NearestBinaryParams, NearestRequest
from ..store.search import MIN_POOL, NearestQuery

__all__ = ["BINARY_TYPE", "JSON_TYPE", "decode_nearest"]

JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"
_DTYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}


def _media_type(content_type: str | None) -> str:
    return (content_type or JSON_TYPE).split(";")[0].strip().lower()


def decode_nearest(
    content_type: str | None,
    query_params: Mapping[str, str] | bytes,
    body: bytes,
    *,
    min_pool: int = MIN_POOL,
) -> NearestQuery:
    """The validated query of a request (raises the API's 4xx errors).

    ``query_params``: parsed, or the raw query string (validated once per distinct
    string, then reused: a client repeats the same few); ``min_pool``: the service's
    candidate pool setting (``search_pool``)."""
    media = _media_type(content_type)
    if media == JSON_TYPE:
        try:
            req = NearestRequest.model_validate_json(body)
        except ValidationError as exc:
            raise RequestValidationError(_located(exc, "body")) from None
        return _query(req, req.vector, min_pool)
    if media == BINARY_TYPE:
        params = _binary_params(query_params)
        return _query(params, _binary_vector(body, _DTYPES[params.dtype]), min_pool)
    raise HTTPException(415, f"send {JSON_TYPE} or {BINARY_TYPE} (got {media!r})")


_PARAMS: dict[bytes, NearestBinaryParams] = {}
"""Raw query string -> its validated parameters (read only once made)."""
_MAX_PARAMS = 256


def _binary_params(query: Mapping[str, str] | bytes) -> NearestBinaryParams:
    if isinstance(query, bytes):
        known = _PARAMS.get(query)
        if known is not None:
            return known
    try:
        params = NearestBinaryParams.model_validate(
            dict(QueryParams(query) if isinstance(query, bytes) else query)
        )
    except ValidationError as exc:
        raise RequestValidationError(_located(exc, "query")) from None
    if isinstance(query, bytes):
        if len(_PARAMS) >= _MAX_PARAMS:
            _PARAMS.clear()
        _PARAMS[query] = params
    return params


def _binary_vector(body: bytes, dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    if not body:
        raise EmptyBody("the body must hold the query vector", field="vector")
    if len(body) % dtype.itemsize:
        raise ValidationFailed(
            f"body of {len(body)} bytes is not a whole number of {dtype.name} values",
            field="vector",
        )
    if len(body) // dtype.itemsize > MAX_VECTOR_VALUES:
        raise ValidationFailed(
            f"vector has {len(body) // dtype.itemsize} values; at most {MAX_VECTOR_VALUES}",
            field="vector",
        )
    return np.frombuffer(body, dtype=dtype)


def _query(params: Any, vector: list[float] | np.ndarray[Any, Any], min_pool: int) -> NearestQuery:
    return NearestQuery(
        model_id=params.model_id,
        layer=params.layer,
        recipe_id=params.recipe_id,
        k=params.k,
        vector=vector,
        concept_set_version_id=params.concept_set_version_id,
        partition_id=params.partition_id,
        task_id=params.task_id,
        exact=params.exact,
        min_pool=min_pool,
    )


def _located(exc: ValidationError, where: str) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    for e in exc.errors(include_url=False):
        errors.append({**e, "loc": (where, *e["loc"])})
    return errors
