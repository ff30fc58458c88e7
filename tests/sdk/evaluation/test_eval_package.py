"""The package's public surface is lazy: `pace --help` must not pay for torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pace.evaluation as evaluation


def test_every_exported_name_resolves() -> None:
    for name in evaluation.__all__:
        assert getattr(evaluation, name) is not None, name
    assert set(evaluation.__all__) <= set(dir(evaluation))
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = evaluation.no_such_name


def test_the_package_and_the_cli_import_no_torch() -> None:
    code = (
        "import sys, pace.evaluation, pace.evaluation.cli, pace_cli.main; "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
