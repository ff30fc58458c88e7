"""The nearest search's hot path, as a pure ASGI layer in front of FastAPI's routing.

A repeated search (key verified in the last few seconds, a (model, layer) whose index
served before) costs PostgreSQL about 3 ms; going through FastAPI's exception and
exit-stack middlewares, the router and the endpoint wrapper cost the service another
~0.6 ms of CPU, a fifth of its share. This layer answers such a request itself:
it reads the body, and hands everything to :func:`..routes.search.answer_on_loop`
(key cache, decoding, the one-statement guessed search on the event loop's async
connections). Whenever that says no (``None``) or raises, for a bad request as for a
dropped connection, the request goes on to the app with its body replayed, and the
route answers it as it would have: the errors, their envelope and the full path stay
in one place. The layer sits inside :class:`.limits.BodyLimitMiddleware`, so bodies
are bounded and timed here too.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi.security.utils import get_authorization_scheme_param
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .routes.search import MAX_BODY_BYTES, answer_on_loop

__all__ = ["NearestFastPath"]

_log = logging.getLogger(__name__)

_HEADERS = [(b"content-type", b"application/json")]


class NearestFastPath:
    """Answer ``POST <path>`` on the hot path when possible; pass everything else on."""

    def __init__(self, app: ASGIApp, *, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left, or the body limit answered already
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
            if len(body) > MAX_BODY_BYTES:  # the route refuses it (413)
                await self.app(scope, _replay(bytes(body), receive, more=True), send)
                return
        payload = await self._answer(scope, bytes(body))
        if payload is None:
            await self.app(scope, _replay(bytes(body), receive, more=False), send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_HEADERS, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _answer(self, scope: Scope, body: bytes) -> bytes | None:
        headers: dict[bytes, bytes] = dict(scope["headers"])
        scheme, secret = get_authorization_scheme_param(
            headers.get(b"authorization", b"").decode("latin-1")
        )
        if scheme.lower() != "bearer" or not secret:
            return None
        content_type = headers.get(b"content-type")
        try:
            return await answer_on_loop(
                scope["app"],
                secret,
                content_type.decode("latin-1") if content_type is not None else None,
                scope["query_string"],
                body,
            )
        except Exception:  # the route reports it (or, for a dropped connection, retries)
            _log.debug("nearest hot path declined", exc_info=True)
            return None


def _replay(body: bytes, receive: Receive, *, more: bool) -> Receive:
    """``receive`` for the app: the body read so far, then the client's own messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            message: dict[str, Any] = {"type": "http.request", "body": body, "more_body": more}
            return message
        return await receive()

    return replay
