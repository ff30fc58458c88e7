"""Plain batched FISTA on the full dictionary: the baseline the active-set solver beats.

It runs a fixed number of steps (50 by default, as in DESIGN.md section 2), so it is an
approximation, not the optimum; it exists for benchmarks and comparisons.
"""

from __future__ import annotations

import torch

__all__ = ["fista_elastic_net"]


def fista_elastic_net(
    atoms: torch.Tensor,
    y: torch.Tensor,
    *,
    alpha: float = 0.05,
    tau: float = 0.95,
    n_iter: int = 50,
    lipschitz: float | None = None,
) -> torch.Tensor:
    """Run ``n_iter`` FISTA steps for the elastic net of ``ElasticNet`` from ``c = 0``.

    Args:
        atoms: (n, d) atoms, already unit-norm rows (they are used as given).
        y: (b, d) targets in the same dtype and device.
        lipschitz: the largest eigenvalue of ``D D^T``; estimated by power iteration
            if omitted (pass it to keep that out of timings).

    Returns:
        (b, n) float32 coefficients.
    """
    l1, l2 = alpha * tau, alpha * (1.0 - tau)
    if lipschitz is None:
        lipschitz = spectral_norm_sq(atoms)
    step = 1.0 / (lipschitz + l2)
    dy = (y @ atoms.T).float()
    x = torch.zeros_like(dy)
    z = x
    t = 1.0
    for _ in range(n_iter):
        grad = (z.to(atoms.dtype) @ atoms @ atoms.T).float() - dy + l2 * z
        v = z - step * grad
        x_new = torch.sign(v) * (v.abs() - step * l1).clamp_min(0.0)
        t_new = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
        z = x_new + ((t - 1.0) / t_new) * (x_new - x)
        x, t = x_new, t_new
    return x


def spectral_norm_sq(atoms: torch.Tensor, n_iter: int = 30) -> float:
    """Largest eigenvalue of ``D D^T`` by power iteration (an upper estimate, +1%)."""
    a = atoms.float()
    v = torch.ones(a.shape[1], dtype=a.dtype, device=a.device)
    v = v / v.norm()
    for _ in range(n_iter):
        w = a.T @ (a @ v)
        v = w / w.norm().clamp_min(1e-30)
    return float((a @ v).square().sum()) * 1.01
