"""Steer a local transformers model: remove undesirable concepts from its activations.

Example::

    from pace.steering import PaCE, steer

    with steer(model, dictionary, method=PaCE(alpha=0.05, tau=0.95)) as handle:
        out = model.generate(**inputs, max_new_tokens=32, do_sample=False)

Centered atoms with a benign mean atom, attention sinks left alone (what ``pace chat``
and the evaluation harness use): ``method=PaCE(center=True, mean_atom=True)`` and
``sink_ratio=10.0``. Baselines use the same call: ``method=VecAdd(scale=0.5)``,
``OrthoProj()``, ``NoOp()``.
"""

from pace.steering.errors import SteeringError
from pace.steering.explain import Explanation
from pace.steering.guards import SinkGuard
from pace.steering.layers import decoder_layers
from pace.steering.methods import EditMethod, LayerEdit, NoOp, OrthoProj, PaCE, VecAdd
from pace.steering.steer import SteeringHandle, steer
from pace.steering.transforms import MEAN_ATOM_NAME, transform_atoms

__all__ = [
    "MEAN_ATOM_NAME",
    "EditMethod",
    "Explanation",
    "LayerEdit",
    "NoOp",
    "OrthoProj",
    "PaCE",
    "SinkGuard",
    "SteeringError",
    "SteeringHandle",
    "VecAdd",
    "decoder_layers",
    "steer",
    "transform_atoms",
]
