"""Test data for the vector, dictionary and search tests (``from vectors_support import ...``).

Rows are created through the ORM (the resource routes have their own tests); the
endpoints under test are always called over HTTP.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Seeded",
    "activation_like",
    "create_pc1_recipe",
    "safetensors_bytes",
    "seed",
    "upload_body",
]

_ST_DTYPES = {"<f2": "F16", "<f4": "F32", "<i8": "I64", "<i4": "I32", "|i1": "I8"}


def safetensors_bytes(
    tensors: Mapping[str, np.ndarray[Any, Any] | tuple[str, np.ndarray[Any, Any]]],
    metadata: Mapping[str, str] | None = None,
) -> bytes:
    """A safetensors file; a ``(dtype, array)`` value forces the dtype tag (e.g. BF16)."""
    header: dict[str, Any] = {}
    chunks: list[bytes] = []
    offset = 0
    for name, value in tensors.items():
        if isinstance(value, tuple):
            tag, array = value
        else:
            array = value
            tag = _ST_DTYPES[array.dtype.str]
        raw = np.ascontiguousarray(array).tobytes()
        header[name] = {
            "dtype": tag,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = dict(metadata)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    return len(head).to_bytes(8, "little") + head + b"".join(chunks)


def upload_body(
    vectors: np.ndarray[Any, Any],
    concept_ids: Sequence[int],
    layers: Sequence[int] | int,
    *,
    ids_first: bool = False,
) -> bytes:
    """The body of ``POST /v1/models/{id}/vectors``.

    ``ids_first=True`` lays the int64 tensors out before the vectors, as the safetensors
    libraries do (the service then streams it); the default puts the vectors first
    (the service buffers it).
    """
    m = len(vectors)
    lay = np.full(m, layers, np.int64) if isinstance(layers, int) else np.asarray(layers, np.int64)
    ids = np.asarray(concept_ids, np.int64)
    vec = np.ascontiguousarray(vectors)
    if ids_first:
        return safetensors_bytes({"concept_ids": ids, "layers": lay, "vectors": vec})
    return safetensors_bytes({"vectors": vec, "concept_ids": ids, "layers": lay})


def activation_like(n: int, d: int, *, seed: int = 0, rank: int = 32) -> np.ndarray[Any, Any]:
    """Low-rank + noise vectors with a shared offset, like residual-stream activations."""
    rng = np.random.default_rng(seed)
    mu = 0.4 * rng.standard_normal(d)
    basis = rng.standard_normal((rank, d)) / np.sqrt(rank)
    latent = rng.standard_normal((n, rank)) * (np.arange(1, rank + 1) ** -0.5) * 3
    x = mu + latent @ basis + 0.35 * rng.standard_normal((n, d))
    return x.astype(np.float32)


@dataclass
class Seeded:
    """Ids of the rows made by :func:`seed`."""

    model_id: int
    recipe_id: int
    concept_ids: list[int]
    names: list[str]
    set_id: int
    version_id: int
    task_id: int | None = None
    partition_id: int | None = None
    labels: dict[int, str] = field(default_factory=dict)


def seed(
    app: Any,
    *,
    namespace: str = "team-a",
    n_concepts: int = 10,
    hidden_size: int = 64,
    num_layers: int = 4,
    hf_id: str = "test/tiny",
    public: bool = False,
    publish: bool = True,
    labels: Mapping[int, str] | None = None,
    prefix: str = "concept",
) -> Seeded:
    """A model, a recipe, concepts in ``namespace``, a set version holding them all,
    and (with ``labels``: concept index -> label) a task and a partition."""
    from sqlalchemy import select

    from pace_service.models import (
        Concept,
        ConceptSet,
        ConceptSetVersion,
        Label,
        Model,
        Partition,
        Recipe,
        Task,
        VersionConcept,
    )
    from pace_service.store.keys import get_or_create_namespace

    factory = app.state.session_factory
    with factory() as s:
        ns, _ = get_or_create_namespace(s, namespace)
        model = s.scalars(select(Model).where(Model.hf_id == hf_id)).first()
        if model is None:
            model = Model(
                hf_id=hf_id,
                revision="main",
                hidden_size=hidden_size,
                num_layers=num_layers,
                architecture="LlamaForCausalLM",
            )
            s.add(model)
        recipe_hash = hashlib.sha256(b"recipe-last-mean").hexdigest()
        recipe = s.scalars(select(Recipe).where(Recipe.content_hash == recipe_hash)).first()
        if recipe is None:
            recipe = Recipe(
                token_position="last",
                reduction="mean",
                prompt_template="{stimulus}",
                code_version="test",
                content_hash=recipe_hash,
            )
            s.add(recipe)
        concepts = [
            Concept(namespace_id=ns.id, name=f"{prefix}-{i}", description="", tags=[])
            for i in range(n_concepts)
        ]
        s.add_all(concepts)
        cset = ConceptSet(namespace_id=ns.id, name=f"{prefix}-set", description="", public=public)
        s.add(cset)
        s.flush()
        version = ConceptSetVersion(set_id=cset.id, number=1, status="draft")
        s.add(version)
        s.flush()
        s.add_all([VersionConcept(version_id=version.id, concept_id=c.id) for c in concepts])
        s.flush()
        if publish:
            version.status = "published"
            version.published_at = dt.datetime.now(dt.UTC)
        out = Seeded(
            model_id=model.id,
            recipe_id=recipe.id,
            concept_ids=[c.id for c in concepts],
            names=[c.name for c in concepts],
            set_id=cset.id,
            version_id=version.id,
        )
        if labels is not None:
            task = Task(namespace_id=ns.id, name=f"{prefix}-task", description="detox")
            s.add(task)
            s.flush()
            partition = Partition(task_id=task.id, concept_set_version_id=version.id, version=1)
            s.add(partition)
            s.flush()
            for i, label in labels.items():
                s.add(
                    Label(
                        partition_id=partition.id,
                        concept_id=concepts[i].id,
                        label=label,
                        score=0.5 + 0.01 * i,
                        rationale="",
                        labeler={"kind": "human", "name": "test"},
                    )
                )
                out.labels[concepts[i].id] = label
            out.task_id, out.partition_id = task.id, partition.id
        s.commit()
    return out


def seed_uploaded(
    client: Any, app: Any, key: str, n_concepts: int, hidden_size: int = 16, **seed_kw: Any
) -> tuple[Seeded, np.ndarray[Any, Any]]:
    """``seed`` a one-layer model and upload activation-like vectors for its concepts with
    ``key``: a searchable layer 0. Returns the seed and the vectors (concept order)."""
    s = seed(app, n_concepts=n_concepts, hidden_size=hidden_size, num_layers=1, **seed_kw)
    vecs = activation_like(n_concepts, hidden_size)
    r = client.post(
        f"/v1/models/{s.model_id}/vectors?recipe_id={s.recipe_id}",
        content=upload_body(vecs, s.concept_ids, 0),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200, r.text
    return s, vecs


def create_pc1_recipe(client: Any, headers: Mapping[str, str]) -> int:
    """A second recipe (mean position, first PC) through the API; returns its id."""
    r = client.post(
        "/v1/recipes",
        json={
            "token_position": "mean",
            "reduction": "pc1",
            "prompt_template": "{stimulus}",
            "code_version": "t",
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])
