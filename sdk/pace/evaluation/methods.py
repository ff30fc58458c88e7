"""What the harness compares: a method kind, its hyperparameters and the edited layers.

Example::

    MethodSpec("pace", alpha=0.05, tau=0.95, layers=(8, 9, 10)).label
    # 'PaCE a=0.05 t=0.95 L8-10'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pace.evaluation.errors import EvaluationError

__all__ = [
    "ATOM_VARIANTS",
    "KINDS",
    "AtomVariant",
    "MethodKind",
    "MethodSpec",
    "format_layers",
    "parse_layers",
]

MethodKind = Literal["vanilla", "prompting", "vecadd", "orthoproj", "pace"]
AtomVariant = Literal["raw", "center", "mean-atom", "center+mean-atom"]
ATOM_VARIANTS: tuple[str, ...] = ("raw", "center", "mean-atom", "center+mean-atom")
_VARIANT_TAGS = {"raw": "", "center": "ctr", "mean-atom": "+mean", "center+mean-atom": "ctr+mean"}
KINDS: tuple[str, ...] = ("vanilla", "prompting", "vecadd", "orthoproj", "pace")
_TITLES = {
    "vanilla": "Vanilla",
    "prompting": "Prompting",
    "vecadd": "VecAdd",
    "orthoproj": "OrthoProj",
    "pace": "PaCE",
}


def parse_layers(spec: str, num_layers: int | None = None) -> tuple[int, ...]:
    """``'8-23'`` -> 8..23, ``'3,5,7'``, ``'all'`` (needs ``num_layers``); validated."""
    text = spec.strip().lower()
    if text == "all":
        if num_layers is None:
            raise EvaluationError("layers 'all' needs the model's number of layers")
        return tuple(range(num_layers))
    layers: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            a, b = int(lo), int(hi or lo)
            if b < a:
                raise ValueError
            layers.update(range(a, b + 1))
    except ValueError:
        raise EvaluationError(f"layers {spec!r}: expected e.g. '8-23', '3,5,7' or 'all'") from None
    bad = sorted(x for x in layers if x < 0 or (num_layers is not None and x >= num_layers))
    if bad or not layers:
        top = f"0..{num_layers - 1}" if num_layers is not None else ">= 0"
        raise EvaluationError(f"layers {spec!r}: layers must be in {top}")
    return tuple(sorted(layers))


def format_layers(layers: Sequence[int]) -> str:
    """Compact ranges: (8, 9, 10, 12) -> '8-10,12'."""
    parts: list[str] = []
    items = sorted(layers)
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        parts.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ",".join(parts)


@dataclass(frozen=True)
class MethodSpec:
    """One point of an evaluation: a method, its hyperparameters and its layers.

    ``layers=None`` edits every layer of the dictionary. ``atoms`` is how the dictionary's
    atoms are transformed first (:func:`pace.evaluation.atoms.transform_atoms`);
    ``sink_ratio`` wraps the edit in :class:`pace.evaluation.guards.SinkGuard`. Vanilla
    and prompting edit nothing and take none of these.
    """

    kind: MethodKind
    alpha: float | None = None
    tau: float | None = None
    scale: float | None = None
    layers: tuple[int, ...] | None = None
    atoms: AtomVariant = "raw"
    sink_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise EvaluationError(f"unknown method {self.kind!r}; choose from {list(KINDS)}")
        if self.kind == "pace":
            alpha = 0.05 if self.alpha is None else self.alpha
            tau = 0.95 if self.tau is None else self.tau
            if not alpha > 0 or not 0 <= tau <= 1:
                raise EvaluationError(f"PaCE needs alpha > 0 and tau in [0, 1], got {alpha}, {tau}")
            object.__setattr__(self, "alpha", float(alpha))
            object.__setattr__(self, "tau", float(tau))
        elif self.alpha is not None or self.tau is not None:
            raise EvaluationError("alpha and tau apply to PaCE only")
        if self.kind == "vecadd":
            scale = 0.5 if self.scale is None else self.scale
            object.__setattr__(self, "scale", float(scale))
        elif self.scale is not None:
            raise EvaluationError("scale applies to VecAdd only")
        if self.atoms not in ATOM_VARIANTS:
            raise EvaluationError(
                f"unknown atoms {self.atoms!r}; choose from {list(ATOM_VARIANTS)}"
            )
        if self.sink_ratio is not None and not self.sink_ratio > 1:
            raise EvaluationError(f"sink_ratio must be > 1, got {self.sink_ratio}")
        if self.kind in ("vanilla", "prompting"):
            object.__setattr__(self, "layers", None)
            object.__setattr__(self, "atoms", "raw")
            object.__setattr__(self, "sink_ratio", None)
        elif self.layers is not None:
            if not self.layers:
                raise EvaluationError("layers is empty")
            object.__setattr__(self, "layers", tuple(sorted({int(x) for x in self.layers})))

    @property
    def edits(self) -> bool:
        return self.kind in ("vecadd", "orthoproj", "pace")

    @property
    def label(self) -> str:
        bits = [_TITLES[self.kind]]
        if self.kind == "pace":
            bits.append(f"a={self.alpha:g} t={self.tau:g}")
        if self.kind == "vecadd":
            bits.append(f"s={self.scale:g}")
        if self.edits and self.layers is not None:
            bits.append(f"L{format_layers(self.layers)}")
        if _VARIANT_TAGS[self.atoms]:
            bits.append(_VARIANT_TAGS[self.atoms])
        if self.sink_ratio is not None:
            bits.append(f"guard{self.sink_ratio:g}")
        return " ".join(bits)

    def params(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in (("alpha", self.alpha), ("tau", self.tau), ("scale", self.scale))
            if v is not None
        }

    def edit_method(self) -> Any:
        """The :mod:`pace.steering` edit method (guarded if asked), or None."""
        from pace.evaluation.guards import SinkGuard
        from pace.steering import OrthoProj, PaCE, VecAdd

        method: Any
        if self.kind == "pace":
            method = PaCE(alpha=float(self.alpha or 0.05), tau=float(self.tau or 0.0))
        elif self.kind == "vecadd":
            method = VecAdd(scale=float(self.scale or 0.0))
        elif self.kind == "orthoproj":
            method = OrthoProj()
        else:
            return None
        return SinkGuard(method, self.sink_ratio) if self.sink_ratio is not None else method
