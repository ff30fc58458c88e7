"""A real OpenAI-compatible HTTP server on loopback, with scripted answers.

Shared by the pipeline and evaluation tests: the code under test talks to it through the
real ``openai`` client over HTTP; only the model behind the endpoint is scripted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Reply", "ScriptedLLM", "serve_scripted_llm"]

# A scripted reply: a content string (200), a (status, json body) error, or a callable
# taking the request body and returning one of those.
Reply = str | tuple[int, dict[str, Any]] | Callable[[dict[str, Any]], Any]


@dataclass
class ScriptedLLM:
    base_url: str
    replies: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    default: Reply | None = None
    reject_json_mode: bool = False

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def next_reply(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.reject_json_mode and "response_format" in body:
            return 400, {"error": {"message": "response_format is not supported", "type": "x"}}
        reply: Any = self.replies.pop(0) if self.replies else self.default
        if reply is None:
            return 500, {"error": {"message": "script exhausted", "type": "server_error"}}
        while callable(reply):
            reply = reply(body)
        if isinstance(reply, tuple):
            return reply
        return 200, {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }


@contextmanager
def serve_scripted_llm() -> Iterator[ScriptedLLM]:
    """A real HTTP server speaking ``POST /v1/chat/completions`` with scripted answers."""
    state: dict[str, ScriptedLLM] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            scripted = state["llm"]
            if self.path.rstrip("/") != "/v1/chat/completions":
                status, payload = 404, {"error": {"message": "no such route"}}
            else:
                scripted.requests.append(body)
                status, payload = scripted.next_reply(body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["llm"] = ScriptedLLM(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1")
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield state["llm"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
