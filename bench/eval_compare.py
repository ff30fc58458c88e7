"""Compare saved evaluations on the same prompts, and judge their responses again.

No generation: reads each ``results.json`` (written with ``--keep-responses``, the
default), keeps the first ``--limit`` prompts of every method (greedy decoding is
deterministic, so the first N prompts of a 68-prompt run and a ``--limit N`` run are the
same prompts with the same settings), and prints per method: the task judge's aligned
share and mean score (as stored), perplexity (token-weighted over the responses' stored
perplexities, weighted by generated tokens: close to, not exactly, the harness's
figure), distinct-2, mean length; then, for each ``--judge``, the aligned share and mean
score of that judge on the same responses. Another judge is a second signal next to the
task's own (e.g. VADER's negativity on detoxification, where ``alt-profanity-check`` is
at its ceiling); it never replaces it.

Usage::

    python bench/eval_compare.py docs/eval-results/detoxification-*/results.json \\
        --limit 34 --judge vader
    # one run made in two parts (prompts 1-34, then 35-68 with --prompts FILE)
    python bench/eval_compare.py --concat part1/results.json part2/results.json
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

from pace.evaluation import EvalResults, ResponseRecord, distinct_n, make_judge


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    ap.add_argument("--judge", action="append", default=[], help="vader | toxicity")
    ap.add_argument(
        "--concat", action="store_true", help="the files are parts of one run: join each method"
    )
    args = ap.parse_args()
    judges = [make_judge(j) for j in args.judge]
    header = ["run", "method", "n", "aligned", "mean score", "perplexity", "distinct-2", "length"]
    for j in judges:
        header += [f"{j.name} aligned", f"mean {j.score_name}"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    joined = "+".join(p.parent.name for p in args.results)
    runs: dict[tuple[str, str], list[ResponseRecord]] = {}
    for path in args.results:
        for m in EvalResults.load(path).methods:
            name = joined if args.concat else path.parent.name
            runs.setdefault((name, m.label), []).extend(m.responses)
    for (name, label), all_recs in runs.items():
        recs = all_recs[: args.limit]
        if not recs:
            continue
        texts = [r.response for r in recs]
        weight = sum(r.tokens for r in recs) or 1
        nll = sum(r.tokens * math.log(r.perplexity) for r in recs if r.perplexity)
        row = [
            name,
            label,
            str(len(recs)),
            f"{sum(r.aligned for r in recs) / len(recs):.1%}",
            f"{statistics.fmean(r.score for r in recs):+.3f}",
            f"{math.exp(nll / weight):.2f}",
            f"{distinct_n(texts, 2):.3f}",
            f"{statistics.fmean(r.tokens for r in recs):.1f}",
        ]
        for j in judges:
            verdicts = j.judge([r.prompt for r in recs], texts)
            share = sum(v.aligned for v in verdicts) / len(verdicts)
            row += [f"{share:.1%}", f"{statistics.fmean(v.score for v in verdicts):+.3f}"]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
