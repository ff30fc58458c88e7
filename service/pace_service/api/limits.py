"""Request body limits, as a pure ASGI middleware: size (413) and time (408).

Binary uploads (``application/octet-stream``) may be up to ``max_upload_bytes``; any
other body up to ``max_json_bytes``. A declared ``Content-Length`` over the limit is
refused before reading; a chunked body is counted as it streams.

A body that stops arriving is refused with 408 ``request_timeout``: no chunk for
``idle_timeout_s``, or (after that much grace) an average rate under
``min_bytes_per_s``, so a client trickling a byte at a time cannot hold a worker and
a transaction forever. The app then sees a disconnect, so its transaction rolls back
and nothing is stored. The timer runs only while the app waits for body bytes.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import PayloadTooLarge
from .errors import error_body

__all__ = ["BodyLimitMiddleware", "read_body"]


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body of a route that buffers it, refused (413 ``payload_too_large``)
    as soon as it passes ``limit``: the middleware's bound for binary bodies is the
    1 GiB of vector uploads, far too much to buffer for a small request."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(
                f"request body is over this route's {limit}-byte limit", field="body"
            )
    return bytes(body)


class BodyLimitMiddleware:
    """Refuse request bodies over the configured limits."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_upload_bytes: int,
        max_json_bytes: int,
        idle_timeout_s: float = 30.0,
        min_bytes_per_s: int = 16 << 10,
    ) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.max_json_bytes = max_json_bytes
        self.idle_timeout_s = idle_timeout_s
        self.min_bytes_per_s = min_bytes_per_s

    def _wait_s(self, started: float, seen: int) -> float:
        """How long the next body chunk may take: the idle bound, or less if the
        average rate since ``started`` would fall under ``min_bytes_per_s``."""
        by_rate = started + self.idle_timeout_s + seen / self.min_bytes_per_s - time.monotonic()
        return max(0.0, min(self.idle_timeout_s, by_rate))

    def _limit(self, headers: dict[bytes, bytes]) -> int:
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type == b"application/octet-stream":
            return self.max_upload_bytes
        return self.max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        limit = self._limit(headers)
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_error(send, 413, _too_large_body(limit))
            return
        seen = 0
        rejected = False
        started = False
        body_done = False
        began = time.monotonic()

        async def refuse(status: int, body: dict[str, Any]) -> Message:
            # answer now; the app sees a disconnect and its own reply is dropped
            nonlocal rejected
            rejected = True
            if not started:
                await _send_error(send, status, body)
            return {"type": "http.disconnect"}

        async def counting_receive() -> Message:
            nonlocal seen, body_done
            if rejected:
                return {"type": "http.disconnect"}
            if body_done:  # e.g. a response listening for a disconnect: no timer
                return await receive()
            wait_s = self._wait_s(began, seen)
            try:
                async with asyncio.timeout(wait_s):  # no task per chunk, unlike wait_for
                    message = await receive()
            except TimeoutError:
                return await refuse(408, _timeout_body(seen, self.idle_timeout_s))
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > limit and not started:
                    return await refuse(413, _too_large_body(limit))
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not rejected:
                raise


def _too_large_body(limit: int) -> dict[str, Any]:
    return error_body("payload_too_large", f"request body is over the {limit}-byte limit")


def _timeout_body(seen: int, idle_timeout_s: float) -> dict[str, Any]:
    return error_body(
        "request_timeout",
        f"the request body stopped arriving (after {seen} bytes): no data for "
        f"{idle_timeout_s:g} s, or too slow; nothing was stored",
        "body",
    )


async def _send_error(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
