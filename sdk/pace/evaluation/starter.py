"""The starter dictionary, built locally from the shipped pack and cached on disk.

The harness must run offline in one command, so it does not need the service: this
module extracts the 334 starter-pack concepts' atoms with the model itself
(:class:`pace.pipeline.extract.Extractor`) and caches the unlabelled dictionary as a
``pace.dictionary/1`` safetensors file, content-addressed by the model id, the recipe,
the layers and the pack's sha256, under ``platformdirs.user_cache_dir("pace")/eval``
(or ``$PACE_CACHE_DIR/eval``). Labels come from a task's shipped partition, applied on
load (cheap), so one cached file serves every task.

Example::

    d = starter_dictionary(model, tok, model_id=packaged_model_id("smollm2"),
                           layers=range(8, 24), task="detoxification")
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import platformdirs
import torch

from pace.dictionary import UNLABELLED, ConceptDictionary
from pace.evaluation.errors import EvaluationError
from pace.evaluation.tasks import Task, load_partition_labels

__all__ = [
    "eval_cache_dir",
    "label_dictionary",
    "packaged_model_id",
    "starter_dictionary",
    "starter_pack_sha256",
]


def eval_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where cached starter dictionaries live."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("PACE_CACHE_DIR")
    base = Path(env) if env else Path(platformdirs.user_cache_dir("pace"))
    return base / "eval"


def _pack_bytes() -> bytes:
    return resources.files("pace.data").joinpath("starter_pack.jsonl").read_bytes()


def starter_pack_sha256() -> str:
    return hashlib.sha256(_pack_bytes()).hexdigest()


def packaged_model_id(name: str) -> str:
    """A stable id for a packaged model: its name and its distribution's version."""
    from pace.models import PACKAGED_MODELS

    spec = PACKAGED_MODELS.get(name)
    if spec is None:
        raise EvaluationError(
            f"unknown packaged model {name!r}; choose one of {sorted(PACKAGED_MODELS)}"
        )
    try:
        version = importlib.metadata.version(spec.distribution)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"{name}=={version}"


def label_dictionary(
    dictionary: ConceptDictionary, labels: Mapping[str, int], *, task: str | None = None
) -> ConceptDictionary:
    """A copy labelled by name (1 undesirable, 0 benign); names not in ``labels`` get -1."""
    values = [int(labels.get(name, UNLABELLED)) for name in dictionary.concept_names]
    out = dictionary.with_labels(torch.tensor(values, dtype=torch.int8))
    if task is not None:
        meta = dict(out.metadata)
        meta["partition"] = {"id": None, "task": task, "version": "starter"}
        out = ConceptDictionary(
            atoms=out.atoms,
            concept_names=out.concept_names,
            concept_ids=out.concept_ids,
            labels=out.labels,
            scores=out.scores,
            metadata=meta,
        )
    return out


def starter_dictionary(
    model: Any,
    tokenizer: Any,
    *,
    model_id: str,
    layers: Iterable[int],
    recipe: Any = None,
    task: Task | str | None = None,
    limit: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> ConceptDictionary:
    """The starter pack's dictionary for ``model`` at ``layers`` (built once, then cached).

    Args:
        model_id: identifies the weights in the cache key (e.g. :func:`packaged_model_id`).
        recipe: a :class:`pace.pipeline.extract.Recipe` (default: last token, mean).
        task: label with this task's shipped partition; None leaves it unlabelled.
        limit: only the first ``limit`` concepts of the pack (quick runs and tests).
    """
    from pace.pipeline.extract import Extractor, Recipe
    from pace.pipeline.jsonl import read_jsonl

    recipe = recipe or Recipe()
    chosen = sorted({int(x) for x in layers})
    if not chosen:
        raise EvaluationError("layers is empty")
    if limit is not None and limit < 2:
        raise EvaluationError(f"limit must be >= 2 concepts, got {limit}")
    pack_hash = starter_pack_sha256()
    key_src = {
        "model": model_id,
        "recipe": recipe.to_dict(),
        "layers": chosen,
        "pack_sha256": pack_hash,
        "limit": limit,
    }
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()
    path = eval_cache_dir(cache_dir) / f"{key}.safetensors"
    if path.is_file():
        dictionary = ConceptDictionary.load(path)
    else:
        records = read_jsonl(_pack_bytes().decode("utf-8").splitlines()).records
        if limit is not None:
            records = records[:limit]
        extractor = Extractor(model, tokenizer, layers=chosen, recipe=recipe, batch_size=batch_size)
        chunks = list(extractor.iter_chunks(records, chunk_size=len(records), progress=progress))
        names = [n for c in chunks for n in c.names]
        atoms = {layer: torch.cat([c.vectors[layer] for c in chunks if len(c)]) for layer in chosen}
        config = getattr(model, "config", None)
        dictionary = ConceptDictionary(
            atoms=atoms,
            concept_names=names,
            metadata={
                "content_hash": key,
                "model": {
                    "id": model_id,
                    "hidden_size": atoms[chosen[0]].shape[1],
                    "num_layers": getattr(config, "num_hidden_layers", None),
                    "architecture": type(model).__name__,
                },
                "recipe": recipe.to_dict(),
                "concept_set": {
                    "namespace": "local",
                    "name": "starter",
                    "version": pack_hash[:12],
                    "version_id": None,
                },
                "partition": None,
                "missing": [],
            },
        )
        dictionary.save(path)
        # Round-trip through the file so a fresh build and a cache hit are identical (fp16).
        dictionary = ConceptDictionary.load(path)
    if task is None:
        return dictionary
    task_name = task.name if isinstance(task, Task) else str(task)
    return label_dictionary(dictionary, load_partition_labels(task_name), task=task_name)
