"""Exact batched elastic-net solving for PaCE sparse coding.

``ElasticNet`` binds a dictionary (kept resident on its device) and solves, per row
``y``, ``argmin_c 1/2||y - D^T c||^2 + alpha (tau ||c||_1 + (1 - tau)/2 ||c||^2)`` with
screening, exact active-set solves and a KKT check on the whole dictionary.

Example::

    from pace.solver import ElasticNet
    solver = ElasticNet(atoms, alpha=0.05, tau=0.95)
    c = solver.solve(y)   # (b, n) float32
"""

from pace.solver._config import ElasticNetConfig
from pace.solver._elastic_net import ElasticNet, SparseCodes, elastic_net
from pace.solver._errors import ConvergenceError
from pace.solver._fista import fista_elastic_net, spectral_norm_sq
from pace.solver._kkt import elastic_net_objective, kkt_violation, unit_rows

__all__ = [
    "ConvergenceError",
    "ElasticNet",
    "ElasticNetConfig",
    "SparseCodes",
    "elastic_net",
    "elastic_net_objective",
    "fista_elastic_net",
    "kkt_violation",
    "spectral_norm_sq",
    "unit_rows",
]
