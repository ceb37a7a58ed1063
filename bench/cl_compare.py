"""Two stream-benchmark JSONs side by side, on the seeds both ran: per strategy, final mean macro-F1 and
PhraseBank forgetting (as `cl_report.summarise` defines them) in each, and the difference.

    .venv/bin/python -m bench.cl_compare BEFORE.json AFTER.json [--out FILE.md]

For a before/after of a change to the recipe when the new run has fewer seeds than the old one: only
the runs whose (strategy, seed) are in both files are compared, so the two columns see the same seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from retrain import cl_metrics


def scores(run: dict, learned_at: list[int]) -> tuple[float, float]:
    matrix = run["matrix"]
    return cl_metrics.average_score(matrix, learned_at), matrix[learned_at[0]][0] - matrix[-1][0]


def compare(before: dict, after: dict) -> list[str]:
    domains = [b["domain"] for b in after["batches"]]
    learned_at = [max(i for i, d in enumerate(domains) if d == "phrasebank"), len(domains) - 1]
    old = {(r["strategy"], r["seed"]): r for r in before["runs"]}
    lines = ["| strategy | seeds | final mean F1 before | after | Δ | PB forgetting before | after |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for strategy in dict.fromkeys(r["strategy"] for r in after["runs"]):
        pairs = [(old[(r["strategy"], r["seed"])], r) for r in after["runs"]
                 if r["strategy"] == strategy and (r["strategy"], r["seed"]) in old]
        if not pairs:
            continue
        b = [scores(x, learned_at) for x, _ in pairs]
        a = [scores(y, learned_at) for _, y in pairs]
        mean = lambda values: 100 * sum(values) / len(values)  # noqa: E731
        fb, fa = mean([s[0] for s in b]), mean([s[0] for s in a])
        lines.append(f"| {strategy} | {','.join(str(y['seed']) for _, y in pairs)} | {fb:.1f} | {fa:.1f} | "
                     f"{fa - fb:+.1f} | {mean([s[1] for s in b]):.1f} | {mean([s[1] for s in a]):.1f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    lines = compare(json.loads(args.before.read_text()), json.loads(args.after.read_text()))
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
