"""Enlarge the starter dictionary with PaCE-1M concept names, offline.

The paper's dictionary has 40,000 concepts; the starter pack has 334. PaCE-1M's stimuli
are not available offline, so the extra concepts get **template stimuli**: a few fixed
sentences that name the concept (:data:`TEMPLATES`), read with the same recipe as the
starter (last token, mean over stimuli by default). Names come from the authors'
frequency-ranked ``concept_index.txt`` (parsed with ``ast.literal_eval`` by
:func:`pace.pipeline.pace1m.read_concept_index`): repeats and case variants are merged,
names that are not plain words are dropped, and so are names the starter already has.

Template atoms share the templates' context, as starter atoms share the scenarios'.
``merge_dictionaries(..., align=True)`` shifts the extra atoms per layer so that their
mean equals the starter atoms' mean; after centering, both groups then differ only by
what distinguishes their concepts (without it, "is a starter concept" is itself a
direction of the dictionary).

Labels: the starter concepts keep the task's shipped partition; the extra ones are
benign by default, or labelled by the offline seed partitioner
(:func:`pace.pipeline.offline.partition_by_seeds` with all-MiniLM-L6-v2), the seeds
being the task's undesirable starter concepts.

The extra atoms are cached like the starter's, content-addressed by model id, recipe,
layers, names and templates. Example::

    names = pace1m_names("pace1m_concept_index.txt", 2000, exclude=starter.concept_names)
    extra = extra_dictionary(model, tok, names, model_id="smollm2==0.1.2", layers=range(30))
    labels = extra_labels(names, task="sentiment", how="minilm:0.6")
    d = merge_dictionaries(starter, extra, labels)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from pace.dictionary import BENIGN, ConceptDictionary
from pace.evaluation.errors import EvaluationError
from pace.evaluation.starter import eval_cache_dir

__all__ = [
    "TEMPLATES",
    "TEMPLATE_VERSION",
    "extra_dictionary",
    "extra_labels",
    "merge_dictionaries",
    "pace1m_names",
    "parse_extra_spec",
    "parse_labels_spec",
    "template_records",
]

TEMPLATE_VERSION = "pace1m-templates/1"
TEMPLATES: tuple[str, ...] = (
    "{name}",
    "You think about {name}",
    "Your friend talks about {name}",
    "The next word you read is {name}",
)
"""Short second-person contexts (like PaCE-1M's scenarios) that end on the concept's
name, so that the last token, which the default recipe reads, is the name's own. Short
on purpose: extraction cost is proportional to the number of tokens."""

_WORDS = re.compile(r"[A-Za-z][A-Za-z'-]*(?: [A-Za-z][A-Za-z'-]*)*")


def parse_extra_spec(spec: str) -> tuple[str, int]:
    """``"pace1m:2000"`` -> ``("pace1m", 2000)``; the only source is ``pace1m``."""
    source, _, count = spec.partition(":")
    if source != "pace1m" or not count.isdigit() or int(count) < 1:
        raise EvaluationError(f"extra concepts must look like 'pace1m:2000', got {spec!r}")
    return source, int(count)


def pace1m_names(
    index_path: str | os.PathLike[str], limit: int, *, exclude: Iterable[str] = ()
) -> list[str]:
    """The first ``limit`` usable names of a PaCE-1M index, in its (frequency) order.

    Repeats and case variants are merged (first spelling kept); names that are not plain
    words (digits, '.', ':') or that ``exclude`` has (case-insensitive) are skipped.
    """
    from pace.pipeline.errors import PipelineError
    from pace.pipeline.pace1m import read_concept_index

    try:
        names = read_concept_index(index_path)
    except (OSError, PipelineError) as exc:
        raise EvaluationError(f"cannot read the PaCE-1M index {index_path}: {exc}") from exc
    seen = {n.casefold() for n in exclude}
    out: list[str] = []
    for name in names:
        key = name.casefold()
        if key in seen or len(name) < 2 or not _WORDS.fullmatch(name):
            continue
        seen.add(key)
        out.append(name)
        if len(out) == limit:
            break
    return out


def template_records(names: Sequence[str]) -> list[Any]:
    """One :class:`~pace.pipeline.records.ConceptRecord` per name, with the templates."""
    from pace.pipeline.records import ConceptRecord, Stimulus

    prov = {"templates": TEMPLATE_VERSION}
    return [
        ConceptRecord(name, tags=("pace-1m",)).with_stimuli(
            Stimulus(t.replace("{name}", name), "human", prov) for t in TEMPLATES
        )
        for name in names
    ]


def extra_dictionary(
    model: Any,
    tokenizer: Any,
    names: Sequence[str],
    *,
    model_id: str,
    layers: Iterable[int],
    recipe: Any = None,
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    progress: bool = False,
) -> ConceptDictionary:
    """Unlabelled atoms for ``names`` from the template stimuli (built once, then cached).

    The cache key leaves the layers out: a cached file that lacks some of ``layers`` is
    rebuilt with the union of its layers and ``layers``.
    """
    from pace.evaluation.atoms import select_layers
    from pace.pipeline.extract import Extractor, Recipe

    recipe = recipe or Recipe()
    chosen = sorted({int(x) for x in layers})
    if not chosen or not names:
        raise EvaluationError("extra_dictionary needs layers and at least one name")
    key_src = {
        "model": model_id,
        "recipe": recipe.to_dict(),
        "names_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest(),
        "templates": [TEMPLATE_VERSION, list(TEMPLATES)],
    }
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()
    path = eval_cache_dir(cache_dir) / f"extra-{key}.safetensors"
    if path.is_file():
        cached = ConceptDictionary.load(path)
        if set(chosen) <= set(cached.layers):
            return select_layers(cached, chosen)
        build = sorted(set(chosen) | set(cached.layers))
    else:
        build = chosen
    extractor = Extractor(model, tokenizer, layers=build, recipe=recipe, batch_size=batch_size)
    records = template_records(names)
    chunks = list(extractor.iter_chunks(records, chunk_size=256, progress=progress))
    got = [n for c in chunks for n in c.names]
    atoms = {layer: torch.cat([c.vectors[layer] for c in chunks if len(c)]) for layer in build}
    ConceptDictionary(
        atoms=atoms,
        concept_names=got,
        metadata={
            "content_hash": key,
            "model": {"id": model_id, "hidden_size": atoms[build[0]].shape[1]},
            "recipe": recipe.to_dict(),
            "concept_set": {
                "namespace": "local",
                "name": "pace1m-templates",
                "version": key[:12],
                "version_id": None,
            },
            "partition": None,
            "missing": [],
        },
    ).save(path)
    return select_layers(ConceptDictionary.load(path), chosen)


def parse_labels_spec(how: str) -> float | None:
    """``"benign"`` -> None; ``"minilm:0.6"`` -> 0.6 (a cosine threshold in [-1, 1])."""
    if how == "benign":
        return None
    kind, _, value = how.partition(":")
    try:
        threshold = float(value)
    except ValueError:
        threshold = float("nan")
    if kind != "minilm" or not -1.0 <= threshold <= 1.0:
        raise EvaluationError(f"extra labels must be 'benign' or 'minilm:<-1..1>', got {how!r}")
    return threshold


def extra_labels(names: Sequence[str], *, task: str, how: str = "benign") -> dict[str, int]:
    """Labels for the extra concepts: ``benign`` (all 0) or ``minilm:<threshold>``.

    ``minilm:T`` labels a name undesirable when its all-MiniLM-L6-v2 cosine similarity to
    one of the task's undesirable starter concepts reaches T.
    """
    threshold = parse_labels_spec(how)
    if threshold is None:
        return dict.fromkeys(names, BENIGN)
    from pace.evaluation.tasks import load_partition_labels
    from pace.pipeline.errors import PipelineError
    from pace.pipeline.offline import MiniLMEmbedder, partition_by_seeds

    seeds = [n for n, lab in load_partition_labels(task).items() if lab == 1]
    try:
        partition = partition_by_seeds(names, seeds, MiniLMEmbedder(), threshold=threshold)
    except PipelineError as exc:
        raise EvaluationError(str(exc)) from exc
    return {x.concept: int(x.label == "undesirable") for x in partition.labels}


def merge_dictionaries(
    base: ConceptDictionary,
    extra: ConceptDictionary,
    labels: Mapping[str, int],
    *,
    align: bool = True,
) -> ConceptDictionary:
    """``base`` (labelled) followed by ``extra`` labelled from ``labels``; see module docs.

    ``align`` shifts the extra atoms per layer so that their mean is ``base``'s.
    """
    if base.labels is None:
        raise EvaluationError("label the base dictionary before merging")
    missing = [x for x in base.layers if x not in extra.atoms]
    if missing:
        raise EvaluationError(f"the extra dictionary has no layers {missing}")
    atoms: dict[int, torch.Tensor] = {}
    for layer, a in base.atoms.items():
        e = extra.atoms[layer].to(torch.float32)
        if align:
            e = e - e.mean(dim=0, keepdim=True) + a.to(torch.float32).mean(dim=0, keepdim=True)
        atoms[layer] = torch.cat([a.to(torch.float32), e]).to(a.dtype)
    names = list(base.concept_names) + list(extra.concept_names)
    extra_lab = [int(labels.get(n, BENIGN)) for n in extra.concept_names]
    meta = dict(base.metadata)
    meta["extra"] = {
        "concept_set": extra.metadata.get("concept_set"),
        "concepts": len(extra),
        "undesirable": sum(extra_lab),
        "aligned": align,
    }
    meta["content_hash"] = hashlib.sha256(
        f"{base.content_hash}+{extra.content_hash}+{align}+{extra_lab}".encode()
    ).hexdigest()
    return ConceptDictionary(
        atoms=atoms,
        concept_names=names,
        labels=torch.cat([base.labels, torch.tensor(extra_lab, dtype=base.labels.dtype)]),
        metadata=meta,
    )
