"""Hook factories: capture the attention mask, edit a decoder block's output.

Hooks are small closures over two shared objects: a :class:`ForwardState` that holds
which token positions of the current forward pass may be edited (pad positions of a
left-padded batch may not), and an optional :class:`Recorder` that keeps the removed
coefficients per forward pass and layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from pace.steering.methods import LayerEdit

__all__ = ["ForwardState", "Recorder", "edit_hook", "mask_capture_hook"]


@dataclass
class ForwardState:
    """What the current forward pass allows to be edited."""

    mask: Tensor | None = None
    """The (batch, total_len) attention mask passed to the model, if 2-D."""
    _keep: tuple[int, Tensor | None] | None = None
    """Cache (seq_len, keep): keep is a bool (batch, seq_len) mask or None for 'all'."""

    def reset(self, mask: Tensor | None) -> None:
        self.mask = mask if isinstance(mask, Tensor) and mask.ndim == 2 else None
        self._keep = None

    def keep(self, batch: int, seq_len: int, device: torch.device) -> Tensor | None:
        """Bool (batch, seq_len) of editable positions, or None when all are editable.

        With a KV cache the mask covers past and current tokens; the current ones are
        its last ``seq_len`` columns. Computed once per forward pass (one host sync).
        """
        if self._keep is not None and self._keep[0] == seq_len:
            return self._keep[1]
        keep: Tensor | None = None
        m = self.mask
        if m is not None and m.shape[0] == batch and m.shape[1] >= seq_len:
            cur = m[:, m.shape[1] - seq_len :].to(device=device) != 0
            keep = None if bool(cur.all()) else cur
        self._keep = (seq_len, keep)
        return keep


@dataclass
class Recorder:
    """Removed coefficients, per forward pass: list of {layer: (batch, seq, n_u)}."""

    passes: list[dict[int, Tensor]] = field(default_factory=list)
    keeps: list[Tensor] = field(default_factory=list)
    """Per pass, bool (batch, seq): which positions were edited."""

    def start_pass(self) -> None:
        self.passes.append({})
        self.keeps.append(torch.zeros(0, dtype=torch.bool))

    def add(self, layer: int, coef: Tensor, keep: Tensor | None) -> None:
        """Record (batch, seq, n_u) coefficients; ``keep`` None means every position."""
        if not self.passes:  # a layer called directly, outside model.forward
            self.start_pass()
        self.passes[-1][layer] = coef.detach().to("cpu", torch.float32)
        if keep is None:
            keep = torch.ones(coef.shape[0], coef.shape[1], dtype=torch.bool)
        self.keeps[-1] = keep.detach().to("cpu")

    def clear(self) -> None:
        self.passes.clear()
        self.keeps.clear()


def _positional_mask(args: tuple[Any, ...]) -> Any:
    # forward(input_ids, attention_mask, ...) for every *ForCausalLM we support.
    return args[1] if len(args) > 1 else None


def mask_capture_hook(
    state: ForwardState, recorder: Recorder | None
) -> Callable[[nn.Module, tuple[Any, ...], dict[str, Any]], None]:
    """A forward pre-hook (``with_kwargs=True``) for the top-level model."""

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("attention_mask", _positional_mask(args))
        state.reset(mask)
        if recorder is not None:
            recorder.start_pass()

    return hook


def _apply(
    hidden: Tensor, edit: LayerEdit, keep: Tensor | None, want_coef: bool = True
) -> tuple[Tensor | None, Tensor | None]:
    """Edit the kept rows of (b, s, d) ``hidden``; returns (new or None, coef or None).

    One token (a decode step at batch 1) goes to the edit's ``edit_token`` shortcut where
    it has one (PaCE on the CPU): no reshapes, and no coefficients unless ``want_coef``.
    """
    b, s, d = hidden.shape
    if b * s == 1 and keep is None:
        token = getattr(edit, "edit_token", None)
        got = token(hidden, want_coef) if token is not None else None
        if got is not None:
            return got
    flat = hidden.reshape(b * s, d)
    if keep is None:
        new_rows, coef = edit(flat)
        new = None if new_rows is flat else new_rows.reshape(b, s, d)
        return new, (coef.reshape(b, s, -1) if coef is not None else None)
    idx = keep.reshape(-1).nonzero().squeeze(1)
    rows = flat.index_select(0, idx)
    new_rows, coef = edit(rows)
    new = None
    if new_rows is not rows:
        out = flat.clone()
        out.index_copy_(0, idx, new_rows)
        new = out.reshape(b, s, d)
    coef_full = None
    if coef is not None:
        coef_full = coef.new_zeros(b * s, coef.shape[1]).index_copy_(0, idx, coef)
        coef_full = coef_full.reshape(b, s, -1)
    return new, coef_full


def edit_hook(
    layer: int, edit: LayerEdit, state: ForwardState, recorder: Recorder | None
) -> Callable[[nn.Module, tuple[Any, ...], Any], Any]:
    """A forward hook for decoder block ``layer`` that edits its output hidden states.

    Decoder blocks return either the hidden states or a tuple that starts with them,
    depending on the architecture and the transformers version; both are handled.
    """

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        is_tuple = isinstance(output, tuple)
        hidden = output[0] if is_tuple else output
        if not isinstance(hidden, Tensor) or hidden.ndim != 3:
            return None
        keep = state.keep(hidden.shape[0], hidden.shape[1], hidden.device)
        new, coef = _apply(hidden, edit, keep, recorder is not None)
        if recorder is not None and coef is not None:
            recorder.add(layer, coef, keep)
        if new is None:
            return None
        return (new, *output[1:]) if is_tuple else new

    return hook
