"""``pace eval``: the evaluation harness on the command line (a typer sub-app).

Mounted by the main CLI as ``pace eval``; also runnable as ``python -m pace.evaluation.cli``.

Example::

    pace eval run --task sentiment --max-new-tokens 32
    pace eval run --task detoxification --alpha 0.05,0.2 --tau 0.95 --scale 0.25,0.5 \\
        --layers '8-23;12-19' --out runs/detox
    pace eval report runs/detox/results.json
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from pace.dictionary import ConceptDictionary

__all__ = ["eval_app"]

eval_app = typer.Typer(
    help="Evaluate PaCE against VecAdd, OrthoProj and prompting on a task.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_console = Console()
if not _console.is_terminal:  # logs and pipes: keep the table's rows on one line each
    _console = Console(width=200)

DEFAULT_LAYERS = "8-23"
"""SmolLM2's middle decoder blocks (of 30), as in ``pace demo``."""


def _fail(message: str) -> typer.Exit:
    _console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=2)


@eval_app.command("run")
def run(
    task: Annotated[str, typer.Option(help="sentiment | detoxification | faithfulness")] = (
        "sentiment"
    ),
    model: Annotated[str, typer.Option(help="Packaged model: smollm2 | gemma3-270m.")] = (
        "smollm2"
    ),
    dictionary: Annotated[
        Path | None,
        typer.Option(
            help="A pace.dictionary/1 file (e.g. pulled from the service); default: the "
            "starter pack's dictionary, built locally and cached."
        ),
    ] = None,
    methods: Annotated[
        str, typer.Option(help="Comma-separated: vanilla,prompting,vecadd,orthoproj,pace.")
    ] = "vanilla,prompting,vecadd,orthoproj,pace",
    layers: Annotated[
        str,
        typer.Option(help="Edited layers, e.g. '8-23'; several sets to sweep: '8-23;12-19'."),
    ] = DEFAULT_LAYERS,
    alpha: Annotated[str, typer.Option(help="PaCE alpha(s), comma-separated.")] = "0.05",
    tau: Annotated[str, typer.Option(help="PaCE tau(s), comma-separated.")] = "0.95",
    scale: Annotated[
        str, typer.Option(help="VecAdd scale(s) (fraction of ||z|| per layer), comma-separated.")
    ] = "0.05",
    atoms: Annotated[
        str,
        typer.Option(
            help="Atom variant(s), comma-separated: raw | center (subtract the mean atom) | "
            "mean-atom (add it as a benign concept) | center+mean-atom (the default: "
            "see docs/evaluation.md)."
        ),
    ] = "center+mean-atom",
    sink_guard: Annotated[
        str,
        typer.Option(
            help="Leave tokens whose activation norm is over this many times the median "
            "(attention sinks) unedited; comma-separated to sweep; 0 edits every token."
        ),
    ] = "10",
    judge: Annotated[
        str | None, typer.Option(help="vader | toxicity | llm; default: the task's.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N prompts.")] = None,
    prompts: Annotated[
        Path | None, typer.Option(help="A JSONL prompt file ({'id','prompt'}).")
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens per answer.")] = 32,
    batch_size: Annotated[int, typer.Option(help="Prompts per generation batch.")] = 16,
    seed: Annotated[int, typer.Option(help="RNG seed (for --sample).")] = 0,
    sample: Annotated[bool, typer.Option(help="Sample instead of greedy decoding.")] = False,
    knowledge: Annotated[
        bool, typer.Option(help="Measure multiple-choice knowledge under each method.")
    ] = True,
    knowledge_limit: Annotated[
        int | None, typer.Option(help="Only the first N knowledge questions.")
    ] = None,
    concept_limit: Annotated[
        int | None, typer.Option(help="Starter dictionary: only the first N concepts.")
    ] = None,
    extra_concepts: Annotated[
        str | None,
        typer.Option(
            help="Enlarge the starter dictionary with PaCE-1M names and template stimuli, "
            "e.g. 'pace1m:2000' (the first 2,000 usable names; see docs/evaluation.md)."
        ),
    ] = None,
    extra_labels: Annotated[
        str,
        typer.Option(
            help="Labels of the extra concepts: benign | minilm:<threshold> (offline seed "
            "partitioner, seeded with the task's undesirable starter concepts)."
        ),
    ] = "benign",
    extra_align: Annotated[
        bool, typer.Option(help="Shift the extra atoms' mean onto the starter atoms' mean.")
    ] = True,
    pace1m_index: Annotated[
        Path | None,
        typer.Option(
            help="PaCE-1M concept_index.txt; default: $PACE1M_INDEX, else "
            "../shared/data/pace1m_concept_index.txt."
        ),
    ] = None,
    token_position: Annotated[str, typer.Option(help="Recipe: last | mean.")] = "last",
    reduction: Annotated[str, typer.Option(help="Recipe: mean | pc1.")] = "mean",
    out: Annotated[Path, typer.Option(help="Folder for results.json and chart.png.")] = Path(
        "pace-eval"
    ),
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Where the starter dictionary is cached; default: the user cache."),
    ] = None,
    keep_responses: Annotated[bool, typer.Option(help="Store every response in the JSON.")] = True,
) -> None:
    """Run the harness: one table, results.json and chart.png under --out."""
    from pace.dictionary import ConceptDictionary
    from pace.evaluation.atoms import select_layers
    from pace.evaluation.enlarge import parse_extra_spec, parse_labels_spec
    from pace.evaluation.errors import EvaluationError
    from pace.evaluation.generation import Decoding
    from pace.evaluation.harness import evaluate
    from pace.evaluation.judges import make_judge
    from pace.evaluation.methods import parse_layers
    from pace.evaluation.report import plot_results, print_report
    from pace.evaluation.starter import label_dictionary, packaged_model_id, starter_dictionary
    from pace.evaluation.sweep import parse_floats, sweep_methods
    from pace.evaluation.tasks import get_task, load_knowledge, load_partition_labels, load_prompts
    from pace.models import load_packaged_model
    from pace.pipeline.extract import Recipe

    try:
        task_obj = get_task(task)
        prompt_list = load_prompts(task_obj, path=prompts, limit=limit)
        questions = load_knowledge(limit=knowledge_limit) if knowledge else None
        kinds = [k.strip() for k in methods.split(",") if k.strip()]
        decoding = Decoding(
            max_new_tokens=max_new_tokens, do_sample=sample, seed=seed, batch_size=batch_size
        )
        judge_obj = make_judge(
            judge or task_obj.default_judge, task_description=task_obj.description
        )
        recipe = Recipe(token_position=token_position, reduction=reduction)  # type: ignore[arg-type]
        if extra_concepts is not None:
            parse_extra_spec(extra_concepts)
            parse_labels_spec(extra_labels)
    except (EvaluationError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    started = time.perf_counter()
    lm, tok = load_packaged_model(model)
    n_layers = int(lm.config.num_hidden_layers)
    try:
        layer_sets = [parse_layers(s, n_layers) for s in layers.split(";") if s.strip()]
        if not layer_sets:
            raise EvaluationError("--layers is empty")
        specs = sweep_methods(
            kinds=kinds,
            alphas=parse_floats(alpha, "--alpha"),
            taus=parse_floats(tau, "--tau"),
            scales=parse_floats(scale, "--scale"),
            layer_sets=layer_sets,
            atoms=[a.strip() for a in atoms.split(",") if a.strip()],
            sink_ratios=[r or None for r in parse_floats(sink_guard, "--sink-guard")],
        )
    except EvaluationError as exc:
        raise _fail(str(exc)) from exc
    needed = sorted({x for ls in layer_sets for x in ls})
    if dictionary is not None:
        try:
            d = ConceptDictionary.load(dictionary)
        except (OSError, ValueError) as exc:
            raise _fail(f"--dictionary: {exc}") from exc
        if d.labels is None:
            d = label_dictionary(d, load_partition_labels(task_obj), task=task_obj.name)
    else:
        # Every layer is extracted once (one cache entry for all layer sweeps), then cut.
        with _console.status("building the starter dictionary (cached after the first run)"):
            d = starter_dictionary(
                lm,
                tok,
                model_id=packaged_model_id(model),
                layers=range(n_layers),
                recipe=recipe,
                task=task_obj,
                limit=concept_limit,
                cache_dir=cache_dir,
            )
    try:
        d = select_layers(d, needed)
        if extra_concepts is not None:
            with _console.status("building the extra concepts' atoms (cached after the first run)"):
                d = _enlarge(
                    d,
                    lm,
                    tok,
                    model,
                    extra_concepts,
                    extra_labels,
                    extra_align,
                    pace1m_index,
                    needed,
                    task_obj.name,
                    recipe,
                    cache_dir,
                )
    except EvaluationError as exc:
        raise _fail(str(exc)) from exc
    _console.print(
        f"{len(d)} concepts ({int(d.undesirable.sum())} undesirable for {task_obj.name}), "
        f"{len(specs)} methods, {len(prompt_list)} prompts, judge {judge_obj.name}"
    )

    def progress(i: int, n: int, spec: object) -> None:
        label = getattr(spec, "label", "")
        _console.print(f"[{i + 1}/{n}] {label}  ({time.perf_counter() - started:.0f} s)")

    try:
        results = evaluate(
            lm,
            tok,
            d,
            task=task_obj,
            methods=specs,
            prompts=prompt_list,
            judge=judge_obj,
            decoding=decoding,
            knowledge=questions,
            model_name=packaged_model_id(model),
            keep_responses=keep_responses,
            on_method=progress,
        )
    except EvaluationError as exc:
        raise _fail(str(exc)) from exc
    out.mkdir(parents=True, exist_ok=True)
    results.save(out / "results.json")
    plot_results(results, out / "chart.png")
    print_report(results, _console)
    _console.print(
        f"wrote {out / 'results.json'} and {out / 'chart.png'} "
        f"in {time.perf_counter() - started:.0f} s"
    )


def _enlarge(
    d: ConceptDictionary,
    lm: Any,
    tok: Any,
    model: str,
    spec: str,
    labels: str,
    align: bool,
    index: Path | None,
    layers: list[int],
    task: str,
    recipe: Any,
    cache_dir: Path | None,
) -> ConceptDictionary:
    """The starter dictionary ``d`` followed by ``spec``'s PaCE-1M concepts."""
    from pace.evaluation.enlarge import (
        extra_dictionary,
        extra_labels,
        merge_dictionaries,
        pace1m_names,
        parse_extra_spec,
    )
    from pace.evaluation.starter import packaged_model_id

    _, count = parse_extra_spec(spec)
    default = os.environ.get("PACE1M_INDEX", "../shared/data/pace1m_concept_index.txt")
    names = pace1m_names(index or Path(default), count, exclude=d.concept_names)
    extra = extra_dictionary(
        lm,
        tok,
        names,
        model_id=packaged_model_id(model),
        layers=layers,
        recipe=recipe,
        cache_dir=cache_dir,
    )
    return merge_dictionaries(d, extra, extra_labels(names, task=task, how=labels), align=align)


@eval_app.command("report")
def report(
    results_file: Annotated[Path, typer.Argument(help="A results.json written by 'run'.")],
    chart: Annotated[Path | None, typer.Option(help="Also write the PNG chart here.")] = None,
    markdown: Annotated[bool, typer.Option(help="Print a markdown table instead.")] = False,
) -> None:
    """Print a saved evaluation's table (and redraw its chart)."""
    from pace.evaluation.errors import EvaluationError
    from pace.evaluation.report import markdown_table, plot_results, print_report
    from pace.evaluation.results import EvalResults

    try:
        results = EvalResults.load(results_file)
    except EvaluationError as exc:
        raise _fail(str(exc)) from exc
    if markdown:
        print(markdown_table(results))
    else:
        print_report(results, _console)
    if chart is not None:
        plot_results(results, chart)
        _console.print(f"wrote {chart}")


if __name__ == "__main__":
    eval_app()
