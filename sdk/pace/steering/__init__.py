"""Steer a local transformers model: remove undesirable concepts from its activations.

Example::

    from pace.steering import PaCE, steer

    with steer(model, dictionary, method=PaCE(alpha=0.05, tau=0.95)) as handle:
        out = model.generate(**inputs, max_new_tokens=32, do_sample=False)

Baselines use the same call: ``method=VecAdd(scale=0.5)``, ``OrthoProj()``, ``NoOp()``.
"""

from pace.steering.errors import SteeringError
from pace.steering.explain import Explanation
from pace.steering.layers import decoder_layers
from pace.steering.methods import EditMethod, LayerEdit, NoOp, OrthoProj, PaCE, VecAdd
from pace.steering.steer import SteeringHandle, steer

__all__ = [
    "EditMethod",
    "Explanation",
    "LayerEdit",
    "NoOp",
    "OrthoProj",
    "PaCE",
    "SteeringError",
    "SteeringHandle",
    "VecAdd",
    "decoder_layers",
    "steer",
]
