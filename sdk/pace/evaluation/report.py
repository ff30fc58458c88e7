"""Present results: a rich table, a JSON file and a PNG chart.

The chart's first panel plots alignment against perplexity, one point per method (a
good method sits top-left: aligned and fluent); the second plots alignment against
knowledge retained; the third shows the time per generated token.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pace.evaluation.results import EvalResults, MethodResult

__all__ = ["markdown_table", "plot_results", "print_report", "results_table"]

_COLORS = {
    "vanilla": "#555555",
    "prompting": "#8c564b",
    "vecadd": "#1f77b4",
    "orthoproj": "#ff7f0e",
    "pace": "#2ca02c",
}


def _fmt(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


_CELLS = (  # (attribute, format in the terminal, format in markdown)
    ("alignment", ".1%", ".1%"),
    ("judge_score", ".3f", "+.3f"),
    ("perplexity", ".2f", ".2f"),
    ("distinct2", ".3f", ".3f"),
    ("mean_length", ".1f", ".1f"),
    ("knowledge", ".1%", ".1%"),
    ("ms_per_token", ".1f", ".0f"),
    ("edit_norm", ".3f", ".3f"),
)


def _headers(results: EvalResults) -> list[str]:
    return [
        "method",
        "aligned",
        f"mean {results.judge_score_name}",
        "perplexity",
        "distinct-2",
        "length",
        f"knowledge ({results.n_questions})",
        "ms/token",
        "edit",
    ]


def _cells(method: MethodResult, *, markdown: bool) -> list[str]:
    return [
        method.label,
        *(_fmt(getattr(method, a), md if markdown else term) for a, term, md in _CELLS),
    ]


def results_table(results: EvalResults) -> Table:
    """One row per method."""
    table = Table(
        title=(
            f"{results.task}: {results.n_prompts} prompts, judge {results.judge}, "
            f"model {results.model}"
        ),
        title_justify="left",
    )
    first, *numeric = _headers(results)
    table.add_column(first)
    for header in numeric:
        table.add_column(header, justify="right")
    for m in results.methods:
        table.add_row(*_cells(m, markdown=False))
    return table


def markdown_table(results: EvalResults) -> str:
    """The table as GitHub markdown (for reports and docs)."""
    head = _headers(results)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in results.methods:
        lines.append("| " + " | ".join(_cells(m, markdown=True)) + " |")
    return "\n".join(lines)


def print_report(results: EvalResults, console: Console | None = None) -> None:
    """Print the table (and a note on what 'edit' means)."""
    console = console or Console()
    console.print(results_table(results))
    console.print(
        "[dim]aligned: share of responses the judge accepts; edit: mean ||z'-z||/||z|| over "
        "edited token activations; perplexity under the unsteered model.[/dim]"
    )


def plot_results(results: EvalResults, path: str | os.PathLike[str]) -> Path:
    """Write the PNG chart (see module docs); returns its path.

    Points are numbered; the legend under the panels maps numbers to method labels.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    methods = results.methods
    rows = (len(methods) + 1) // 2
    fig = plt.figure(figsize=(16, 5.2 + 0.22 * rows))
    grid = fig.add_gridspec(2, 3, height_ratios=[5.2, 0.22 * rows + 0.3])
    axes = [fig.add_subplot(grid[0, i]) for i in range(3)]

    def point(ax: Any, i: int, x: float, y: float, kind: str) -> None:
        ax.scatter(x, y, color=_COLORS.get(kind, "k"), s=45, zorder=3)
        ax.annotate(str(i + 1), (x, y), fontsize=8, xytext=(4, 3), textcoords="offset points")

    ax = axes[0]
    for i, m in enumerate(methods):
        if math.isfinite(m.perplexity):
            point(ax, i, m.perplexity, 100 * m.alignment, m.kind)
    ppl = [m.perplexity for m in methods if math.isfinite(m.perplexity) and m.perplexity > 0]
    if ppl and max(ppl) / min(ppl) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("perplexity under the unsteered model (lower is more fluent)")
    ax.set_ylabel(f"aligned responses, % ({results.judge})")
    ax.set_title(f"{results.task}: alignment vs perplexity")
    ax.grid(alpha=0.3)
    ax = axes[1]
    measured = [(i, m) for i, m in enumerate(methods) if m.knowledge is not None]
    for i, m in measured:
        point(ax, i, 100 * float(m.knowledge or 0.0), 100 * m.alignment, m.kind)
    if not measured:
        ax.text(0.5, 0.5, "knowledge not measured", ha="center", transform=ax.transAxes)
    ax.set_xlabel(f"knowledge retained: MC accuracy, % ({results.n_questions} questions)")
    ax.set_ylabel("aligned responses, %")
    ax.set_title("alignment vs knowledge")
    ax.grid(alpha=0.3)
    ax = axes[2]
    ax.barh(range(len(methods)), [m.ms_per_token for m in methods],
            color=[_COLORS.get(m.kind, "k") for m in methods])  # fmt: skip
    ax.set_yticks(range(len(methods)), [str(i + 1) for i in range(len(methods))])
    ax.invert_yaxis()
    ax.set_xlabel("ms per generated token")
    ax.set_title("speed")
    legend = fig.add_subplot(grid[1, :])
    legend.axis("off")
    for i, m in enumerate(methods):
        col, row = divmod(i, rows)
        legend.text(0.01 + 0.5 * col, 1 - (row + 0.5) / rows, f"{i + 1}. {m.label}",
                    color=_COLORS.get(m.kind, "k"), fontsize=9, va="center")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
