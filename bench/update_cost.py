"""What one update costs: from a file landing to the decision, by phase, and as history grows tenfold.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.update_cost --out bench/results/update_cost

Both parts run the daemon's own code on embedded stores in a temporary folder (the inbox's `take_all`,
the drift pass, `maybe_run` with the default `process` launcher, i.e. training in the supervised child)
and read the phases from the `timing.*` metrics the cycle logs to MLflow (daemon/cycle/timing.py).

- `landing`: the packaged MiniLM with every default. A first file of --rows Twitter financial-news tweets
  bootstraps the champion; then a second file of --rows other tweets lands, and the measured update
  fine-tunes the champion on it plus replay, scores both models, registers and decides.
- `history`: the same update with a tiny BERT (so training does not hide the rest) on top of a history of
  --history-batches consumed batches of 400 rows, and of ten times as many; the two alternate --repeats
  times, each on fresh stores. The ratio of the medians says whether an update's cost grows with history.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench import common
from bench.cl_data import read_twitter
from daemon.config import load_settings
from daemon.context import open_context
from daemon.cycle.run import maybe_run
from daemon.cycle.timing import REPORTED as SHOWN
from daemon.monitoring.drift_pass import DriftMonitor

REPO = Path(__file__).resolve().parents[1]
COMMAND = "HF_HUB_OFFLINE=1 .venv/bin/python -m bench.update_cost --out bench/results/update_cost"
LABELS = ["negative", "neutral", "positive"]


def land(ctx, rows: pd.DataFrame, name: str):
    """Drop a file in the inbox and do what the daemon does next: take it, score drift, run the cycle."""
    path = ctx.settings.inbox_dir / name
    rows.to_csv(path.with_suffix(".tmp"), index=False)
    path.with_suffix(".tmp").rename(path)
    time.sleep(ctx.inbox.settle_seconds + 0.1)  # the daemon takes a file once it has stopped growing
    ctx.inbox.take_all()
    result = maybe_run(ctx, before_training=DriftMonitor(ctx).check)
    return result, ctx.store.last_event("cycle.finished").payload.get("timing", {})


def landing(tweets: pd.DataFrame, rows: int, root: Path) -> list[dict]:
    settings = load_settings(state_dir=str(root / "state"), inbox_dir=str(root / "inbox"))
    ctx = open_context(settings, owner="bench")
    out = []
    for index, name in enumerate(("seed.csv", "update.csv")):
        result, timing = land(ctx, tweets.iloc[index * rows:(index + 1) * rows], name)
        out.append({"file": name, "outcome": result.outcome, "version": result.version, "reasons": result.reasons,
                    "timing": timing})
        print(out[-1], flush=True)
    return out


def history(tweets: pd.DataFrame, batches: int, root: Path, tiny: Path) -> dict:
    """One update of 400 new rows on top of `batches` consumed batches of 400 rows."""
    settings = load_settings(state_dir=str(root / "state"), inbox_dir=str(root / "inbox"),
                             model={"base": str(tiny), "max_length": 32},
                             train={"epochs": 2, "learning_rate": 0.002}, trigger={"min_new_rows": 50})
    ctx = open_context(settings, owner="bench")
    first, _ = land(ctx, _unique(tweets, 0, 400), "seed.csv")  # the champion: drift, teacher and both scored
    if first.outcome != "PROMOTE":  # a tiny BERT after two epochs of tweets may still be a one-class model
        ctx.keeper.promote(first.version, "bench: a champion for the update to be judged against", actor="bench",
                           force=True)
    for k in range(1, batches):  # the rest of history: recorded and consumed, as if learned
        batch = ctx.inbox.ingest_copy(_write(root / f"h{k}.csv", _unique(tweets, k, 400))).batch
        ctx.store.mark_consumed([batch.batch_id], "bench-history")
    rows = sum(len(ctx.store.rows([b.batch_id])) for b in ctx.store.list_batches(pending=False))
    result, timing = land(ctx, _unique(tweets, batches, 400), "new.csv")
    drift = ctx.store.last_event("drift.scored")
    return {"batches": batches, "history_rows": rows, "outcome": result.outcome, "timing": timing,
            "drift_scored": drift is not None and drift.batch_id == result_batch(ctx)}


def result_batch(ctx) -> str:
    return ctx.store.list_batches()[-1].batch_id


def _unique(tweets: pd.DataFrame, k: int, n: int) -> pd.DataFrame:
    """n rows for batch k: tweets reused across batches get a suffix, so every row is new to the store."""
    start = (k * n) % len(tweets)
    part = pd.concat([tweets, tweets]).iloc[start:start + n].copy()
    part["text"] = part["text"] + f" [{k}]"
    return part


def _write(path: Path, rows: pd.DataFrame) -> Path:
    rows.to_csv(path, index=False)
    return path


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--rows", type=int, default=1700)
    parser.add_argument("--history-batches", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", nargs="+", choices=("landing", "history"), default=["landing", "history"])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "update_cost")
    parser.add_argument("--render", type=Path, metavar="JSON", help="only write the report of an earlier run's JSON")
    args = parser.parse_args()
    if args.render:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "update_cost.md").write_text(render(json.loads(args.render.read_text()), args))
        return
    tweets = read_twitter(args.data, "sent_train.csv").sample(frac=1, random_state=0).reset_index(drop=True)
    report: dict = {"command": " ".join([COMMAND.split(" --out")[0], *map(shlex.quote, sys.argv[1:])]),
                    "rows": args.rows}
    with tempfile.TemporaryDirectory(prefix="cltool-update-cost-") as tmp:
        root = Path(tmp)
        if "landing" in args.parts:
            report["landing"] = landing(tweets, args.rows, root / "landing")
        if "history" in args.parts:
            from retrain.modeling import build_tiny_model

            tiny = build_tiny_model(root / "tiny", LABELS)
            runs = []
            for repeat in range(args.repeats):
                for batches in (args.history_batches, 10 * args.history_batches):
                    runs.append(history(tweets, batches, root / f"h{repeat}-{batches}", tiny))
                    print(runs[-1], flush=True)
            report["history"] = runs
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "update_cost.json").write_text(json.dumps(report, indent=2) + "\n")
    text = render(report, args)
    (args.out / "update_cost.md").write_text(text)
    print(text)


def _seconds(timing: dict, name: str) -> float | None:
    return timing.get(f"timing.{name}_seconds")


def render(report: dict, args: argparse.Namespace) -> str:
    lines = ["# What one update costs", "", f"Command: `{report.get('command', COMMAND)}`", ""]
    if "landing" in report:
        lines += [f"## From a file landing to the decision (packaged MiniLM, every default, {args.rows}-row files)", "",
                  "| file | decision | " + " | ".join(SHOWN) + " | landing → decision |",
                  "|---|---|" + "---:|" * (len(SHOWN) + 1)]
        for run in report["landing"]:
            t = run["timing"]
            cells = [f"{v:.1f}" if (v := _seconds(t, name)) is not None else "—" for name in SHOWN]
            total = t.get("timing.landed_to_decision_seconds")
            lines.append(f"| {run['file']} | {run['outcome']} v{run['version']} | " + " | ".join(cells)
                         + f" | **{total:.0f} s** |")
        lines += ["", "Seconds. `waited` is the inbox's settle time here (the daemon adds up to `trigger.poll_seconds`, 5 s); "
                  "`train` includes starting the child and its imports; `register` logs the model and reports to "
                  "MLflow; `alias` records the decision and moves the alias.", ""]
    if "history" in report:
        small, large = args.history_batches, 10 * args.history_batches
        lines += [f"## As history grows tenfold (tiny BERT, {small} vs {large} consumed batches of 400 rows)", "",
                  "| phase | " + f"{small} batches | {large} batches | ratio |", "|---|---:|---:|---:|"]
        runs = report["history"]
        for name in ("drift", "prepare", "train", "evaluate", "register", "alias", "cycle"):
            a = statistics.median(_seconds(r["timing"], name) or 0 for r in runs if r["batches"] == small)
            b = statistics.median(_seconds(r["timing"], name) or 0 for r in runs if r["batches"] == large)
            lines.append(f"| {name} | {a:.2f} s | {b:.2f} s | {b / a if a else float('nan'):.2f} |")
        rows = {r["batches"]: r["history_rows"] for r in runs}
        lines += ["", f"History rows: {rows[small]:,} and {rows[large]:,}. Medians of {args.repeats} alternating repeats, "
                  "each on fresh stores; `cycle` is the whole cycle, from its drift pass to the alias move. "
                  "The cycle reads history in bounded samples (daemon/cycle/evidence.py `History`): the replay pool "
                  "(`replay.ratio` new-row multiples per label), the past validation rows and the regression suite "
                  "(capped at `gate.regression_max_rows` test rows) are index ranges of row-hash order, and the drift "
                  "reference is read the same way; evaluating and logging grow until the suite is full (about "
                  "20,000 history rows), then stay flat."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
