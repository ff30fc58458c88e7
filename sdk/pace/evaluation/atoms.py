"""Atom transforms for the harness: a re-export of :mod:`pace.steering.transforms`.

``transform_atoms`` (centering and a benign mean atom) lives with the steering code, where
``PaCE(center=True, mean_atom=True)`` applies it per layer; this module keeps the names
the harness and the CLI import, and ``select_layers``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from pace.dictionary import ConceptDictionary
from pace.evaluation.errors import EvaluationError
from pace.steering.transforms import MEAN_ATOM_NAME, transform_atoms

__all__ = ["MEAN_ATOM_NAME", "select_layers", "transform_atoms"]


def select_layers(dictionary: ConceptDictionary, layers: Iterable[int]) -> ConceptDictionary:
    """A copy with only ``layers`` (each must be in the dictionary)."""
    chosen = sorted({int(x) for x in layers})
    missing = [x for x in chosen if x not in dictionary.atoms]
    if missing or not chosen:
        raise EvaluationError(
            f"the dictionary has no atoms for layers {missing or chosen} (has {dictionary.layers})"
        )
    return replace(dictionary, atoms={x: dictionary.atoms[x] for x in chosen})
