"""The one-time notice that the CPU kernels are being compiled (numba's cache is empty)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pace.solver import ElasticNet, _compiled, _jit_cache

pytestmark = pytest.mark.skipif(not _compiled.AVAILABLE, reason="numba is not installed")

_BUILD_TWO = """
import logging, torch
from pace.solver import ElasticNet, _compiled, _jit_cache
logging.basicConfig(format="LOG %(name)s %(levelname)s %(message)s")
ElasticNet(torch.randn(50, 16), alpha=0.05, tau=0.95)
ElasticNet(torch.randn(60, 16), alpha=0.05, tau=0.95)
print("cached:", [_jit_cache.cached(getattr(_compiled, n)) for n in _jit_cache.SHARED])
"""


def test_an_empty_cache_is_announced_once_before_anything_compiles(tmp_path: Path) -> None:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", _BUILD_TWO], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("LOG ")]
    assert lines == [f"LOG pace.solver WARNING {_jit_cache.MESSAGE}"]
    assert "cached: [False, False]" in done.stdout
    assert not any(tmp_path.rglob("*.nbc"))  # building the solvers compiled nothing


def test_a_compiled_kernel_counts_as_cached() -> None:
    torch.manual_seed(0)
    solver = ElasticNet(torch.randn(200, 32), alpha=0.05, tau=0.95)
    solver.solve_sparse(torch.randn(1, 32))  # one row: the int8-screened kernel
    assert _jit_cache.cached(_compiled.solve_lowp_rows)  # written by that first call
    assert all(_jit_cache.cached(getattr(_compiled, n)) for n in _jit_cache.SHARED)
