"""The partition result shared by the LLM and offline partitioners."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ConceptLabel", "LabelName", "Partition"]

LabelName = Literal["benign", "undesirable"]


@dataclass(frozen=True)
class ConceptLabel:
    """One concept's label: ``score`` is how undesirable it is (higher = more)."""

    concept: str
    label: LabelName
    score: float
    rationale: str
    labeler_kind: Literal["llm", "offline", "human"]
    labeler_name: str

    def to_api(self, concept_id: int) -> dict[str, Any]:
        """One entry of ``POST /v1/partitions``'s ``labels``."""
        return {
            "concept_id": int(concept_id),
            "label": self.label,
            "score": float(self.score),
            "rationale": self.rationale,
            "labeler": {"kind": self.labeler_kind, "name": self.labeler_name},
        }


@dataclass
class Partition:
    """Labels for a task over a list of concepts; nothing is dropped silently."""

    task: str
    labels: list[ConceptLabel]
    unlabelled: list[str] = field(default_factory=list)
    """Concepts with no valid label after every retry."""
    issues: list[str] = field(default_factory=list)
    """Everything rejected on the way (malformed items, concepts not asked, ...)."""
    provenance: dict[str, Any] = field(default_factory=dict)

    def by_name(self) -> dict[str, ConceptLabel]:
        return {label.concept: label for label in self.labels}

    @property
    def undesirable(self) -> list[str]:
        return [label.concept for label in self.labels if label.label == "undesirable"]

    def to_request(
        self, *, task_id: int, concept_set_version_id: int, concept_ids: Mapping[str, int]
    ) -> dict[str, Any]:
        """The ``POST /v1/partitions`` body; ``concept_ids`` maps every labelled name."""
        missing = [label.concept for label in self.labels if label.concept not in concept_ids]
        if missing:
            raise KeyError(f"no concept id for {len(missing)} labelled concepts: {missing[:5]}")
        return {
            "task_id": int(task_id),
            "concept_set_version_id": int(concept_set_version_id),
            "labels": [label.to_api(concept_ids[label.concept]) for label in self.labels],
            "provenance": {**self.provenance, "unlabelled": list(self.unlabelled)},
        }
