"""Sweeps: every combination of the swept hyperparameters, one point per combination.

Example::

    specs = sweep_methods(alphas=[0.05, 0.1], taus=[0.95], scales=[0.25, 0.5],
                          layer_sets=[tuple(range(8, 24))])
    # vanilla, prompting, 2 VecAdd, 1 OrthoProj, 2 PaCE
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product
from typing import Any

from pace.evaluation.errors import EvaluationError
from pace.evaluation.methods import KINDS, MethodSpec

__all__ = ["parse_floats", "sweep_methods"]


def parse_floats(spec: str, what: str) -> list[float]:
    """``'0.05,0.1'`` -> [0.05, 0.1]; names ``what`` in the error."""
    try:
        values = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise EvaluationError(f"{what} {spec!r}: expected comma-separated numbers") from None
    if not values:
        raise EvaluationError(f"{what} is empty")
    return values


def sweep_methods(
    *,
    kinds: Sequence[str] = KINDS,
    alphas: Sequence[float] = (0.05,),
    taus: Sequence[float] = (0.95,),
    scales: Sequence[float] = (0.5,),
    layer_sets: Sequence[tuple[int, ...] | None] = (None,),
    atoms: Sequence[str] = ("raw",),
    sink_ratios: Sequence[float | None] = (None,),
) -> list[MethodSpec]:
    """The grid: vanilla and prompting once; VecAdd per (scale, layers); OrthoProj per
    layers; PaCE per (alpha, tau, layers); each editing point per atom variant and sink
    ratio. Order: as in ``kinds``."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise EvaluationError(f"unknown methods {unknown}; choose from {list(KINDS)}")
    if not kinds:
        raise EvaluationError("no methods to evaluate")
    specs: list[MethodSpec] = []
    for kind in dict.fromkeys(kinds):
        if kind in ("vanilla", "prompting"):
            specs.append(MethodSpec(kind))  # type: ignore[arg-type]
            continue
        for variant, ratio, ls in product(atoms, sink_ratios, layer_sets):
            common: dict[str, Any] = {"layers": ls, "atoms": variant, "sink_ratio": ratio}
            if kind == "vecadd":
                specs += [MethodSpec("vecadd", scale=s, **common) for s in scales]
            elif kind == "orthoproj":
                specs.append(MethodSpec("orthoproj", **common))
            else:
                specs += [
                    MethodSpec("pace", alpha=a, tau=t, **common) for a, t in product(alphas, taus)
                ]
    return specs
