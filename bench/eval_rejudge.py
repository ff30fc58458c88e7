"""Judge the stored responses of saved evaluations again, with another offline judge.

No generation: reads each ``results.json`` (written with ``--keep-responses``, the
default) and scores every method's responses with the chosen judge. Used to add a second
offline signal next to a task's own judge (e.g. VADER's negativity on detoxification,
where ``alt-profanity-check`` is at its ceiling); it never replaces the task's judge.

Usage::

    python bench/eval_rejudge.py docs/eval-results/detoxification-*/results.json \\
        --judge vader --judge toxicity
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from pace.evaluation import EvalResults, make_judge


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("--judge", action="append", default=None, help="vader | toxicity")
    args = ap.parse_args()
    judges = [make_judge(j) for j in (args.judge or ["vader"])]
    header = ["run", "method"]
    for j in judges:
        header += [f"{j.name} aligned", f"mean {j.score_name}"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for path in args.results:
        results = EvalResults.load(path)
        for m in results.methods:
            if not m.responses:
                continue
            prompts = [r.prompt for r in m.responses]
            texts = [r.response for r in m.responses]
            row = [path.parent.name, m.label]
            for j in judges:
                verdicts = j.judge(prompts, texts)
                share = sum(v.aligned for v in verdicts) / len(verdicts)
                row += [f"{share:.1%}", f"{statistics.fmean(v.score for v in verdicts):+.3f}"]
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
