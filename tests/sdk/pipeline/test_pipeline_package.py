"""The package's public surface."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pace.pipeline as pipeline


def test_every_exported_name_resolves() -> None:
    for name in pipeline.__all__:
        assert getattr(pipeline, name) is not None, name
    with pytest.raises(AttributeError):
        _ = pipeline.no_such_name


def test_import_is_cheap() -> None:
    code = "import sys, pace.pipeline; print('torch' in sys.modules, 'openai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[1] == "False"  # openai loads on first use
