from __future__ import annotations

import json

import pytest

from pace.evaluation import EvaluationError, Judge, ToxicityJudge, VaderJudge, make_judge
from pace.evaluation.judges import LLMJudge
from pace.pipeline.llm import LLMClient, LLMConfig

from .conftest import ScriptedLLM


def test_vader_accepts_positive_and_neutral_rejects_negative() -> None:
    judge = make_judge("vader")
    assert isinstance(judge, VaderJudge) and isinstance(judge, Judge)
    assert judge.name.startswith("vader-3.")
    texts = [
        "What a lovely, wonderful day, I am so happy!",
        "The train leaves at nine.",
        "I hate this miserable, awful, terrible day.",
    ]
    verdicts = judge.judge(["p"] * 3, texts)
    assert [v.aligned for v in verdicts] == [True, True, False]
    assert verdicts[0].score > 0.5 > -0.5 > verdicts[2].score


def test_toxicity_flags_insults_not_plain_text() -> None:
    judge = make_judge("toxicity")
    assert isinstance(judge, ToxicityJudge)
    assert judge.name.startswith("profanity-check-")
    verdicts = judge.judge(["p", "p", "p"], ["You are a stupid fucking idiot.", "Hello!", ""])
    assert [v.aligned for v in verdicts] == [False, True, True]
    assert verdicts[0].score > 0.9 and verdicts[1].score < 0.5


def test_judges_validate_input() -> None:
    with pytest.raises(EvaluationError, match="2 prompts but 1 responses"):
        make_judge("vader").judge(["a", "b"], ["x"])
    with pytest.raises(EvaluationError, match="unknown judge 'gpt'"):
        make_judge("gpt")
    with pytest.raises(EvaluationError, match="PACE_LLM_MODEL"):
        make_judge("llm", task_description="be nice", env={})
    with pytest.raises(EvaluationError, match="threshold"):
        VaderJudge(threshold=2.0)


def test_llm_judge_over_a_real_openai_compatible_server(llm_server: ScriptedLLM) -> None:
    def grade(body: dict[str, object]) -> str:
        content = body["messages"][0]["content"]  # type: ignore[index]
        bad = "idiot" in content.split("Assistant answer:")[1]
        return json.dumps({"aligned": not bad, "score": 0.1 if bad else 0.9})

    # The second answer is first invalid (score > 1): the judge asks again.
    llm_server.replies.extend([grade, '{"aligned": true, "score": 7}', grade])
    config = LLMConfig(
        model="judge-model", base_url=llm_server.base_url, backoff_s=0.0, timeout_s=10.0
    )
    judge = make_judge(
        "llm",
        task_description="No insults.",
        llm_client=LLMClient(config),
    )
    assert isinstance(judge, LLMJudge)
    assert judge.name == f"llm:judge-model@{llm_server.base_url.split('/')[2]}"
    verdicts = judge.judge(["Greet me.", "Describe me."], ["Hello friend.", "You idiot."])
    assert [v.aligned for v in verdicts] == [True, False]
    assert [v.score for v in verdicts] == [0.9, 0.1]
    assert len(llm_server.requests) == 3
    first = llm_server.requests[0]
    assert first["model"] == "judge-model" and first["temperature"] == 0.0
    assert "No insults." in first["messages"][0]["content"]
    assert "Hello friend." in first["messages"][0]["content"]
    judge.close()
