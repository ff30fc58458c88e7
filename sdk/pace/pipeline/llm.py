"""An OpenAI-compatible chat client that returns validated JSON, with retries and backoff.

Works with OpenAI, vLLM, Ollama, llama.cpp's server or anything else that speaks
``POST /v1/chat/completions``. Configuration comes from the environment or explicit
values::

    PACE_LLM_BASE_URL (or OPENAI_BASE_URL)   e.g. http://localhost:11434/v1 for Ollama
    PACE_LLM_API_KEY  (or OPENAI_API_KEY)    optional for local servers
    PACE_LLM_MODEL                           e.g. gpt-4o-mini, llama3.1:8b

JSON answers are requested with ``response_format={"type": "json_object"}`` where the
server accepts it, but never relied on: the text is parsed defensively (code fences and
prose around the object are tolerated) and validated against a JSON schema. An invalid
answer is sent back to the model with the reasons and asked again.

Example::

    with LLMClient(LLMConfig.from_env()) as llm:
        answer = llm.chat_json([{"role": "user", "content": "..."}], schema={...})
        answer.data
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlparse

import openai

from pace.pipeline._schema import schema_errors
from pace.pipeline.errors import LLMError, LLMResponseError

__all__ = ["JsonAnswer", "LLMClient", "LLMConfig", "llm_configured", "parse_json_answer"]

Message = Mapping[str, str]
_LOCAL_KEY = "not-needed"  # local servers (Ollama, vLLM) ignore the key; openai requires one


@dataclass(frozen=True)
class LLMConfig:
    """Where the LLM is and how hard to try. ``base_url=None`` means api.openai.com."""

    model: str
    base_url: str | None = None
    api_key: str | None = None
    temperature: float = 0.7
    timeout_s: float = 120.0
    max_retries: int = 4
    """Extra attempts after the first, for transport errors, 429/5xx and invalid JSON."""
    backoff_s: float = 1.0
    """First wait before a retry; doubles each time (with jitter), capped at ``max_backoff_s``."""
    max_backoff_s: float = 30.0
    json_mode: bool = True
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if not self.model:
            raise LLMError("no LLM model configured: set PACE_LLM_MODEL or pass model=")
        if self.max_retries < 0 or self.backoff_s < 0 or self.timeout_s <= 0:
            raise ValueError("max_retries and backoff_s must be >= 0 and timeout_s > 0")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> LLMConfig:
        """Read ``PACE_LLM_*`` (falling back to ``OPENAI_*``); keyword overrides win."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "model": env.get("PACE_LLM_MODEL", ""),
            "base_url": env.get("PACE_LLM_BASE_URL") or env.get("OPENAI_BASE_URL") or None,
            "api_key": env.get("PACE_LLM_API_KEY") or env.get("OPENAI_API_KEY") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def host(self) -> str:
        """The endpoint's host (for provenance; never the key)."""
        return urlparse(self.base_url).netloc if self.base_url else "api.openai.com"

    def provenance(self) -> dict[str, Any]:
        return {"llm_host": self.host, "model": self.model, "temperature": self.temperature}


def llm_configured(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment names an LLM (a model, and a base URL or an API key)."""
    env = os.environ if env is None else env
    has_endpoint = bool(
        env.get("PACE_LLM_BASE_URL")
        or env.get("OPENAI_BASE_URL")
        or env.get("PACE_LLM_API_KEY")
        or env.get("OPENAI_API_KEY")
    )
    return bool(env.get("PACE_LLM_MODEL")) and has_endpoint


@dataclass(frozen=True)
class JsonAnswer:
    """A validated JSON answer and how many requests it took."""

    data: Any
    raw: str
    attempts: int


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


def parse_json_answer(text: str) -> Any:
    """Parse an LLM's JSON answer, tolerating code fences and prose around one object.

    Raises ``ValueError`` when no JSON object or array can be found.
    """
    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    for open_c, close_c in (("{", "}"), ("[", "]")):
        start, end = text.find(open_c), text.rfind(close_c)
        if 0 <= start < end:
            candidates.append(text[start : end + 1])
    last: Exception | None = None
    for c in candidates:
        if not c:
            continue
        try:
            return json.loads(c)
        except json.JSONDecodeError as exc:
            last = exc
    raise ValueError(f"no JSON found in the answer ({last})" if last else "empty answer")


class LLMClient:
    """A thin, retrying JSON layer over ``openai.OpenAI``; close it or use ``with``."""

    def __init__(
        self,
        config: LLMConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        api_key = config.api_key or (_LOCAL_KEY if config.base_url else None)
        if api_key is None:
            raise LLMError(
                "no LLM endpoint configured: set PACE_LLM_BASE_URL (local server) "
                "or PACE_LLM_API_KEY / OPENAI_API_KEY"
            )
        self.config = config
        self._json_mode = config.json_mode
        self._sleep = sleep
        # openai's own retries are off: ours also cover invalid JSON and are logged.
        self._client = openai.OpenAI(
            base_url=config.base_url,
            api_key=api_key,
            timeout=config.timeout_s,
            max_retries=0,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wait(self, attempt: int) -> None:
        delay = min(self.config.max_backoff_s, self.config.backoff_s * 2**attempt)
        if delay > 0:
            self._sleep(delay * random.uniform(0.5, 1.0))

    def _complete(self, messages: Sequence[Message], temperature: float) -> str:
        kwargs: dict[str, Any] = {
            "model": self.config.model,
            "messages": [dict(m) for m in messages],
            "temperature": temperature,
        }
        if self.config.max_tokens is not None:
            kwargs["max_tokens"] = self.config.max_tokens
        if self._json_mode:
            try:
                resp = self._client.chat.completions.create(
                    response_format={"type": "json_object"}, **kwargs
                )
            except openai.BadRequestError:
                # Servers without JSON mode reject the field: ask in plain text from now on.
                self._json_mode = False
                resp = self._client.chat.completions.create(**kwargs)
        else:
            resp = self._client.chat.completions.create(**kwargs)
        if not resp.choices:
            raise ValueError("the answer has no choices")
        return resp.choices[0].message.content or ""

    def chat_json(
        self,
        messages: Sequence[Message],
        *,
        schema: Mapping[str, Any],
        temperature: float | None = None,
    ) -> JsonAnswer:
        """Ask until the answer is JSON valid under ``schema``; raise ``LLMError`` if never.

        Transport errors, timeouts, 429 and 5xx are retried with exponential backoff.
        An invalid answer is shown back to the model with the reasons, then asked again.
        Other 4xx (bad key, unknown model) fail at once.
        """
        temp = self.config.temperature if temperature is None else temperature
        convo = [dict(m) for m in messages]
        problems: list[str] = []
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                self._wait(attempt - 1)
            try:
                text = self._complete(convo, temp)
            except (openai.APIConnectionError, openai.RateLimitError) as exc:
                problems.append(f"attempt {attempt + 1}: {type(exc).__name__}: {exc}")
                continue
            except openai.APIStatusError as exc:
                if exc.status_code >= 500:
                    problems.append(f"attempt {attempt + 1}: HTTP {exc.status_code}")
                    continue
                raise LLMError(
                    f"LLM endpoint {self.config.host} refused the request: "
                    f"HTTP {exc.status_code}: {exc.message}"
                ) from exc
            except (ValueError, openai.APIError) as exc:
                # e.g. a 200 whose body is not a chat completion
                problems.append(f"attempt {attempt + 1}: {type(exc).__name__}: {exc}")
                continue
            try:
                data = parse_json_answer(text)
                errs = schema_errors(data, schema)
            except ValueError as exc:
                errs = [str(exc)]
            if not errs:
                return JsonAnswer(data=data, raw=text, attempts=attempt + 1)
            problems.append(f"attempt {attempt + 1}: invalid answer: {'; '.join(errs[:5])}")
            convo = [dict(m) for m in messages] + [
                {"role": "assistant", "content": text[:4000]},
                {
                    "role": "user",
                    "content": "That answer is invalid: "
                    + "; ".join(errs[:5])
                    + ". Answer again with only the JSON object described above.",
                },
            ]
        last = problems[-1] if problems else "no attempt made"
        cls = LLMResponseError if "invalid answer" in last else LLMError
        raise cls(
            f"LLM at {self.config.host} ({self.config.model}) failed after "
            f"{self.config.max_retries + 1} attempts: " + " | ".join(problems[-3:])
        )

    def with_config(self, **changes: Any) -> LLMClient:
        """A new client with some settings changed (e.g. ``temperature=0``)."""
        return LLMClient(replace(self.config, **changes), sleep=self._sleep)
