"""LLMClient against a real loopback OpenAI-compatible server."""

from __future__ import annotations

import json

import pytest

from pace.pipeline.errors import LLMError, LLMResponseError
from pace.pipeline.llm import LLMClient, LLMConfig, llm_configured, parse_json_answer

from .conftest import ScriptedLLM

SCHEMA = {
    "type": "object",
    "required": ["answer"],
    "properties": {"answer": {"type": "integer", "minimum": 0}},
}
ASK = [{"role": "user", "content": 'What is 6 * 7? Answer {"answer": int}.'}]


def test_valid_answer_first_try(llm_server: ScriptedLLM, llm_client: LLMClient) -> None:
    llm_server.script('{"answer": 42}')
    out = llm_client.chat_json(ASK, schema=SCHEMA)
    assert out.data == {"answer": 42} and out.attempts == 1
    req = llm_server.requests[0]
    assert req["model"] == "scripted-model"
    assert req["response_format"] == {"type": "json_object"}
    assert req["messages"][0]["content"] == ASK[0]["content"]


def test_server_errors_are_retried_then_succeed(
    llm_server: ScriptedLLM, llm_client: LLMClient
) -> None:
    err = (500, {"error": {"message": "overloaded", "type": "server_error"}})
    llm_server.script(err, (429, {"error": {"message": "slow down"}}), '{"answer": 7}')
    out = llm_client.chat_json(ASK, schema=SCHEMA)
    assert out.data["answer"] == 7 and out.attempts == 3
    assert len(llm_server.requests) == 3


def test_invalid_answer_is_shown_back_and_repaired(
    llm_server: ScriptedLLM, llm_client: LLMClient
) -> None:
    llm_server.script("Sure! {answer: forty-two", '{"answer": -1}', '```json\n{"answer": 42}\n```')
    out = llm_client.chat_json(ASK, schema=SCHEMA)
    assert out.data == {"answer": 42} and out.attempts == 3
    # The retry carries the bad answer and the validator's reason.
    third = llm_server.requests[2]["messages"]
    assert third[-2] == {"role": "assistant", "content": '{"answer": -1}'}
    assert "minimum" in third[-1]["content"]


def test_gives_up_with_a_clear_error(llm_server: ScriptedLLM, llm_client: LLMClient) -> None:
    llm_server.default = "not json at all"
    with pytest.raises(LLMResponseError, match="failed after 4 attempts"):
        llm_client.chat_json(ASK, schema=SCHEMA)
    assert len(llm_server.requests) == 4


def test_client_errors_fail_fast(llm_server: ScriptedLLM, llm_client: LLMClient) -> None:
    llm_server.script((401, {"error": {"message": "bad key", "type": "auth"}}))
    with pytest.raises(LLMError, match="HTTP 401"):
        llm_client.chat_json(ASK, schema=SCHEMA)
    assert len(llm_server.requests) == 1


def test_server_without_json_mode(llm_server: ScriptedLLM, llm_client: LLMClient) -> None:
    llm_server.reject_json_mode = True
    llm_server.script('{"answer": 1}', '{"answer": 2}')
    assert llm_client.chat_json(ASK, schema=SCHEMA).data == {"answer": 1}
    assert llm_client.chat_json(ASK, schema=SCHEMA).data == {"answer": 2}
    # one rejected request, then plain requests only
    assert [("response_format" in r) for r in llm_server.requests] == [True, False, False]


def test_unreachable_endpoint_is_an_llm_error() -> None:
    cfg = LLMConfig(model="m", base_url="http://127.0.0.1:9/v1", max_retries=1, backoff_s=0)
    with LLMClient(cfg) as client, pytest.raises(LLMError, match="APIConnectionError"):
        client.chat_json(ASK, schema=SCHEMA)


def test_config_from_env() -> None:
    env = {"OPENAI_BASE_URL": "http://h:1/v1", "PACE_LLM_MODEL": "m", "OPENAI_API_KEY": "k"}
    cfg = LLMConfig.from_env(env)
    assert (cfg.base_url, cfg.api_key, cfg.model, cfg.host) == ("http://h:1/v1", "k", "m", "h:1")
    env["PACE_LLM_BASE_URL"] = "http://pace:2/v1"
    assert LLMConfig.from_env(env, temperature=0.0).base_url == "http://pace:2/v1"
    assert llm_configured(env) and not llm_configured({"PACE_LLM_MODEL": "m"})
    with pytest.raises(LLMError, match="PACE_LLM_MODEL"):
        LLMConfig.from_env({})


def test_parse_json_answer_is_defensive() -> None:
    assert parse_json_answer('Here you go:\n{"a": [1, 2]}\nThanks') == {"a": [1, 2]}
    assert parse_json_answer(json.dumps([1])) == [1]
    with pytest.raises(ValueError):
        parse_json_answer("no json")


def test_a_200_that_is_not_a_completion_is_retried(
    llm_server: ScriptedLLM, llm_client: LLMClient
) -> None:
    llm_server.script((200, {"unexpected": True}), (200, {"choices": []}), '{"answer": 3}')
    assert llm_client.chat_json(ASK, schema=SCHEMA).data == {"answer": 3}
    assert len(llm_server.requests) == 3
