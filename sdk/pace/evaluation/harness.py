"""Run one task's prompts through several methods with the same model, decoding and seed.

For each :class:`~pace.evaluation.methods.MethodSpec` (vanilla, prompting, VecAdd,
OrthoProj, PaCE, or a sweep of them) the harness generates answers (steering attached
for the editing methods), has the judge score them, measures fluency with the
*unsteered* model, knowledge on the multiple-choice set (under the same steering), the
time per generated token, and how much the edit changed the activations.

Example::

    results = evaluate(model, tok, dictionary, task="sentiment",
                       methods=sweep_methods(layer_sets=[tuple(range(8, 24))]),
                       decoding=Decoding(max_new_tokens=32))
    print_report(results)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor

from pace.dictionary import ConceptDictionary
from pace.evaluation.atoms import transform_atoms
from pace.evaluation.errors import EvaluationError
from pace.evaluation.fluency import distinct_n, mean_length, response_perplexity
from pace.evaluation.generation import Decoding, generate_responses
from pace.evaluation.judges import Judge, make_judge
from pace.evaluation.knowledge import mc_accuracy
from pace.evaluation.methods import MethodSpec
from pace.evaluation.results import EvalResults, MethodResult, ResponseRecord
from pace.evaluation.tasks import MCQuestion, Prompt, Task, get_task, load_prompts

__all__ = ["EditMeter", "evaluate"]


class EditMeter:
    """Wraps a steering edit method and measures ``||z' - z|| / ||z||`` per token row."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.total = 0.0
        self.rows = 0

    def prepare(self, atoms: Tensor, undesirable: Tensor) -> Callable[..., Any]:
        edit = self.inner.prepare(atoms, undesirable)

        def measured(z: Tensor) -> tuple[Tensor, Tensor | None]:
            new, coef = edit(z)
            if new is not z:
                zf = z.float()
                rel = (new.float() - zf).norm(dim=1) / zf.norm(dim=1).clamp_min(1e-12)
                self.total += float(rel.sum())
            self.rows += z.shape[0]
            return new, coef

        return measured

    @property
    def mean(self) -> float:
        return self.total / self.rows if self.rows else 0.0


_TRANSFORMS = {
    "raw": (False, False),
    "center": (True, False),
    "mean-atom": (False, True),
    "center+mean-atom": (True, True),
}


@contextlib.contextmanager
def _steering(
    model: Any, dictionary: ConceptDictionary, spec: MethodSpec
) -> Iterator[EditMeter | None]:
    method = spec.edit_method()
    if method is None:
        yield None
        return
    from pace.steering import steer

    center, mean_atom = _TRANSFORMS[spec.atoms]
    dictionary = transform_atoms(dictionary, center=center, mean_atom=mean_atom)
    meter = EditMeter(method)
    with steer(model, dictionary, method=meter, layers=spec.layers):
        yield meter


def evaluate(
    model: Any,
    tokenizer: Any,
    dictionary: ConceptDictionary,
    *,
    task: Task | str,
    methods: Sequence[MethodSpec],
    prompts: Sequence[Prompt] | None = None,
    judge: Judge | None = None,
    decoding: Decoding | None = None,
    knowledge: Sequence[MCQuestion] | None = None,
    system_prompt: str | None = None,
    model_name: str = "",
    keep_responses: bool = True,
    on_method: Callable[[int, int, MethodSpec], None] | None = None,
) -> EvalResults:
    """Evaluate ``methods`` on ``task`` (see the module docs).

    Args:
        dictionary: labelled for the task (its undesirable rows are removed); each
            spec transforms its atoms as it says (``MethodSpec.atoms``).
        prompts: default: the task's shipped prompt set.
        judge: default: the task's default judge (:func:`make_judge`).
        knowledge: multiple-choice questions, or None to skip the knowledge measure.
        system_prompt: the prompting baseline's system prompt; default: the task's.
        on_method: progress callback ``(index, total, spec)`` before each method.
    """
    task_obj = task if isinstance(task, Task) else get_task(task)
    if not methods:
        raise EvaluationError("no methods to evaluate")
    if any(s.edits for s in methods) and not bool(dictionary.undesirable.any()):
        raise EvaluationError(
            "the dictionary has no undesirable concepts: label it for the task first"
        )
    prompts = list(prompts) if prompts is not None else load_prompts(task_obj)
    judge = judge or make_judge(task_obj.default_judge, task_description=task_obj.description)
    decoding = decoding or Decoding()
    system = system_prompt or task_obj.system_prompt
    texts = [p.prompt for p in prompts]
    results: list[MethodResult] = []
    for i, spec in enumerate(methods):
        if on_method is not None:
            on_method(i, len(methods), spec)
        sys_prompt = system if spec.kind == "prompting" else None
        know = None
        with _steering(model, dictionary, spec) as meter:
            gens = generate_responses(model, tokenizer, texts, decoding, system_prompt=sys_prompt)
            edit_norm = meter.mean if meter is not None else None
            if knowledge:
                know = mc_accuracy(model, tokenizer, knowledge, system_prompt=sys_prompt)
        verdicts = judge.judge(texts, gens.texts)
        ppl = response_perplexity(model, tokenizer, texts, gens.texts)
        records = [
            ResponseRecord(p.id, p.prompt, r, n, v.aligned, v.score, pp)
            for p, r, n, v, pp in zip(
                prompts, gens.texts, gens.tokens, verdicts, ppl.per_response, strict=True
            )
        ]
        layers = (
            list(spec.layers)
            if spec.layers is not None
            else (dictionary.layers if spec.edits else None)
        )
        results.append(
            MethodResult(
                label=spec.label,
                kind=spec.kind,
                params=spec.params(),
                layers=layers,
                atoms=spec.atoms,
                sink_ratio=spec.sink_ratio,
                alignment=sum(v.aligned for v in verdicts) / len(verdicts),
                judge_score=sum(v.score for v in verdicts) / len(verdicts),
                perplexity=ppl.value,
                distinct2=distinct_n(gens.texts, 2),
                mean_length=mean_length(gens.tokens),
                knowledge=know.accuracy if know is not None else None,
                ms_per_token=gens.ms_per_token,
                edit_norm=edit_norm,
                responses=records if keep_responses else [],
            )
        )
    undesirable = int(dictionary.undesirable.sum())
    return EvalResults(
        task=task_obj.name,
        judge=judge.name,
        judge_score_name=getattr(judge, "score_name", "score"),
        model=model_name or str(getattr(getattr(model, "config", None), "_name_or_path", "")),
        dictionary={
            "content_hash": dictionary.content_hash,
            "concepts": len(dictionary),
            "undesirable": undesirable,
            "layers": dictionary.layers,
            "recipe": dictionary.metadata.get("recipe"),
        },
        decoding=asdict(decoding),
        n_prompts=len(prompts),
        n_questions=len(knowledge) if knowledge else 0,
        methods=results,
        extra={"torch_threads": torch.get_num_threads()},
    )
