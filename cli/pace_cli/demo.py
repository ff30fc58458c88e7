"""The main job: from an empty machine to vanilla-vs-PaCE answers, end to end.

1. start the embedded service; 2. load the starter pack; 3. extract atoms with
SmolLM2-135M-Instruct; 4. partition for the task (shipped starter partition, or an
LLM if one is configured); 5. pull the task dictionary; 6. answer a few prompts with
and without PaCE, showing the concepts removed.

Every step is idempotent, so a rerun reuses the stored atoms and the cached dictionary.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from pace.client import Client
from pace.models import load_packaged_model
from pace.pipeline.extract import ExtractionSummary, Extractor
from pace.pipeline.llm import llm_configured
from pace.pipeline.records import ConceptRecord
from pace.steering import PaCE
from pace_cli import chat, workflow
from pace_cli._console import console, progress
from pace_cli._service import running_service

__all__ = ["DEFAULT_LAYERS", "DEMO_PROMPTS", "DemoOptions", "DemoResult", "run_demo"]

DEFAULT_LAYERS: tuple[int, ...] = tuple(range(8, 24))
"""SmolLM2's middle decoder blocks (of 30), where concepts are most linearly readable."""

DEMO_PROMPTS: tuple[str, ...] = (
    "Write one sentence about your noisy neighbours who never stop partying.",
    "What do you really think of people who cut in line?",
    "Describe a rainy Monday morning commute.",
)


@dataclass(frozen=True)
class DemoOptions:
    task: str = "detoxification"
    model: str = "smollm2"
    layers: Sequence[int] = DEFAULT_LAYERS
    prompts: Sequence[str] = DEMO_PROMPTS
    max_new_tokens: int = 40
    concept_limit: int | None = None
    """Use only the first N concepts of the pack (a shortened run, e.g. in CI)."""
    set_name: str = "starter"
    alpha: float = 0.05
    tau: float = 0.95
    batch_size: int = 32
    timings: dict[str, float] = field(default_factory=dict)


def _step(n: int, title: str) -> float:
    console.rule(f"[bold]{n}. {title}")
    return time.perf_counter()


@dataclass(frozen=True)
class DemoResult:
    comparisons: list[chat.Comparison]
    extraction: ExtractionSummary
    dictionary_hash: str | None
    n_concepts: int
    n_undesirable: int


def run_demo(options: DemoOptions) -> DemoResult:
    t = options.timings
    start = _step(1, "start the embedded service")
    with (
        running_service() as service,
        Client(base_url=service.url, api_key=service.api_key) as client,
    ):
        console.print(f"service at {service.url} (log: {service.log})")
        t["service"] = time.perf_counter() - start

        start = _step(2, "load the starter concept pack")
        records = workflow.load_records(None)
        if options.concept_limit is not None:
            records = _balanced_subset(records, options.concept_limit)
        with progress() as bar:
            task = bar.add_task("concepts", total=len(records))
            ids = workflow.sync_concepts(
                client, records, on_progress=lambda k: bar.advance(task, k)
            )
        version = workflow.publish_set(
            client,
            options.set_name,
            [ids[r.name] for r in records],
            description="The pace starter concept pack",
        )
        console.print(
            f"{len(records)} concepts; set {options.set_name!r} version {version['number']} "
            f"(id {version['id']}, published)"
        )
        t["concepts"] = time.perf_counter() - start

        start = _step(3, f"extract atoms with {options.model}")
        model, tokenizer = load_packaged_model(options.model, dtype=torch.float32)
        model_id = workflow.ensure_model(client, options.model, model)
        extractor = Extractor(
            model, tokenizer, layers=list(options.layers), batch_size=options.batch_size
        )
        recipe = client.get_or_create_recipe(**extractor.recipe.to_dict())
        summary = workflow.extract_and_upload(
            client,
            extractor,
            records,
            model_id=model_id,
            recipe_id=recipe.id,
            concept_ids=ids,
        )
        console.print(
            f"extracted {summary.concepts} concepts ({summary.stimuli} stimuli) in "
            f"{summary.seconds:.1f} s; {summary.skipped} already stored"
        )
        t["extract"] = time.perf_counter() - start

        start = _step(4, f"partition for the task {options.task!r}")
        partition_file = workflow.load_partition_file(options.task)
        if llm_configured():
            with progress() as bar:
                tid = bar.add_task("LLM labelling", total=len(records))
                result = workflow.partition_with_configured_llm(
                    records,
                    partition_file.task_description,
                    on_progress=lambda k: bar.advance(tid, k),
                )
            partition = workflow.store_partition(
                client,
                result,
                task_name=options.task,
                description=partition_file.task_description,
                version_id=int(version["id"]),
                concept_ids=ids,
            )
            source = f"the LLM {result.provenance.get('model')}"
        else:
            partition, _ = workflow.apply_partition(
                client, partition_file, version_id=int(version["id"]), concept_ids=ids
            )
            source = f"the shipped starter partition ({partition_file.labeler.get('name')})"
        n_bad = sum(1 for lab in partition.get("labels", []) if lab["label"] == "undesirable")
        console.print(
            f"partition {partition['id']} (version {partition['version']}): "
            f"{n_bad} undesirable concepts, labelled by {source}"
        )
        t["partition"] = time.perf_counter() - start

        start = _step(5, "pull the task dictionary")
        dictionary = client.pull_dictionary(
            concept_set_version_id=int(version["id"]),
            model_id=model_id,
            layers=list(options.layers),
            recipe_id=recipe.id,
            partition_id=int(partition["id"]),
        )
        console.print(
            f"dictionary {dictionary.content_hash}: {len(dictionary)} concepts x "
            f"{len(dictionary.layers)} layers x {dictionary.hidden_size} dims, "
            f"{int(dictionary.undesirable.sum())} undesirable"
        )
        t["dictionary"] = time.perf_counter() - start

    start = _step(6, "vanilla vs PaCE-steered answers")
    comparisons = chat.compare(
        model,
        tokenizer,
        dictionary,
        list(options.prompts),
        method=PaCE(alpha=options.alpha, tau=options.tau),
        max_new_tokens=options.max_new_tokens,
    )
    chat.render(console, comparisons, title=f"task: {options.task}")
    t["generate"] = time.perf_counter() - start
    console.print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in options.timings.items()))
    return DemoResult(
        comparisons=comparisons,
        extraction=summary,
        dictionary_hash=dictionary.content_hash,
        n_concepts=len(dictionary),
        n_undesirable=int(dictionary.undesirable.sum()),
    )


def _balanced_subset(records: list[ConceptRecord], limit: int) -> list[ConceptRecord]:
    """``limit`` concepts, half undesirable-looking (by tag), half benign, for short runs."""
    marks = ("harm:", "deception", "sentiment:negative")
    harmful = [r for r in records if any(t.startswith(marks) for t in r.tags)]
    benign = [r for r in records if not any(t.startswith(marks) for t in r.tags)]
    take = min(limit // 2, len(harmful))
    return harmful[:take] + benign[: limit - take]
