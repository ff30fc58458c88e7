"""Attach a concept edit to a model's decoder layers: ``steer()`` and its handle.

Example::

    with steer(model, dictionary, method=PaCE(alpha=0.05, tau=0.95), record=True) as h:
        out = model.generate(**inputs, max_new_tokens=32, do_sample=False)
    h.explanation().plot("removed.png")

Hooks are registered when ``steer()`` returns and removed by ``remove()`` or when the
``with`` block exits, also on an exception.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from pace.dictionary import ConceptDictionary
from pace.steering.errors import SteeringError
from pace.steering.explain import Explanation, build_explanation
from pace.steering.guards import SinkGuard
from pace.steering.hooks import ForwardState, Recorder, edit_hook, mask_capture_hook
from pace.steering.layers import decoder_layers, hidden_size
from pace.steering.methods import EditMethod, PaCE

__all__ = ["SteeringHandle", "steer"]


class SteeringHandle:
    """The hooks of one ``steer()`` call. A context manager; ``remove()`` is idempotent."""

    def __init__(
        self,
        hooks: list[RemovableHandle],
        layers: list[int],
        concept_names: list[str],
        recorder: Recorder | None,
        edits: list[Any] | None = None,
    ) -> None:
        self._hooks = hooks
        self._edits = edits or []
        self.layers = layers
        """The edited layers, ascending."""
        self.concept_names = concept_names
        """Names of the undesirable concepts, in coefficient order."""
        self._recorder = recorder

    @property
    def active(self) -> bool:
        return bool(self._hooks)

    @property
    def uncertified_rows(self) -> int:
        """Token rows, over all layers, that PaCE left unedited because its fast solve could
        not certify them (CUDA with ``PaCE(deferred_check=True)``; 0 elsewhere)."""
        return sum(e.uncertified_rows() for e in self._edits if hasattr(e, "uncertified_rows"))

    def remove(self) -> None:
        """Detach every hook (safe to call twice)."""
        if not self._hooks:
            return
        while self._hooks:
            self._hooks.pop().remove()
        skipped = self.uncertified_rows
        if skipped:
            warnings.warn(
                f"PaCE left {skipped} token row(s) unedited at some layer because the "
                "fixed-schedule solve could not certify their optimum; PaCE(deferred_check="
                "False), the default, re-solves such rows exactly",
                RuntimeWarning,
                stacklevel=2,
            )

    def __enter__(self) -> SteeringHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    def clear_record(self) -> None:
        """Forget what was recorded so far (e.g. between two generations)."""
        if self._recorder is not None:
            self._recorder.clear()

    def explanation(self) -> Explanation:
        """What was removed per token since attach (or the last ``clear_record()``)."""
        if self._recorder is None:
            raise SteeringError("steer(..., record=True) is needed for an explanation")
        return build_explanation(
            self._recorder.passes, self._recorder.keeps, self.layers, self.concept_names
        )


def _undesirable_mask(undesirable: Tensor | Sequence[int] | Sequence[bool], n: int) -> Tensor:
    t = torch.as_tensor(undesirable)
    if t.ndim == 1 and t.numel() == 0:
        return torch.zeros(n, dtype=torch.bool)
    if t.dtype == torch.bool:
        if t.shape != (n,):
            raise SteeringError(f"undesirable mask has shape {tuple(t.shape)}; expected ({n},)")
        return t.cpu()
    if t.dtype.is_floating_point or t.ndim != 1:
        raise SteeringError("undesirable must be a bool mask (n,) or a list of row indices")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
        raise SteeringError(f"undesirable indices must be in [0, {n}); got {t.tolist()}")
    mask = torch.zeros(n, dtype=torch.bool)
    mask[t.long()] = True
    return mask


def _resolve(
    dictionary: ConceptDictionary | Mapping[int, Tensor],
    undesirable: Tensor | Sequence[int] | Sequence[bool] | None,
    concept_names: Sequence[str] | None,
) -> tuple[Mapping[int, Tensor], Tensor, list[str]]:
    if isinstance(dictionary, ConceptDictionary):
        atoms: Mapping[int, Tensor] = dictionary.atoms
        names = list(dictionary.concept_names)
        n = len(names)
        if undesirable is None:
            mask = dictionary.undesirable.cpu()
        else:
            mask = _undesirable_mask(undesirable, n)
    elif isinstance(dictionary, Mapping):
        if not dictionary:
            raise SteeringError("the atoms mapping is empty")
        atoms = dictionary
        shapes = {int(k): tuple(v.shape) for k, v in atoms.items()}
        n_rows = {s[0] for s in shapes.values() if len(s) == 2}
        if any(len(s) != 2 for s in shapes.values()) or len(n_rows) != 1:
            raise SteeringError(f"atoms must be (n, d) with the same n per layer; got {shapes}")
        n = n_rows.pop()
        if concept_names is not None and len(concept_names) != n:
            raise SteeringError(f"concept_names has {len(concept_names)} names for {n} rows")
        names = list(concept_names) if concept_names is not None else [f"#{i}" for i in range(n)]
        if undesirable is None:
            raise SteeringError(
                "with plain atoms, pass undesirable= (a bool mask or the row indices to remove)"
            )
        mask = _undesirable_mask(undesirable, n)
    else:
        raise SteeringError(
            f"dictionary must be a ConceptDictionary or a {{layer: (n, d) tensor}} mapping, "
            f"got {type(dictionary).__name__}"
        )
    if concept_names is not None and len(concept_names) != len(names):
        raise SteeringError(f"concept_names has {len(concept_names)} names for {len(names)} rows")
    return atoms, mask, names


def _device_of(module: nn.Module, fallback: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for p in fallback.parameters():
        return p.device
    return torch.device("cpu")


def steer(
    model: nn.Module,
    dictionary: ConceptDictionary | Mapping[int, Tensor],
    *,
    method: EditMethod | None = None,
    layers: Sequence[int] | None = None,
    layer_modules: Sequence[nn.Module] | Mapping[int, nn.Module] | None = None,
    undesirable: Tensor | Sequence[int] | Sequence[bool] | None = None,
    concept_names: Sequence[str] | None = None,
    record: bool = False,
    sink_ratio: float | None = None,
) -> SteeringHandle:
    """Edit the residual stream of ``model`` at the given layers until the handle is removed.

    Args:
        model: a decoder-only transformers model (or any module whose decoder blocks
            are found by :func:`pace.steering.layers.decoder_layers` or given).
        dictionary: a :class:`~pace.ConceptDictionary` (undesirable = its labels), or a
            ``{layer: (n, d) tensor}`` mapping of raw atoms with ``undesirable=``.
        method: :class:`PaCE` (default, alpha 0.05, tau 0.95), :class:`VecAdd`,
            :class:`OrthoProj` or :class:`NoOp`.
        layers: layers to edit; default every layer of the dictionary.
        layer_modules: the decoder blocks (list or {layer: module}), to override discovery.
        undesirable: override the labels: a bool mask (n,) or the row indices to remove.
        concept_names: names for plain atoms (explanations use them).
        record: keep the removed coefficients for :meth:`SteeringHandle.explanation`.
        sink_ratio: leave rows whose norm is above this multiple of the median row norm
            of the same forward pass unedited (attention sinks; :class:`SinkGuard`); None
            edits every row.

    Pad positions (attention mask 0) of the current forward pass are never edited. The
    atoms are cast and moved to each layer's device once, here.
    """
    method = PaCE() if method is None else method
    if not isinstance(method, EditMethod):
        raise SteeringError(f"method must have a prepare() method, got {type(method).__name__}")
    if sink_ratio is not None:
        method = SinkGuard(method, sink_ratio)
    atoms, mask, names = _resolve(dictionary, undesirable, concept_names)
    blocks = decoder_layers(model, layer_modules)
    chosen = sorted(atoms) if layers is None else [int(x) for x in layers]
    if not chosen:
        raise SteeringError("layers is empty")
    if len(set(chosen)) != len(chosen):
        raise SteeringError(f"layers has duplicates: {chosen}")
    width = hidden_size(model)
    for layer in chosen:
        if layer not in atoms:
            raise SteeringError(f"layer {layer} is not in the dictionary (has {sorted(atoms)})")
        if layer not in blocks:
            raise SteeringError(
                f"layer {layer} is not a decoder layer of the model (has {len(blocks)}: "
                f"{min(blocks)}..{max(blocks)})"
            )
        a = atoms[layer]
        if width is not None and a.shape[1] != width:
            raise SteeringError(
                f"atoms of layer {layer} have width {a.shape[1]}; the model's hidden size "
                f"is {width}"
            )
        if not a.dtype.is_floating_point:
            raise SteeringError(f"atoms of layer {layer} have dtype {a.dtype}; need floating")

    edits = {}
    for layer in chosen:
        device = _device_of(blocks[layer], model)
        a = atoms[layer].detach().to(device)
        norms = a.float().norm(dim=1)
        if not bool(torch.isfinite(norms).all()) or bool((norms == 0).any()):
            bad = (~torch.isfinite(norms) | (norms == 0)).nonzero().squeeze(1)[:5].tolist()
            raise SteeringError(f"atoms of layer {layer} are zero or non-finite at rows {bad}")
        edits[layer] = method.prepare(a, mask.to(device))

    state = ForwardState()
    recorder = Recorder() if record else None
    undesirable_names = [names[i] for i in mask.nonzero().squeeze(1).tolist()]
    hooks: list[RemovableHandle] = []
    try:
        hooks.append(
            model.register_forward_pre_hook(mask_capture_hook(state, recorder), with_kwargs=True)
        )
        for layer in chosen:
            hook = edit_hook(layer, edits[layer], state, recorder)
            hooks.append(blocks[layer].register_forward_hook(hook))
    except BaseException:
        for h in hooks:
            h.remove()
        raise
    return SteeringHandle(hooks, chosen, undesirable_names, recorder, list(edits.values()))
