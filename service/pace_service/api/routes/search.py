"""``/v1/search/nearest``: the concepts whose atoms are nearest to an activation.

The hot path of the service, so it is written by hand rather than through dependency
injection (each FastAPI sync dependency is a worker-thread hop of its own, about as
costly as the search itself on a busy machine). The body is read once and decoded by
:mod:`..nearest_body` (JSON or a binary vector). A search whose key is in the key cache
and whose (model, layer) was searched through its index before is answered on the event
loop in one statement (:func:`answer_on_loop`, :mod:`...store.search_async`), before
FastAPI's routing (:mod:`..nearest_fast`); the route runs any other: authentication and
the search in **one** worker-thread call, on the autocommit search pool. The answer is
serialized once by pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import psycopg
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import TypeAdapter
from pydantic_core import to_json
from sqlalchemy.exc import DBAPIError

from ...core.security import hash_key
from ...schemas.search import NearestBinaryParams, NearestPublic, NearestRequest
from ...store import search as store
from ...store.search_async import nearest_guessed
from ..deps import Principal, bearer, key_cache, resolve_principal
from ..key_cache import KeyCache
from ..limits import read_body
from ..nearest_body import BINARY_TYPE, JSON_TYPE, decode_nearest

__all__ = ["MAX_BODY_BYTES", "answer_on_loop", "router"]

router = APIRouter(tags=["search"])


def _label(value: str | None) -> Literal["benign", "undesirable"] | None:
    if value == "benign":
        return "benign"
    if value == "undesirable":
        return "undesirable"
    return None


def _binary_parameters() -> list[dict[str, Any]]:
    schema = NearestBinaryParams.model_json_schema()
    required = set(schema.get("required", ()))
    return [
        {
            "name": name,
            "in": "query",
            "required": False,  # JSON bodies carry them in the body
            "schema": prop,
            "description": f"{BINARY_TYPE} bodies only"
            + (" (required there)" if name in required else "")
            + (": " + prop["description"] if "description" in prop else ""),
        }
        for name, prop in schema["properties"].items()
    ]


_OPENAPI: dict[str, Any] = {
    "parameters": _binary_parameters(),
    "requestBody": {
        "required": True,
        "content": {
            JSON_TYPE: {"schema": TypeAdapter(NearestRequest).json_schema()},
            BINARY_TYPE: {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "The vector: little-endian float32 (or float16 with "
                    "dtype=float16); the other fields go in the query string",
                }
            },
        },
    },
}


def _connection_lost(exc: Exception) -> bool:
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    state = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, psycopg.OperationalError) and (
        not state or state.startswith("08") or state.startswith("57P")
    )


def _search(app: FastAPI, secret: str | None, request: Request, body: bytes) -> bytes:
    factory = app.state.search_session_factory  # autocommit, no pre-ping
    for attempt in (1, 2):
        try:
            with factory() as session:
                principal = resolve_principal(session, secret, key_cache(request))
                query = decode_nearest(
                    request.headers.get("content-type"),
                    request.query_params,
                    body,
                    min_pool=app.state.settings.search_pool,
                )
                results, exact = store.nearest(session, principal.namespace_id, query)
            break
        except (DBAPIError, psycopg.OperationalError) as exc:
            # Pooled connections the server dropped (a restart, an idle timeout): start
            # a fresh pool; a read-only search is safe to run again.
            if attempt == 2 or not _connection_lost(exc):
                raise
            app.state.search_engine.dispose()
    return _answer(results, exact)


def _answer(results: list[store.Neighbor], exact: bool) -> bytes:
    # The shape of NearestPublic (the route's response model, in the OpenAPI schema),
    # serialized by pydantic-core without building the models: 13 instead of 77 us.
    return to_json(
        {
            "results": [
                {
                    "concept_id": r.concept_id,
                    "name": r.name,
                    "similarity": r.similarity,
                    "label": _label(r.label),
                }
                for r in results
            ],
            "exact": exact,
        }
    )


MAX_BODY_BYTES = 1 << 20
"""A 16,000-value vector is 64 KB in float32, under 400 KB as JSON text."""


@router.post("/search/nearest", response_model=NearestPublic, openapi_extra=_OPENAPI)
async def search_nearest(request: Request) -> Response:
    """The ``k`` most cosine-similar concept atoms at (model, layer, recipe).

    Body: JSON (``NearestRequest``), or the raw vector as ``application/octet-stream``
    (little-endian float32, or float16 with ``dtype=float16``) with the other fields in
    the query string. Uses the (model, layer, recipe) binary-quantization HNSW index and
    an exact re-rank unless ``exact`` is set or the index is not built yet; ``exact`` in
    the answer says which. Only concepts readable by the caller are returned; labels
    come from ``partition_id``, or from ``task_id``'s latest partition of the version.
    """
    # The hot path (:mod:`..nearest_fast`) tried this request before the routing and
    # declined it: answer through the full path.
    credentials = await bearer(request)
    body = await read_body(request, MAX_BODY_BYTES)
    secret = credentials.credentials if credentials is not None else None
    payload = await run_in_threadpool(_search, request.app, secret, request, body)
    return Response(payload, media_type=JSON_TYPE)


async def answer_on_loop(
    app: FastAPI,
    secret: str,
    content_type: str | None,
    query_params: Mapping[str, str] | bytes,
    body: bytes,
) -> bytes | None:
    """The answer without a worker thread, when the key is cached and the search can be
    guessed (see :mod:`...store.search_async`); None sends it the full path."""
    cache: KeyCache[Principal] | None = getattr(app.state, "key_cache", None)
    principal = cache.get(hash_key(secret)) if cache is not None else None
    if principal is None:
        return None
    query = decode_nearest(
        content_type, query_params, body, min_pool=app.state.settings.search_pool
    )
    guess = store.guess_for(store.search_hints(app.state.search_engine), query)
    if guess is None:
        return None
    try:
        async with app.state.async_connections.connection() as conn:
            results = await nearest_guessed(conn, guess, principal.namespace_id, query)
    except psycopg.OperationalError:
        return None  # a dropped connection: the full path retries on a fresh one
    if results is None:
        return None
    return _answer(results, exact=False)
