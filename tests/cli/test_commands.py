"""CLI failures are one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pace_cli.main import app, parse_layers

runner = CliRunner()


def test_help_lists_every_workflow_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in (
        "serve",
        "db",
        "concepts",
        "stimuli",
        "extract",
        "partition",
        "labels",
        "versions",
        "dictionary",
        "search",
        "chat",
        "demo",
    ):
        assert command in result.output


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("all", list(range(4))), ("1-2", [1, 2]), ("3,0", [0, 3]), (" 2 ", [2])],
)
def test_parse_layers(spec: str, expected: list[int]) -> None:
    assert parse_layers(spec, 4) == expected


@pytest.mark.parametrize("spec", ["4", "-1", "a-b", "", "2-9"])
def test_parse_layers_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="--layers"):
        parse_layers(spec, 4)


def test_bad_override_syntax_is_a_clear_error() -> None:
    result = runner.invoke(
        app, ["labels", "override", "1", "hatred=evil", "--url", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 1
    assert "expected NAME=benign or NAME=undesirable" in result.output
    assert "Traceback" not in result.output


def test_unreachable_service_is_a_clear_error() -> None:
    result = runner.invoke(app, ["versions", "diff", "1", "2", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "error:" in result.output
    assert "Traceback" not in result.output
