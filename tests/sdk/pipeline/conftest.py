"""A real OpenAI-compatible HTTP server on loopback, with scripted answers.

The pipeline's LLM code talks to it through the real ``openai`` client over HTTP; only
the model behind the endpoint is scripted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from scripted_llm import ScriptedLLM, serve_scripted_llm

from pace.pipeline.llm import LLMClient, LLMConfig


def user_prompt(body: dict[str, Any]) -> str:
    """The first user message of a chat request."""
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


@pytest.fixture
def llm_server() -> Iterator[ScriptedLLM]:
    with serve_scripted_llm() as server:
        yield server


@pytest.fixture
def llm_client(llm_server: ScriptedLLM) -> Iterator[LLMClient]:
    config = LLMConfig(
        model="scripted-model",
        base_url=llm_server.base_url,
        api_key="test-key",
        max_retries=3,
        backoff_s=0.0,
        timeout_s=10.0,
    )
    with LLMClient(config) as client:
        yield client
