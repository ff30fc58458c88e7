"""The evaluation harness: PaCE against VecAdd, OrthoProj and prompting, side by side.

Example::

    from pace.evaluation import Decoding, evaluate, starter_dictionary, sweep_methods
    d = starter_dictionary(model, tok, model_id="smollm2==0.1.2", layers=range(8, 24),
                           task="sentiment")
    results = evaluate(model, tok, d, task="sentiment", methods=sweep_methods(),
                       decoding=Decoding(max_new_tokens=32))
    results.save("results.json")

Submodules: :mod:`~pace.evaluation.judges`, :mod:`~pace.evaluation.fluency`,
:mod:`~pace.evaluation.knowledge`, :mod:`~pace.evaluation.harness`,
:mod:`~pace.evaluation.report`, :mod:`~pace.evaluation.sweep`, :mod:`~pace.evaluation.enlarge`,
:mod:`~pace.evaluation.cli`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pace.evaluation.atoms import MEAN_ATOM_NAME, select_layers, transform_atoms
    from pace.evaluation.errors import EvaluationError
    from pace.evaluation.fluency import distinct_n, response_perplexity
    from pace.evaluation.generation import Decoding, Generations, generate_responses
    from pace.evaluation.guards import SinkGuard
    from pace.evaluation.harness import EditMeter, evaluate
    from pace.evaluation.judges import (
        Judge,
        LLMJudge,
        ToxicityJudge,
        VaderJudge,
        Verdict,
        make_judge,
    )
    from pace.evaluation.knowledge import Knowledge, mc_accuracy
    from pace.evaluation.methods import MethodSpec, format_layers, parse_layers
    from pace.evaluation.report import markdown_table, plot_results, print_report, results_table
    from pace.evaluation.results import EvalResults, MethodResult, ResponseRecord
    from pace.evaluation.starter import label_dictionary, packaged_model_id, starter_dictionary
    from pace.evaluation.sweep import parse_floats, sweep_methods
    from pace.evaluation.tasks import (
        TASKS,
        MCQuestion,
        Prompt,
        Task,
        get_task,
        load_knowledge,
        load_partition_labels,
        load_prompts,
    )

__all__ = [
    "MEAN_ATOM_NAME",
    "TASKS",
    "Decoding",
    "EditMeter",
    "EvalResults",
    "EvaluationError",
    "Generations",
    "Judge",
    "Knowledge",
    "LLMJudge",
    "MCQuestion",
    "MethodResult",
    "MethodSpec",
    "Prompt",
    "ResponseRecord",
    "SinkGuard",
    "Task",
    "ToxicityJudge",
    "VaderJudge",
    "Verdict",
    "distinct_n",
    "evaluate",
    "format_layers",
    "generate_responses",
    "get_task",
    "label_dictionary",
    "load_knowledge",
    "load_partition_labels",
    "load_prompts",
    "make_judge",
    "markdown_table",
    "mc_accuracy",
    "packaged_model_id",
    "parse_floats",
    "parse_layers",
    "plot_results",
    "print_report",
    "response_perplexity",
    "results_table",
    "select_layers",
    "starter_dictionary",
    "sweep_methods",
    "transform_atoms",
]

# Lazy: most of these modules import torch (seconds); `pace --help` and `pace eval --help`
# need none of them. Each name is imported from its module on first use.
_LAZY: dict[str, str] = {
    "Decoding": "pace.evaluation.generation",
    "EditMeter": "pace.evaluation.harness",
    "EvalResults": "pace.evaluation.results",
    "EvaluationError": "pace.evaluation.errors",
    "Generations": "pace.evaluation.generation",
    "Judge": "pace.evaluation.judges",
    "Knowledge": "pace.evaluation.knowledge",
    "LLMJudge": "pace.evaluation.judges",
    "MCQuestion": "pace.evaluation.tasks",
    "MEAN_ATOM_NAME": "pace.evaluation.atoms",
    "MethodResult": "pace.evaluation.results",
    "MethodSpec": "pace.evaluation.methods",
    "Prompt": "pace.evaluation.tasks",
    "ResponseRecord": "pace.evaluation.results",
    "SinkGuard": "pace.evaluation.guards",
    "TASKS": "pace.evaluation.tasks",
    "Task": "pace.evaluation.tasks",
    "ToxicityJudge": "pace.evaluation.judges",
    "VaderJudge": "pace.evaluation.judges",
    "Verdict": "pace.evaluation.judges",
    "distinct_n": "pace.evaluation.fluency",
    "evaluate": "pace.evaluation.harness",
    "format_layers": "pace.evaluation.methods",
    "generate_responses": "pace.evaluation.generation",
    "get_task": "pace.evaluation.tasks",
    "label_dictionary": "pace.evaluation.starter",
    "load_knowledge": "pace.evaluation.tasks",
    "load_partition_labels": "pace.evaluation.tasks",
    "load_prompts": "pace.evaluation.tasks",
    "make_judge": "pace.evaluation.judges",
    "markdown_table": "pace.evaluation.report",
    "mc_accuracy": "pace.evaluation.knowledge",
    "packaged_model_id": "pace.evaluation.starter",
    "parse_floats": "pace.evaluation.sweep",
    "parse_layers": "pace.evaluation.methods",
    "plot_results": "pace.evaluation.report",
    "print_report": "pace.evaluation.report",
    "response_perplexity": "pace.evaluation.fluency",
    "results_table": "pace.evaluation.report",
    "select_layers": "pace.evaluation.atoms",
    "starter_dictionary": "pace.evaluation.starter",
    "sweep_methods": "pace.evaluation.sweep",
    "transform_atoms": "pace.evaluation.atoms",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pace.evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
