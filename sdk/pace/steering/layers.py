"""Find the decoder blocks of a transformers model, by architecture.

Layer ``L`` is the output of decoder block ``L`` (0-based), as in the dictionary format:
``hidden_states[L + 1]`` of a forward pass with ``output_hidden_states=True``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from pace.steering.errors import SteeringError

__all__ = ["LAYER_PATHS", "decoder_layers", "hidden_size"]

# Dotted attribute paths to the ModuleList of decoder blocks, tried in order.
LAYER_PATHS: tuple[str, ...] = (
    "model.layers",  # Llama, Mistral, Qwen2, Gemma, Gemma3ForCausalLM, Phi3, ...
    "model.language_model.layers",  # Gemma3ForConditionalGeneration, Llava-style wrappers
    "language_model.layers",
    "layers",  # a bare LlamaModel / Qwen2Model / ...
    "transformer.h",  # GPT-2, GPT-J, Bloom-style
    "h",  # a bare GPT2Model
    "gpt_neox.layers",  # GPT-NeoX, Pythia
    "model.decoder.layers",  # OPT
    "decoder.layers",
)


def _get_path(root: nn.Module, path: str) -> nn.Module | None:
    obj: object = root
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, nn.Module) else None


def decoder_layers(
    model: nn.Module,
    layer_modules: Sequence[nn.Module] | Mapping[int, nn.Module] | None = None,
) -> dict[int, nn.Module]:
    """Map layer index -> decoder block module.

    ``layer_modules`` overrides discovery: a sequence (index = layer) or a mapping.
    Raises :class:`SteeringError` when no known layer list is found.
    """
    if layer_modules is not None:
        items = (
            layer_modules.items()
            if isinstance(layer_modules, Mapping)
            else enumerate(layer_modules)
        )
        found: dict[int, nn.Module] = {}
        for index, module in items:
            if not isinstance(module, nn.Module):
                raise SteeringError(
                    f"layer_modules[{index}] is {type(module).__name__}, not a torch.nn.Module"
                )
            found[int(index)] = module
        if not found:
            raise SteeringError("layer_modules is empty")
        return found
    for path in LAYER_PATHS:
        candidate = _get_path(model, path)
        if isinstance(candidate, nn.ModuleList) and len(candidate) > 0:
            return dict(enumerate(candidate))
    raise SteeringError(
        f"cannot find the decoder layers of {type(model).__name__}: tried {list(LAYER_PATHS)}; "
        "pass layer_modules= (a list of the decoder blocks) to steer()"
    )


def hidden_size(model: nn.Module) -> int | None:
    """The residual-stream width from the model's config, or None if it has none."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    get_text = getattr(config, "get_text_config", None)
    text = get_text() if callable(get_text) else config
    for attr in ("hidden_size", "n_embd", "d_model"):
        value = getattr(text, attr, None)
        if isinstance(value, int):
            return value
    return None
