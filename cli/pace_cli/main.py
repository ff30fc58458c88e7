"""``pace``: the command line for the concept store and PaCE steering.

Commands that need the service use ``--url``/``$PACE_URL``, or start the embedded one
for the length of the command (its data lives under ``$PACE_DATA_DIR`` or the user's
data home, so it persists between commands).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import typer

from pace.evaluation.cli import eval_app
from pace_cli._console import console, fail, friendly_errors, progress

app = typer.Typer(
    help="Concept engineering: a versioned concept store and PaCE steering for transformers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Manage the database.", no_args_is_help=True)
concepts_app = typer.Typer(help="Import and export concepts.", no_args_is_help=True)
stimuli_app = typer.Typer(help="Generate stimuli with an LLM.", no_args_is_help=True)
versions_app = typer.Typer(help="Publish and diff concept-set versions.", no_args_is_help=True)
labels_app = typer.Typer(help="Review partition labels.", no_args_is_help=True)
dictionary_app = typer.Typer(help="Task dictionaries.", no_args_is_help=True)
for sub, name in (
    (eval_app, "eval"),
    (db_app, "db"),
    (concepts_app, "concepts"),
    (stimuli_app, "stimuli"),
    (versions_app, "versions"),
    (labels_app, "labels"),
    (dictionary_app, "dictionary"),
):
    app.add_typer(sub, name=name)

Url = Annotated[
    str | None,
    typer.Option("--url", envvar="PACE_URL", help="Service URL; default: start the embedded one."),
]
ApiKey = Annotated[str | None, typer.Option("--api-key", envvar="PACE_API_KEY", help="API key.")]
SetName = Annotated[str, typer.Option("--set", help="Concept set name.")]
VersionNo = Annotated[
    int | None, typer.Option("--version", help="Version number; default: latest published.")
]
ModelName = Annotated[str, typer.Option("--model", help="Packaged model: smollm2 | gemma3-270m.")]
Layers = Annotated[str, typer.Option("--layers", help="Layers: '8-23', '3,5,7' or 'all'.")]


def parse_layers(spec: str, num_layers: int) -> list[int]:
    """'8-23' -> 8..23, '3,5' -> [3, 5], 'all' -> every layer; validated against the model."""
    spec = spec.strip().lower()
    if spec == "all":
        return list(range(num_layers))
    layers: set[int] = set()
    try:
        for part in spec.split(","):
            lo, _, hi = part.strip().partition("-")
            layers.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ValueError(f"--layers {spec!r}: expected e.g. '8-23', '3,5,7' or 'all'") from None
    bad = sorted(x for x in layers if not 0 <= x < num_layers)
    if bad or not layers:
        raise ValueError(f"--layers {spec!r}: the model has layers 0..{num_layers - 1}")
    return sorted(layers)


def _service_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pace_service", *args]


# -- service ------------------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """Start the service (embedded PostgreSQL unless DATABASE_URL is set)."""
    os.execv(sys.executable, _service_cmd("serve", "--host", host, "--port", str(port)))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Run the database migrations to the latest revision."""
    raise typer.Exit(subprocess.call(_service_cmd("upgrade")))


# -- concepts -----------------------------------------------------------------------------
@concepts_app.command("import")
@friendly_errors
def concepts_import(
    path: Annotated[Path, typer.Argument(help="A .jsonl file, or a PaCE-1M folder.")],
    set_name: Annotated[
        str | None, typer.Option("--set", help="Also publish a version of this set.")
    ] = None,
    case_variants: Annotated[
        str, typer.Option(help="PaCE-1M names differing only by case: keep | merge.")
    ] = "keep",
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Import concepts (JSONL, or the PaCE-1M format) and optionally publish them as a set."""
    from pace.pipeline.jsonl import read_jsonl
    from pace.pipeline.pace1m import import_pace1m
    from pace_cli import workflow
    from pace_cli._connect import connect

    if path.is_dir():
        if case_variants not in ("keep", "merge"):
            raise ValueError("--case-variants must be 'keep' or 'merge'")
        variants = cast(Literal["keep", "merge"], case_variants)
        imported = import_pace1m(path, case_variants=variants)
        records = list(imported.records)
        console.print(imported.report.summary())
    else:
        records = list(read_jsonl(path).records)
    with connect(url, api_key) as client, progress() as bar:
        task = bar.add_task("import", total=len(records))
        ids = workflow.sync_concepts(client, records, on_progress=lambda k: bar.advance(task, k))
        if set_name:
            version = workflow.publish_set(client, set_name, list(ids.values()))
            console.print(f"published {set_name!r} version {version['number']}")
    console.print(f"{len(ids)} concepts in the store")


@concepts_app.command("export")
@friendly_errors
def concepts_export(
    path: Annotated[Path, typer.Argument(help="Output .jsonl file.")],
    set_name: SetName,
    version: VersionNo = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Export a concept-set version as JSONL, one concept per line with its stimuli."""
    from pace.pipeline.jsonl import write_jsonl
    from pace.pipeline.records import ConceptRecord
    from pace_cli._connect import connect, resolve_version

    with connect(url, api_key) as client:
        v = resolve_version(client, set_name, version)
        members = set(v["concept_ids"])
        records = [
            ConceptRecord.from_dict(
                {k: c[k] for k in ("name", "description", "tags", "stimuli") if k in c}
            )
            for c in client.iter_concepts()
            if int(c["id"]) in members
        ]
    n = write_jsonl(records, path)
    console.print(f"wrote {n} concepts to {path}")


# -- stimuli --------------------------------------------------------------------------------
@stimuli_app.command("generate")
@friendly_errors
def stimuli_generate(
    names: Annotated[list[str], typer.Argument(help="Concept names.")],
    out: Annotated[Path, typer.Option("--out", help="Write the concepts here (.jsonl).")],
    n: Annotated[int, typer.Option("--n", help="Stimuli per concept.")] = 30,
    per_call: Annotated[int, typer.Option(help="Concepts per LLM call.")] = 10,
) -> None:
    """Generate stimuli with the configured OpenAI-compatible LLM (PACE_LLM_* / OPENAI_*)."""
    from pace.pipeline.jsonl import write_jsonl
    from pace.pipeline.llm import LLMClient, LLMConfig
    from pace.pipeline.stimuli import generate_stimuli

    llm = LLMClient(LLMConfig.from_env())
    try:
        result = generate_stimuli(names, llm, n=n, concepts_per_call=per_call)
    finally:
        llm.close()
    write_jsonl(result.records, out)
    console.print(f"wrote {len(result.records)} concepts to {out}")
    if not result.report.ok:
        for failure in result.report.failures:
            console.print(f"[yellow]{failure}[/]")
        raise fail(f"{len(result.report.failures)} concept(s) not generated; see above", 2)


# -- extraction -----------------------------------------------------------------------------
@app.command()
@friendly_errors
def extract(
    set_name: SetName = "starter",
    version: VersionNo = None,
    model: ModelName = "smollm2",
    layers: Layers = "8-23",
    token_position: Annotated[str, typer.Option(help="last | mean")] = "last",
    reduction: Annotated[str, typer.Option(help="mean | pc1")] = "mean",
    template: Annotated[str, typer.Option(help="Prompt template with {stimulus}.")] = "{stimulus}",
    batch_size: Annotated[int, typer.Option(help="Stimuli per forward pass.")] = 32,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Extract concept atoms of a set version with a local model and upload them (resumable)."""
    from pace.models import load_packaged_model
    from pace.pipeline.extract import Extractor
    from pace.pipeline.records import ConceptRecord
    from pace_cli import workflow
    from pace_cli._connect import connect, resolve_version

    lm, tokenizer = load_packaged_model(model)
    chosen = parse_layers(layers, int(lm.config.num_hidden_layers))
    recipe = workflow.recipe_for(token_position, reduction, template)
    extractor = Extractor(lm, tokenizer, layers=chosen, recipe=recipe, batch_size=batch_size)
    with connect(url, api_key) as client:
        v = resolve_version(client, set_name, version)
        members = set(v["concept_ids"])
        concepts = [c for c in client.iter_concepts() if int(c["id"]) in members]
        records = [
            ConceptRecord.from_dict({k: c[k] for k in ("name", "description", "tags", "stimuli")})
            for c in concepts
        ]
        ids = {str(c["name"]): int(c["id"]) for c in concepts}
        model_id = workflow.ensure_model(client, model, lm)
        stored = client.get_or_create_recipe(**recipe.to_dict())
        summary = workflow.extract_and_upload(
            client, extractor, records, model_id=model_id, recipe_id=stored.id, concept_ids=ids
        )
    console.print(
        f"extracted {summary.concepts} concepts ({summary.stimuli} stimuli, "
        f"{summary.stimuli_per_second:.1f}/s); {summary.skipped} already stored; "
        f"recipe {stored.id}"
    )


# -- partitions -----------------------------------------------------------------------------
@app.command()
@friendly_errors
def partition(
    task: Annotated[str, typer.Option("--task", help="Task name (e.g. detoxification).")],
    description: Annotated[
        str | None, typer.Option(help="The alignment goal (for a new task / the LLM).")
    ] = None,
    set_name: SetName = "starter",
    version: VersionNo = None,
    from_file: Annotated[
        str | None,
        typer.Option("--from-file", help="A partition JSON file, or a shipped task name."),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(help="Offline: comma-separated seed concepts (MiniLM similarity)."),
    ] = None,
    threshold: Annotated[float, typer.Option(help="Offline: similarity threshold.")] = 0.5,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Label a version's concepts for a task; stores a new partition version.

    With --from-file: labels from a file (or the shipped starter partition of that
    task). With --seeds: the offline MiniLM partitioner. Otherwise the configured LLM
    (PACE_LLM_BASE_URL / PACE_LLM_MODEL / PACE_LLM_API_KEY, or OPENAI_*).
    """
    from pace.pipeline.llm import llm_configured
    from pace.pipeline.offline import MiniLMEmbedder, partition_by_seeds
    from pace.pipeline.records import ConceptRecord
    from pace_cli import workflow
    from pace_cli._connect import connect, resolve_version

    with connect(url, api_key) as client:
        v = resolve_version(client, set_name, version)
        if from_file is not None:
            file = workflow.load_partition_file(from_file)
            if file.task_name != task:
                raise ValueError(f"{from_file}: it is a partition for task {file.task_name!r}")
            stored, unknown = workflow.apply_partition(
                client, file, version_id=int(v["id"]), concept_ids=_names_to_ids(client, v)
            )
            _print_partition(stored, unknown)
            return
        members = set(v["concept_ids"])
        concepts = [c for c in client.iter_concepts() if int(c["id"]) in members]
        records = [ConceptRecord(str(c["name"]), str(c.get("description", ""))) for c in concepts]
        ids = {str(c["name"]): int(c["id"]) for c in concepts}
        goal = description or task
        if seeds is not None:
            result = partition_by_seeds(
                records, seeds.split(","), MiniLMEmbedder(), threshold=threshold, task=goal
            )
        elif llm_configured():
            with progress() as bar:
                tid = bar.add_task("labelling", total=len(records))
                result = workflow.partition_with_configured_llm(
                    records, goal, on_progress=lambda k: bar.advance(tid, k)
                )
        else:
            raise ValueError(
                "no LLM configured (set PACE_LLM_BASE_URL and PACE_LLM_MODEL): "
                "use --seeds for the offline partitioner or --from-file"
            )
        stored = workflow.store_partition(
            client,
            result,
            task_name=task,
            description=goal,
            version_id=int(v["id"]),
            concept_ids=ids,
        )
    _print_partition(stored, [])
    if result.unlabelled:
        console.print(f"[yellow]left unlabelled: {', '.join(result.unlabelled)}[/]")


def _names_to_ids(client: Any, version: dict[str, Any]) -> dict[str, int]:
    members = set(version["concept_ids"])
    return {str(c["name"]): int(c["id"]) for c in client.iter_concepts() if c["id"] in members}


def _print_partition(stored: dict[str, Any], unknown: list[str]) -> None:
    labels = stored.get("labels", [])
    bad = sum(1 for x in labels if x["label"] == "undesirable")
    console.print(
        f"partition {stored['id']} version {stored['version']}: {len(labels)} labels, "
        f"{bad} undesirable"
    )
    if unknown:
        console.print(f"[yellow]{len(unknown)} labelled names are not in the version[/]")


@labels_app.command("override")
@friendly_errors
def labels_override(
    partition_id: Annotated[int, typer.Argument(help="The partition to revise.")],
    changes: Annotated[
        list[str], typer.Argument(help="NAME=undesirable or NAME=benign, one or more.")
    ],
    rationale: Annotated[str, typer.Option(help="Why (recorded with each label).")] = "",
    reviewer: Annotated[str, typer.Option(help="Who reviews.")] = os.environ.get("USER", "human"),
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Override labels by hand; makes a new partition version."""
    from pace_cli._connect import connect

    parsed: list[tuple[str, str]] = []
    for change in changes:
        name, sep, label = change.rpartition("=")
        if not sep or label not in ("benign", "undesirable") or not name:
            raise ValueError(f"{change!r}: expected NAME=benign or NAME=undesirable")
        parsed.append((name, label))
    with connect(url, api_key) as client:
        current = client.get_partition(partition_id)
        v = client.get_version(int(current["concept_set_version_id"]))
        ids = _names_to_ids(client, v)
        missing = [n for n, _ in parsed if n not in ids]
        if missing:
            raise LookupError(f"not in the partition's concept-set version: {missing}")
        labels = [
            {
                "concept_id": ids[n],
                "label": lab,
                "score": 1.0,
                "rationale": rationale,
                "labeler": {"kind": "human", "name": reviewer},
            }
            for n, lab in parsed
        ]
        stored = client.override_labels(partition_id, labels)
    _print_partition(stored, [])


# -- versions -------------------------------------------------------------------------------
@versions_app.command("publish")
@friendly_errors
def versions_publish(
    version_id: Annotated[int, typer.Argument(help="Draft version id.")],
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Publish a draft version: immutable from now on, for everyone."""
    from pace_cli._connect import connect

    with connect(url, api_key) as client:
        v = client.publish_version(version_id)
    console.print(f"published version {v['number']} (id {v['id']}) with {v['n_concepts']} concepts")


@versions_app.command("diff")
@friendly_errors
def versions_diff(
    a: Annotated[int, typer.Argument(help="Version id.")],
    b: Annotated[int, typer.Argument(help="Version id.")],
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """What changed from version A to version B."""
    import json

    from pace_cli._connect import connect

    with connect(url, api_key) as client:
        diff = client.diff_versions(a, b)
    console.print_json(json.dumps(diff))


# -- dictionaries -----------------------------------------------------------------------------
@dictionary_app.command("pull")
@friendly_errors
def dictionary_pull(
    task: Annotated[
        str | None, typer.Option(help="Label rows with the task's latest partition.")
    ] = None,
    set_name: SetName = "starter",
    version: VersionNo = None,
    model: ModelName = "smollm2",
    layers: Layers = "8-23",
    out: Annotated[Path | None, typer.Option(help="Also save the file here.")] = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Materialize (once) and download a task dictionary into the local cache."""
    from pace_cli._connect import connect

    with connect(url, api_key) as client:
        d = _pull(client, task, set_name, version, model, layers)
    console.print(
        f"dictionary {d.content_hash}: {len(d)} concepts x {len(d.layers)} layers x "
        f"{d.hidden_size}; {int(d.undesirable.sum())} undesirable"
    )
    if out is not None:
        d.save(out)
        console.print(f"saved to {out}")


def _pull(
    client: Any, task: str | None, set_name: str, version: int | None, model: str, layers: str
) -> Any:
    from pace_cli import workflow
    from pace_cli._connect import resolve_version

    v = resolve_version(client, set_name, version)
    hf_id, revision = workflow.PACKAGED_MODEL_IDS.get(model, (model, "local"))
    m = client.find_model(hf_id, revision)
    if m is None:
        raise LookupError(f"model {model!r} has no atoms in the store; run `pace extract` first")
    recipes = client.request_json("GET", "/v1/recipes")["items"]
    if not recipes:
        raise LookupError("no recipe in the store; run `pace extract` first")
    partition_id = None
    if task is not None:
        task_id = workflow.find_task(client, task, create=False)
        p = workflow.latest_partition(client, task_id, int(v["id"]))
        if p is None:
            raise LookupError(
                f"task {task!r} has no partition of this version; run `pace partition`"
            )
        partition_id = int(p["id"])
    return client.pull_dictionary(
        concept_set_version_id=int(v["id"]),
        model_id=m.id,
        layers=parse_layers(layers, m.num_layers),
        recipe_id=int(recipes[-1]["id"]),
        partition_id=partition_id,
    )


# -- search and chat ----------------------------------------------------------------------------
@app.command()
@friendly_errors
def search(
    text: Annotated[str, typer.Argument(help="The text whose activation to look up.")],
    layer: Annotated[int, typer.Option(help="Decoder layer.")] = 16,
    k: Annotated[int, typer.Option(help="How many concepts.")] = 10,
    model: ModelName = "smollm2",
    task: Annotated[str | None, typer.Option(help="Show this task's labels.")] = None,
    exact: Annotated[bool, typer.Option(help="Exact search instead of the index.")] = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Which concepts is this text near, at one layer of a model."""
    from rich.table import Table

    from pace.models import load_packaged_model
    from pace.pipeline.extract import Extractor
    from pace_cli import workflow
    from pace_cli._connect import connect

    lm, tokenizer = load_packaged_model(model)
    vector = Extractor(lm, tokenizer, layers=[layer]).stimulus_vectors([text])[layer][0]
    with connect(url, api_key) as client:
        hf_id, revision = workflow.PACKAGED_MODEL_IDS.get(model, (model, "local"))
        m = client.find_model(hf_id, revision)
        if m is None:
            raise LookupError(f"model {model!r} has no atoms in the store; run `pace extract`")
        task_id = workflow.find_task(client, task, create=False) if task else None
        found = client.search_nearest(
            model_id=m.id, layer=layer, vector=vector, k=k, task_id=task_id, exact=exact
        )
    table = Table(
        title=f"nearest concepts at layer {layer} ({'exact' if found.exact else 'index'})"
    )
    for col in ("concept", "similarity", "label"):
        table.add_column(col)
    for r in found.results:
        table.add_row(r.name, f"{r.similarity:.3f}", r.label or "-")
    console.print(table)


@app.command()
@friendly_errors
def chat(
    prompts: Annotated[list[str], typer.Argument(help="One or more prompts.")],
    task: Annotated[str, typer.Option(help="Task whose undesirable concepts to remove.")] = (
        "detoxification"
    ),
    set_name: SetName = "starter",
    version: VersionNo = None,
    model: ModelName = "smollm2",
    layers: Layers = "8-23",
    alpha: Annotated[float, typer.Option(help="Elastic-net strength.")] = 0.05,
    tau: Annotated[float, typer.Option(help="L1 share of the penalty.")] = 0.95,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens per answer.")] = 48,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Answer prompts with and without PaCE, side by side, with the concepts removed."""
    from pace.models import load_packaged_model
    from pace.steering import PaCE
    from pace_cli import chat as chat_mod
    from pace_cli._connect import connect

    with connect(url, api_key) as client:
        d = _pull(client, task, set_name, version, model, layers)
    lm, tokenizer = load_packaged_model(model)
    results = chat_mod.compare(
        lm, tokenizer, d, prompts, method=PaCE(alpha=alpha, tau=tau), max_new_tokens=max_new_tokens
    )
    chat_mod.render(console, results, title=f"task: {task}")


# -- the main job -------------------------------------------------------------------------------
@app.command()
@friendly_errors
def demo(
    task: Annotated[str, typer.Option(help="detoxification | sentiment")] = "detoxification",
    concepts: Annotated[
        int | None, typer.Option(help="Use only N concepts of the pack (a short run).")
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens per answer.")] = 40,
) -> None:
    """The end-to-end job: service, starter pack, extraction, partition, dictionary, answers."""
    from pace_cli.demo import DemoOptions, run_demo

    run_demo(DemoOptions(task=task, concept_limit=concepts, max_new_tokens=max_new_tokens))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
