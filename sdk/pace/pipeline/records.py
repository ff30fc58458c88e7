"""Concept records: a concept's name, description, tags and stimuli with provenance.

These are the SDK-side values the pipeline passes around (import, generation, export,
extraction); they map one-to-one to the service's ``POST /v1/concepts`` body.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from pace.pipeline.errors import ConceptFormatError

__all__ = ["SOURCES", "ConceptRecord", "Stimulus", "StimulusSource", "normalize_text"]

StimulusSource = Literal["generated", "imported", "human"]
SOURCES: tuple[str, ...] = ("generated", "imported", "human")


def normalize_text(text: str) -> str:
    """The key two stimuli are duplicates under: case-folded, whitespace collapsed."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class Stimulus:
    """One short text in which the concept is present."""

    text: str
    source: StimulusSource = "human"
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise ConceptFormatError("a stimulus needs a non-empty text")
        if self.source not in SOURCES:
            raise ConceptFormatError(
                f"stimulus source {self.source!r} is not one of {', '.join(SOURCES)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "source": self.source, "provenance": dict(self.provenance)}

    @classmethod
    def from_obj(cls, obj: object, *, default_source: StimulusSource = "imported") -> Stimulus:
        """Build from a plain string or a ``{"text", "source", "provenance"}`` mapping."""
        if isinstance(obj, str):
            return cls(obj, default_source)
        if not isinstance(obj, Mapping):
            raise ConceptFormatError(
                f"a stimulus must be a string or an object, not {type(obj).__name__}"
            )
        unknown = set(obj) - {"text", "source", "provenance"}
        if unknown:
            raise ConceptFormatError(f"unknown stimulus field(s): {', '.join(sorted(unknown))}")
        text = obj.get("text")
        if not isinstance(text, str):
            raise ConceptFormatError("stimulus.text must be a string")
        source = obj.get("source", default_source)
        provenance = obj.get("provenance", {})
        if not isinstance(provenance, Mapping):
            raise ConceptFormatError("stimulus.provenance must be an object")
        return cls(text, cast(StimulusSource, source), dict(provenance))


@dataclass(frozen=True)
class ConceptRecord:
    """A concept and its stimuli; names are case-sensitive ("US" and "us" differ)."""

    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    stimuli: tuple[Stimulus, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConceptFormatError("a concept needs a non-empty name")
        if "\x00" in self.name:
            raise ConceptFormatError(f"concept name {self.name!r} contains a NUL character")
        if not isinstance(self.description, str):
            raise ConceptFormatError("description must be a string")
        if not all(isinstance(t, str) for t in self.tags):
            raise ConceptFormatError("tags must be strings")
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "stimuli", tuple(self.stimuli))

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.stimuli]

    def with_stimuli(self, stimuli: Iterable[Stimulus]) -> ConceptRecord:
        """A copy with these stimuli appended, dropping duplicates (see ``normalize_text``)."""
        seen = {normalize_text(s.text) for s in self.stimuli}
        merged = list(self.stimuli)
        for s in stimuli:
            key = normalize_text(s.text)
            if key not in seen:
                seen.add(key)
                merged.append(s)
        return ConceptRecord(self.name, self.description, self.tags, tuple(merged))

    def to_dict(self) -> dict[str, Any]:
        """The ``POST /v1/concepts`` body (and one JSONL line)."""
        return {
            "name": self.name,
            "description": self.description,
            "tags": list(self.tags),
            "stimuli": [s.to_dict() for s in self.stimuli],
        }

    @classmethod
    def from_dict(
        cls, obj: object, *, default_source: StimulusSource = "imported"
    ) -> ConceptRecord:
        """Parse a JSON object; raises ``ConceptFormatError`` naming the bad field."""
        if not isinstance(obj, Mapping):
            raise ConceptFormatError(f"a concept must be an object, not {type(obj).__name__}")
        unknown = set(obj) - {"name", "description", "tags", "stimuli"}
        if unknown:
            raise ConceptFormatError(f"unknown field(s): {', '.join(sorted(unknown))}")
        name = obj.get("name")
        if not isinstance(name, str):
            raise ConceptFormatError("name must be a string")
        description = obj.get("description", "") or ""
        tags = obj.get("tags", []) or []
        if not isinstance(tags, list):
            raise ConceptFormatError("tags must be a list of strings")
        raw = obj.get("stimuli", []) or []
        if not isinstance(raw, list):
            raise ConceptFormatError("stimuli must be a list")
        stimuli = []
        for i, item in enumerate(raw):
            try:
                stimuli.append(Stimulus.from_obj(item, default_source=default_source))
            except ConceptFormatError as exc:
                raise ConceptFormatError(f"stimuli[{i}]: {exc}") from exc
        return cls(name, description, tuple(tags), ()).with_stimuli(stimuli)
