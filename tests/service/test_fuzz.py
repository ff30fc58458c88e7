"""Fuzz every operation of the API against its own OpenAPI schema (schemathesis).

A live uvicorn server over a real embedded PostgreSQL, seeded with one of everything
(model, recipe, concepts, a public set with a published and a draft version, a task,
a partition, vectors, a dictionary) so that small generated ids often hit real rows.
Each operation gets schemathesis' boundary cases (its ``coverage`` phase: each bound
just inside and just outside, missing fields, wrong types) and Hypothesis-generated
positive (valid by the schema) and negative (invalid) cases; every response must be a
non-5xx that conforms to the schema (status code, content type, body). Generation is
derandomized: CI sends the same cases on every run (for the same test code).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
import schemathesis
from helpers import auth
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.drivers import CoverageGenerator
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.generation.overrides import Override
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from vectors_support import upload_body

MIN_CASES = 1000
MAX_COVERAGE_CASES = 40
EXAMPLES = {GenerationMode.POSITIVE: 5, GenerationMode.NEGATIVE: 3}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _seed(base_url: str, key: str) -> None:
    """One of everything, through the API itself."""
    with httpx.Client(base_url=base_url, headers=auth(key), timeout=30) as http:

        def post(path: str, **kwargs: Any) -> Any:
            response = http.post(path, **kwargs)
            assert response.status_code in (200, 201), (path, response.text)
            return response.json()

        model = post(
            "/v1/models",
            json={"hf_id": "fuzz/tiny", "hidden_size": 8, "num_layers": 4, "architecture": "x"},
        )
        recipe = post("/v1/recipes", json={"code_version": "fuzz"})
        bulk = post(
            "/v1/concepts:bulk",
            json=[
                {"name": f"c{i}", "tags": ["t"], "stimuli": [{"text": f"You see c{i}."}]}
                for i in range(6)
            ],
        )
        ids = [item["id"] for item in bulk["items"]]
        concept_set = post("/v1/concept-sets", json={"name": "fuzz-set", "public": True})
        published = post(f"/v1/concept-sets/{concept_set['id']}/versions", json={"empty": True})
        post(f"/v1/concept-set-versions/{published['id']}/concepts", json={"concept_ids": ids})
        post(f"/v1/concept-set-versions/{published['id']}/publish")
        post(f"/v1/concept-sets/{concept_set['id']}/versions", json={})  # a draft
        task = post("/v1/tasks", json={"name": "detox", "description": "no insults"})
        labeler = {"kind": "human", "name": "fuzz"}
        post(
            "/v1/partitions",
            json={
                "task_id": task["id"],
                "concept_set_version_id": published["id"],
                "labels": [
                    {
                        "concept_id": cid,
                        "label": "undesirable" if i % 2 else "benign",
                        "labeler": labeler,
                    }
                    for i, cid in enumerate(ids)
                ],
            },
        )
        vectors = np.random.default_rng(0).standard_normal((2 * len(ids), 8)).astype(np.float32)
        post(
            f"/v1/models/{model['id']}/vectors",
            params={"recipe_id": recipe["id"]},
            content=upload_body(vectors, ids + ids, [0] * len(ids) + [1] * len(ids)),
            headers={"content-type": "application/octet-stream"},
        )
        post(
            "/v1/dictionaries",
            json={
                "concept_set_version_id": published["id"],
                "model_id": model["id"],
                "layers": [0, 1],
                "recipe_id": recipe["id"],
            },
        )


class _Key:
    """The fuzzer's admin key; a new one is minted when a generated case revokes it."""

    def __init__(self, base_url: str, mint: Callable[[], str]) -> None:
        self._base_url = base_url
        self._mint = mint
        self.secret = mint()

    def after(self, case: Any, response: Any) -> None:
        if (
            case.method == "DELETE"
            and case.path == "/v1/keys/{key_id}"
            and response.status_code == 200
        ):
            me = httpx.get(f"{self._base_url}/v1/me", headers=auth(self.secret), timeout=30)
            if me.status_code == 401:
                self.secret = self._mint()


def _coverage_cases(schema: Any, operation: Any) -> list[Any]:
    """Schemathesis' deterministic boundary cases (its ``coverage`` phase): each bound
    of each field just inside and just outside, missing required fields, wrong types;
    at most ``MAX_COVERAGE_CASES`` of them, evenly spread (search alone has ~290)."""
    generator = CoverageGenerator(
        operation=operation,
        generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        generation_config=schema.config.generation_for(operation=operation, phase="coverage"),
        auth_storage=None,
        override=Override(),
        feedback=FeedbackSources(),
    )
    cases = list(generator)
    step = -(-len(cases) // MAX_COVERAGE_CASES)  # an even spread over all its kinds
    return cases[::step]


def _fuzz(operation: Any, mode: GenerationMode, n: int, call: Callable[[Any], None]) -> None:
    """Run ``call`` on ``n`` derandomized cases of ``operation`` (fewer if it has fewer)."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        call(case)

    run()


@pytest.mark.timeout(600)
def test_fuzz_every_operation(
    live_service: tuple[str, str], make_key: Callable[[str, str], str], app: Any
) -> None:
    base_url, seed_key = live_service
    _seed(base_url, seed_key)
    schema = schemathesis.openapi.from_dict(app.openapi())
    key = _Key(base_url, lambda: make_key("team-a", "admin"))
    counts: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    started = time.monotonic()

    def call(case: Any) -> None:
        response = case.call(base_url=base_url, headers=auth(key.secret))
        counts[case.operation.label] += 1
        statuses[response.status_code // 100] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        finally:
            key.after(case, response)

    for operation in operations:
        for case in _coverage_cases(schema, operation):
            try:
                call(case)
            except FailureGroup as exc:
                failures.append(f"{operation.label} [coverage]: {exc}")
        for mode, n in EXAMPLES.items():
            try:
                _fuzz(operation, mode, n, call)
            except (Exception, FailureGroup) as exc:  # collect every operation's failure
                failures.append(f"{operation.label} [{mode.value}]: {exc}")

    elapsed = time.monotonic() - started
    total = sum(counts.values())
    print(
        f"fuzzed {total} cases over {len(counts)} operations in {elapsed:.1f} s; "
        f"status classes {dict(sorted(statuses.items()))}"
    )
    assert not failures, "\n\n".join(failures)
    assert {op.label for op in operations} == set(counts), "an operation was never exercised"
    assert len(operations) >= 50
    assert total >= MIN_CASES, counts
    assert statuses[2] >= total // 10, statuses  # the seeded rows are reached, not only 4xx
