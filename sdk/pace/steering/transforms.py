"""Atom transforms applied before steering: centering and a benign mean atom.

Raw mean-activation atoms share a large common component (the mean residual stream at
that layer). PaCE's elastic net then explains a big part of *every* activation with
whichever atoms lie closest to that shared direction; when those are undesirable, it
removes a large piece of the activation and the output breaks. Two remedies, usable
together:

- ``center=True``: subtract the mean atom (over all concepts, per layer) from every atom,
  so atoms differ only by what distinguishes the concepts;
- ``mean_atom=True``: add the mean atom as one more *benign* row, so the shared
  component is attributed to something benign and kept.

Example::

    d = transform_atoms(dictionary, center=True, mean_atom=True)

The same per layer, inside the edit: ``PaCE(center=True, mean_atom=True)``.
"""

from __future__ import annotations

import math

import torch

from pace.dictionary import BENIGN, ConceptDictionary

__all__ = ["MEAN_ATOM_NAME", "center_layer", "transform_atoms"]

MEAN_ATOM_NAME = "(mean activation)"


def center_layer(atoms: torch.Tensor, *, center: bool, mean_atom: bool) -> torch.Tensor:
    """One layer's (n, d) atoms centered and/or with their mean appended as row n."""
    af = atoms.float()
    mu = af.mean(dim=0, keepdim=True)
    rows = af - mu if center else af
    if mean_atom:
        rows = torch.cat([rows, mu])
    return rows.to(atoms.dtype) if atoms.dtype.is_floating_point else rows


def transform_atoms(
    dictionary: ConceptDictionary, *, center: bool = False, mean_atom: bool = False
) -> ConceptDictionary:
    """A copy with centered atoms and/or an extra benign mean atom (see module docs).

    With neither option the dictionary is returned as is.
    """
    if not center and not mean_atom:
        return dictionary
    atoms = {
        layer: center_layer(a, center=center, mean_atom=mean_atom)
        for layer, a in dictionary.atoms.items()
    }
    names = list(dictionary.concept_names)
    ids, labels, scores = dictionary.concept_ids, dictionary.labels, dictionary.scores
    if mean_atom:
        names.append(MEAN_ATOM_NAME)
        if ids is not None:
            ids = torch.cat([ids, torch.tensor([-1], dtype=ids.dtype)])
        if labels is not None:
            labels = torch.cat([labels, torch.tensor([BENIGN], dtype=labels.dtype)])
        if scores is not None:
            scores = torch.cat([scores, torch.tensor([math.nan], dtype=scores.dtype)])
    meta = dict(dictionary.metadata)
    meta["transform"] = {"center": center, "mean_atom": mean_atom}
    return ConceptDictionary(
        atoms=atoms,
        concept_names=names,
        concept_ids=ids,
        labels=labels,
        scores=scores,
        metadata=meta,
    )
