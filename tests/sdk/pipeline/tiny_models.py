"""Tiny random-init transformers models and a char-level tokenizer (no downloads)."""

from __future__ import annotations

import string
from typing import Any

import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

SPECIALS = ["<pad>", "<s>", "<unk>"]


def char_tokenizer(padding_side: str = "right") -> Any:
    """A real fast tokenizer: one token per character, BOS prepended."""
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
        unk_token="<unk>",
        padding_side=padding_side,
    )


VOCAB = len(SPECIALS) + len(string.printable)


def tiny_model(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model: torch.nn.Module
    if arch == "llama":
        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=VOCAB,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=3,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=256,
            )
        )
    elif arch == "gpt2":
        model = GPT2LMHeadModel(
            GPT2Config(
                vocab_size=VOCAB,
                n_embd=32,
                n_layer=3,
                n_head=4,
                n_positions=256,
                bos_token_id=1,
                eos_token_id=1,
            )
        )
    else:
        raise ValueError(arch)
    return model.eval()
