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
:mod:`~pace.evaluation.report`, :mod:`~pace.evaluation.sweep`, :mod:`~pace.evaluation.cli`.
"""

from pace.evaluation.atoms import MEAN_ATOM_NAME, select_layers, transform_atoms
from pace.evaluation.errors import EvaluationError
from pace.evaluation.fluency import distinct_n, response_perplexity
from pace.evaluation.generation import Decoding, Generations, generate_responses
from pace.evaluation.guards import SinkGuard
from pace.evaluation.harness import EditMeter, evaluate
from pace.evaluation.judges import Judge, LLMJudge, ToxicityJudge, VaderJudge, Verdict, make_judge
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
