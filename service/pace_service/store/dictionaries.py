"""Materialized dictionaries: built once per content hash, then served as bytes.

A dictionary is the ``pace.dictionary/1`` safetensors file (docs/dictionary-format.md)
for (concept-set version, model, layers, recipe, optional partition).

**Content hash.** sha256 of the canonical JSON of the inputs, the row content (concept
ids and names in row order, the missing names, labels and scores) and the metadata
(model, recipe, concept set, partition). The vectors themselves are not re-read to
hash them: atoms are write-once (:mod:`pace_service.store.vectors`), and concept,
model and recipe ids are never reused, so (model, recipe, layer, concept id)
determines the vector bytes. Hashing therefore costs a few small queries, and a
request for an existing dictionary never touches the atoms.

**Built once.** A transaction-scoped advisory lock on the hash serializes concurrent
requests for the same dictionary: the first builds it (one binary COPY per layer,
streamed into the file, so memory holds one layer) and writes the file atomically
(temp file, then ``os.replace``) under
``<data dir>/blobs/<hash>``; the others wait, then find the row and the file.

**Crashes.** The row is inserted only once the file is in place, in the request's
transaction. A build killed mid-way leaves no row, only a temp file, which the next
start of the service deletes (:mod:`pace_service.store.blob_files`); killed after the
rename but before the commit, it leaves a whole file without a row, which the retry
rewrites with the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from psycopg import sql
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ..copy import RowLayout, copy_out
from ..errors import Conflict, NotFound, ValidationFailed
from ..models import (
    Concept,
    ConceptSet,
    ConceptSetVersion,
    Dictionary,
    Label,
    Model,
    Namespace,
    Recipe,
    Task,
    VersionConcept,
)
from . import models as model_store
from .access import readable_partition, readable_version
from .blob_files import atomic_write
from .vectors import driver_connection

__all__ = [
    "FORMAT",
    "DictionaryPlan",
    "blob_path",
    "get_readable_dictionary",
    "is_content_hash",
    "materialize",
    "plan_dictionary",
]

FORMAT = "pace.dictionary/1"
_LOCK_CLASS = 0x5044  # "PD": advisory-lock namespace for dictionary builds
_LABEL_CODES = {"undesirable": 1, "benign": 0}


@dataclass(frozen=True)
class DictionaryPlan:
    """Everything a dictionary is made of except the vectors, and its content hash."""

    content_hash: str
    inputs: dict[str, Any]
    model: Model
    recipe: Recipe
    version: ConceptSetVersion
    layers: list[int]
    partition_id: int | None
    concept_ids: list[int]
    names: list[str]
    missing: list[str]
    labels: list[int] | None
    scores: list[float] | None
    metadata: dict[str, str]


def is_content_hash(value: str) -> bool:
    """Whether ``value`` looks like a sha256 hex digest."""
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def blob_path(blob_dir: Path, content_hash: str) -> Path:
    """Where a dictionary's bytes live."""
    if not is_content_hash(content_hash):
        raise ValueError(f"not a content hash: {content_hash!r}")
    return blob_dir / content_hash


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _check_layers(layers: list[int], num_layers: int) -> list[int]:
    if not layers:
        raise ValidationFailed("layers must name at least one layer", field="layers")
    for i, layer in enumerate(layers):
        if not 0 <= layer < num_layers:
            raise ValidationFailed(
                f"layer {layer} is outside [0, {num_layers}) for this model", field=f"layers.{i}"
            )
    if len(set(layers)) != len(layers):
        raise ValidationFailed("layers has repeats", field="layers")
    return sorted(layers)


def plan_dictionary(
    session: Session,
    *,
    namespace_id: int,
    concept_set_version_id: int,
    model_id: int,
    layers: list[int],
    recipe_id: int,
    partition_id: int | None,
) -> DictionaryPlan:
    """Resolve and check the inputs, list the rows, and compute the content hash."""
    version = readable_version(session, namespace_id, concept_set_version_id)
    model = model_store.get_model(session, model_id)
    recipe = model_store.get_recipe(session, recipe_id)
    layer_list = _check_layers(list(layers), model.num_layers)
    set_row = session.get(ConceptSet, version.set_id)
    assert set_row is not None
    set_ns = session.get(Namespace, set_row.namespace_id)
    partition_meta: dict[str, Any] | None = None
    if partition_id is not None:
        partition = readable_partition(session, namespace_id, partition_id)
        if partition.concept_set_version_id != version.id:
            raise ValidationFailed(
                f"partition {partition_id} labels concept-set version "
                f"{partition.concept_set_version_id}, not {version.id}",
                field="partition_id",
            )
        task = session.get(Task, partition.task_id)
        partition_meta = {
            "id": partition.id,
            "task": task.name if task else None,
            "task_id": partition.task_id,
            "version": partition.version,
        }

    members = session.execute(
        select(Concept.id, Concept.name)
        .join(VersionConcept, VersionConcept.concept_id == Concept.id)
        .where(VersionConcept.version_id == version.id)
        .order_by(Concept.id)
    ).all()
    conn = driver_connection(session)
    complete = {
        int(r[0])
        for r in conn.execute(
            "SELECT a.concept_id FROM atoms a JOIN version_concepts vc "
            "ON vc.concept_id = a.concept_id AND vc.version_id = %s "
            "WHERE a.model_id = %s AND a.recipe_id = %s AND a.layer = ANY(%s::int[]) "
            "GROUP BY a.concept_id HAVING count(*) = %s",
            (version.id, model.id, recipe.id, layer_list, len(layer_list)),
        ).fetchall()
    }
    concept_ids = [int(cid) for cid, _ in members if cid in complete]
    names = [str(name) for cid, name in members if cid in complete]
    missing = [str(name) for cid, name in members if cid not in complete]

    labels: list[int] | None = None
    scores: list[float] | None = None
    if partition_id is not None:
        by_concept = {
            int(r[0]): (r[1], r[2])
            for r in session.execute(
                select(Label.concept_id, Label.label, Label.score).where(
                    Label.partition_id == partition_id
                )
            ).all()
        }
        labels, scores = [], []
        for cid in concept_ids:
            label, score = by_concept.get(cid, (None, None))
            labels.append(_LABEL_CODES.get(label, -1) if label is not None else -1)
            scores.append(float(score) if score is not None else math.nan)

    inputs = {
        "concept_set_version_id": version.id,
        "model_id": model.id,
        "layers": layer_list,
        "recipe_id": recipe.id,
        "partition_id": partition_id,
    }
    meta_objects: dict[str, Any] = {
        "layers": layer_list,
        "model": {
            "id": model.id,
            "hf_id": model.hf_id,
            "revision": model.revision,
            "hidden_size": model.hidden_size,
            "num_layers": model.num_layers,
            "architecture": model.architecture,
        },
        "recipe": {
            "id": recipe.id,
            "token_position": recipe.token_position,
            "reduction": recipe.reduction,
            "prompt_template": recipe.prompt_template,
            "code_version": recipe.code_version,
        },
        "concept_set": {
            "namespace": set_ns.name if set_ns else None,
            "name": set_row.name,
            "version": version.number,
            "version_id": version.id,
        },
        "partition": partition_meta,
        "missing": missing,
    }
    content = {
        "format": FORMAT,
        "inputs": inputs,
        "meta": meta_objects,
        "concept_ids": concept_ids,
        "concept_names": names,
        # NaN is not JSON: scores are hashed through repr
        "labels": labels,
        "scores": None if scores is None else [repr(s) for s in scores],
    }
    content_hash = hashlib.sha256(_canonical(content)).hexdigest()
    metadata = {key: json.dumps(value, ensure_ascii=False) for key, value in meta_objects.items()}
    metadata.update(
        format=FORMAT,
        content_hash=content_hash,
        concept_names=json.dumps(names, ensure_ascii=False),
    )
    return DictionaryPlan(
        content_hash=content_hash,
        inputs=inputs,
        model=model,
        recipe=recipe,
        version=version,
        layers=layer_list,
        partition_id=partition_id,
        concept_ids=concept_ids,
        names=names,
        missing=missing,
        labels=labels,
        scores=scores,
        metadata=metadata,
    )


def _read_layer(session: Session, plan: DictionaryPlan, layer: int) -> np.ndarray[Any, Any]:
    ids = np.asarray(plan.concept_ids, dtype=np.int64)
    id_array = "'{" + ",".join(str(int(i)) for i in plan.concept_ids) + "}'::bigint[]"
    query = sql.SQL(
        "SELECT concept_id, vector FROM atoms WHERE model_id = {} AND recipe_id = {} "
        "AND layer = {} AND concept_id = ANY({}) ORDER BY concept_id"
    ).format(
        sql.Literal(plan.model.id),
        sql.Literal(plan.recipe.id),
        sql.Literal(int(layer)),
        sql.SQL(id_array),
    )
    layout = RowLayout((("concept_id", "int8"), ("vector", "halfvec")), dim=plan.model.hidden_size)
    rows = copy_out(driver_connection(session), query, layout)
    if not np.array_equal(rows["concept_id"], ids):
        raise Conflict("atoms changed while the dictionary was being built; retry")
    return rows["vector"].astype("<f2")


def _write_blob(session: Session, plan: DictionaryPlan, path: Path) -> int:
    """Write the safetensors file one layer at a time (never all layers in memory).

    A dictionary of 40,000 concepts x 32 layers x 4,096 is 10.5 GB: building it with
    ``safetensors.numpy.save_file`` would hold it all in memory twice. The sizes are
    known in advance, so the header (offsets included) is written first, then each
    layer as it comes out of its binary COPY. The layout is the one the safetensors
    library writes and validates (8-byte padded header, contiguous data).
    """
    n, d = len(plan.concept_ids), plan.model.hidden_size
    tail: list[tuple[str, np.ndarray[Any, Any]]] = [
        ("concept_ids", np.asarray(plan.concept_ids, dtype="<i8"))
    ]
    if plan.labels is not None and plan.scores is not None:
        tail.append(("labels", np.asarray(plan.labels, dtype="i1")))
        tail.append(("scores", np.asarray(plan.scores, dtype="<f4")))
    header: dict[str, Any] = {"__metadata__": plan.metadata}
    offset = 0
    for layer in plan.layers:
        size = n * d * 2
        header[f"atoms.{layer}"] = {
            "dtype": "F16",
            "shape": [n, d],
            "data_offsets": [offset, offset + size],
        }
        offset += size
    tags = {"<i8": "I64", "|i1": "I8", "<f4": "F32"}
    for name, array in tail:
        header[name] = {
            "dtype": tags[array.dtype.str],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    raw_header = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    raw_header += b" " * (-len(raw_header) % 8)

    with atomic_write(path) as f:
        f.write(len(raw_header).to_bytes(8, "little"))
        f.write(raw_header)
        for layer in plan.layers:
            f.write(np.ascontiguousarray(_read_layer(session, plan, layer)).data)
        for _, array in tail:
            f.write(np.ascontiguousarray(array).data)
    return path.stat().st_size


def materialize(session: Session, plan: DictionaryPlan, blob_dir: Path) -> tuple[Dictionary, bool]:
    """The dictionary row for ``plan``, building its file if needed; and whether built now."""
    if not plan.concept_ids:
        raise ValidationFailed(
            f"no concept of concept-set version {plan.version.id} has atoms at all of layers "
            f"{plan.layers} for model {plan.model.id} and recipe {plan.recipe.id}",
            field="layers",
        )
    conn = driver_connection(session)
    conn.execute(
        "SELECT pg_advisory_xact_lock(%s, %s)",
        (_LOCK_CLASS, int(plan.content_hash[:8], 16) & 0x7FFFFFFF),
    )
    path = blob_path(blob_dir, plan.content_hash)
    row = session.get(Dictionary, plan.content_hash, populate_existing=True)
    if row is not None and path.is_file():
        return row, False
    size = _write_blob(session, plan, path)
    session.execute(
        insert(Dictionary)
        .values(
            hash=plan.content_hash,
            inputs_hash=hashlib.sha256(_canonical(plan.inputs)).hexdigest(),
            inputs=plan.inputs,
            concept_set_version_id=plan.version.id,
            model_id=plan.model.id,
            recipe_id=plan.recipe.id,
            partition_id=plan.partition_id,
            layers=plan.layers,
            n_concepts=len(plan.concept_ids),
            size_bytes=size,
        )
        .on_conflict_do_update(index_elements=[Dictionary.hash], set_={"size_bytes": size})
    )
    session.flush()
    row = session.get(Dictionary, plan.content_hash, populate_existing=True)
    assert row is not None
    return row, True


def get_readable_dictionary(session: Session, namespace_id: int, content_hash: str) -> Dictionary:
    """The dictionary if its concept-set version (and partition) is readable, else 404."""
    row = session.get(Dictionary, content_hash) if is_content_hash(content_hash) else None
    if row is None:
        raise NotFound(f"dictionary {content_hash} not found", field="hash")
    try:
        readable_version(session, namespace_id, row.concept_set_version_id)
        if row.partition_id is not None:
            readable_partition(session, namespace_id, row.partition_id)
    except NotFound:
        raise NotFound(f"dictionary {content_hash} not found", field="hash") from None
    return row
