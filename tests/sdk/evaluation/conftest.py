"""Evaluation fixtures: a tiny random Llama with a char tokenizer, a labelled dictionary
built from its own activations, and a real OpenAI-compatible server on loopback."""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from scripted_llm import ScriptedLLM, serve_scripted_llm
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from pace.dictionary import ConceptDictionary

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def char_tokenizer() -> Any:
    vocab = {tok: i for i, tok in enumerate(SPECIALS + list(string.printable))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        padding_side="left",
    )


@pytest.fixture(scope="session")
def tiny_lm() -> tuple[Any, Any]:
    """A random-init 3-layer Llama (hidden 32) and a char-level tokenizer; no downloads."""
    tok = char_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(SPECIALS) + len(string.printable),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
    ).eval()
    return model, tok


CONCEPTS = {
    "anger": ["I am furious with you.", "You make me so angry."],
    "sadness": ["I feel so sad and alone.", "Everything is hopeless."],
    "kindness": ["Thank you, that was kind.", "She helped the old man."],
    "weather": ["It rains all day.", "The sun is warm today."],
}


@pytest.fixture(scope="session")
def tiny_dictionary(tiny_lm: tuple[Any, Any]) -> ConceptDictionary:
    """Mean last-token activations of each concept's texts at layers 0-2; anger and
    sadness undesirable."""
    from pace.pipeline.extract import Extractor
    from pace.pipeline.records import ConceptRecord

    model, tok = tiny_lm
    records = [ConceptRecord.from_dict({"name": k, "stimuli": v}) for k, v in CONCEPTS.items()]
    chunk = Extractor(model, tok, layers=[0, 1, 2]).extract(records)
    return ConceptDictionary(
        atoms=chunk.vectors,
        concept_names=chunk.names,
        labels=torch.tensor([1, 1, 0, 0], dtype=torch.int8),
        metadata={"content_hash": "tiny"},
    )


@pytest.fixture
def llm_server() -> Iterator[ScriptedLLM]:
    """A real HTTP server speaking ``POST /v1/chat/completions`` with scripted answers."""
    with serve_scripted_llm() as server:
        yield server
