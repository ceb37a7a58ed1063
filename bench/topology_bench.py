"""Topology benchmark: what a cycle costs on the production topology against the embedded defaults.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.topology_bench

Both setups run the daemon's own `maybe_run` on the same two batches of the bundled demo stream
(data/demo, Twitter Financial News, MIT) with the packaged MiniLM and the default recipe (one epoch to
keep the run short): cycle 1 bootstraps a champion, cycle 2 is the measured one (it downloads the
champion, trains from it, scores both models, registers the candidate and moves the alias).

- embedded: SQLite state store and MLflow on SQLite with local artifacts, in a temporary folder;
- topology: PostgreSQL 15 state store, `mlflow server --app-name basic-auth` on PostgreSQL with
  proxied artifacts, cltool as a non-admin user (started by tests/production/servers.py, as the tests
  do, and stopped at the end).

The setups alternate (`--repeats` times each), each repeat on fresh stores; per phase the medians
and the topology/embedded ratio. Phases come from the cycle's own events: prepare (rows, champion
download), training, evaluation, registration (logging the model and reports, up to the decision),
alias (the alias move, up to cycle.finished). Writes bench/results/topology.md and topology.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from daemon import events
from daemon.config import load_settings
from daemon.context import open_context
from daemon.cycle.run import maybe_run
from tests.production.servers import MlflowServer, Postgres, available

REPO = Path(__file__).resolve().parents[1]
PHASES = ["prepare", "training", "evaluation", "registration", "alias", "total"]


def batches(rows: int) -> list[pd.DataFrame]:
    tweets = pd.concat([pd.read_csv(REPO / "data/demo/01-tweets.csv"), pd.read_csv(REPO / "data/demo/02-tweets.csv")],
                       ignore_index=True)
    return [tweets.iloc[:rows], tweets.iloc[rows:2 * rows]]


def phase_seconds(store, cycle_id: str) -> dict[str, float]:
    mine = [e for e in store.events() if e.payload.get("cycle_id") == cycle_id]
    at = {"started": next(e.at for e in mine if e.type == events.CYCLE_STARTED),
          "finished": next(e.at for e in mine if e.type == events.CYCLE_FINISHED),
          "decision": next(e.at for e in mine if e.type == events.DECISION)}
    at.update({e.payload["phase"]: e.at for e in mine if e.type == events.CYCLE_PHASE})
    marks = [("prepare", "started", "training"), ("training", "training", "evaluation"),
             ("evaluation", "evaluation", "registration"), ("registration", "registration", "decision"),
             ("alias", "decision", "finished"), ("total", "started", "finished")]
    return {name: (at[end] - at[start]).total_seconds() for name, start, end in marks}


def one_setup(name: str, work: Path, frames: list[pd.DataFrame], overrides: dict, env: dict[str, str]) -> dict:
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        settings = load_settings(state_dir=str(work / "state"), inbox_dir=str(work / "inbox"), **overrides)
        ctx = open_context(settings, owner=f"bench:{name}")
        results = []
        for i, frame in enumerate(frames):
            path = work / f"batch{i + 1}.csv"
            frame.to_csv(path, index=False)
            ctx.inbox.ingest_copy(path)
            results.append(maybe_run(ctx))
        assert all(r is not None for r in results), "a batch did not trigger a cycle"
        second = results[-1]
        return {"setup": name, "outcome": second.outcome, "version": second.version,
                "phases": phase_seconds(ctx.store, second.cycle_id)}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=400, help="rows per batch (default 400)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each setup, alternating (default 2)")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results", help="where topology.md/.json go")
    args = parser.parse_args(argv)
    why = available()
    if why:
        raise SystemExit(f"cannot start the topology: {why}")
    frames = batches(args.rows)
    common = {"train": {"epochs": 1}, "model": {"max_length": 48}, "trigger": {"min_new_rows": 50},
              "gate": {"min_fresh_rows": 10}, "watch": {"enabled": False}}
    runs = []
    with tempfile.TemporaryDirectory(prefix="cltool-topology-") as scratch:
        root = Path(scratch)
        pg = Postgres().init()
        server = None
        try:
            server = MlflowServer(root / "mlflow", pg).start()
            user = server.create_user("cltool-bench", "bench-Secret-3")
            for repeat in range(args.repeats):
                runs.append(one_setup("embedded", root / f"embedded{repeat}", frames, common, {}))
                print(f"embedded #{repeat + 1}: {runs[-1]['phases']}", flush=True)
                overrides = dict(common, store={"url": pg.create_database(f"cltool{repeat}")},
                                 mlflow={"tracking_uri": server.url, "experiment": f"bench{repeat}",
                                         "model_name": f"bench-sentiment-{repeat}"})
                runs.append(one_setup("topology", root / f"topology{repeat}", frames, overrides, user.env()))
                print(f"topology #{repeat + 1}: {runs[-1]['phases']}", flush=True)
        finally:
            if server is not None:
                server.stop()
            pg.remove()
    medians = {setup: {p: statistics.median(r["phases"][p] for r in runs if r["setup"] == setup) for p in PHASES}
               for setup in ("embedded", "topology")}
    ratios = {p: medians["topology"][p] / medians["embedded"][p] if medians["embedded"][p] else None for p in PHASES}
    report = {"command": "HF_HUB_OFFLINE=1 .venv/bin/python -m bench.topology_bench " + shlex.join(argv or sys.argv[1:]),
              "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                       text=True).stdout.strip(),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "date": datetime.now(timezone.utc).isoformat(),
              "rows_per_batch": args.rows, "repeats": args.repeats, "runs": runs, "medians": medians, "ratios": ratios}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "topology.json").write_text(json.dumps(report, indent=2))
    lines = ["# One cycle: production topology against embedded defaults", "",
             f"`{report['command']}` at {report['commit']} on {report['machine']}, {report['date'][:16]}; "
             f"{args.repeats} runs of each setup, alternating; cycle 2 of 2 ({args.rows}-row batches of data/demo, "
             "MiniLM, 1 epoch). Medians in seconds.", "",
             "| phase | embedded | topology | ratio |", "|---|---:|---:|---:|"]
    for p in PHASES:
        ratio = f"{ratios[p]:.2f}" if ratios[p] is not None else "—"
        lines.append(f"| {p} | {medians['embedded'][p]:.1f} | {medians['topology'][p]:.1f} | {ratio} |")
    lines += ["", "Outcomes: " + ", ".join(f"{r['setup']} v{r['version']} {r['outcome']}" for r in runs)]
    (args.out / "topology.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
