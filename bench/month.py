"""A month of batches: the real daemon (`cltool run`) takes 1,000 inbox files, and its memory, its open file
descriptors and the MLflow store are sampled all along.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.month                                  # 1,000 batches
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.month --batches 1000 --out bench/results/month
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.month --batches 60 --rows 50           # a quick look

The clock is compressed: a producer keeps two files waiting in the inbox, so the daemon works through an
hourly stream of six weeks in about an hour; a cycle takes 20 files (1,000 rows). A tiny BERT (built locally) learns toy rows; training runs
in the supervised child process (the default launcher), so the daemon's own process is what a long-lived
service keeps. The stores are the real embedded ones (SQLite state store, SQLite MLflow tracking and registry,
artifacts on disk), with retention tightened so its bound shows within the run (keep_versions 5,
keep_runs 20), and the gate decides at once (max_wait_rows 10: toy rows leave every candidate as perfect as
the champion; the gate now rejects a candidate with the champion's very predictions at once, and the cap keeps
a near tie from waiting, and retraining on every new file, until 400 fresh rows). Prometheus is imitated:
/metrics is scraped at every sample.

Reported: RSS (MiB) and open descriptors against batches recorded, as least-squares slopes per 100 batches
over the second half of the run (after the warm-up); the MLflow runs (active and deleted), registered
versions and artifact bytes at the end, against the number of cycles; the decisions; and `cltool fsck`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pandas as pd

CLTOOL = str(Path(sys.executable).parent / "cltool")
LABELS = ["negative", "neutral", "positive"]
WORDS = {"negative": "plunge loss", "neutral": "meeting held", "positive": "soar profit"}
SECTIONS = {
    "model": {"max_length": 16},
    "train": {"epochs": 2, "batch_size": 32, "learning_rate": 0.002, "early_stopping_patience": 0},
    "trigger": {"poll_seconds": 1},
    "gate": {"first_model_min_macro_f1": 0.0, "min_fresh_rows": 10, "max_wait_rows": 10},
    "drift": {"min_reference_rows": 20},
    "mlflow": {"keep_versions": 5, "keep_runs": 20},
    "observe": {"refresh_seconds": 5},
}


def config_text(root: Path, base: Path, port: int, min_new_rows: int) -> str:
    sections = {name: dict(values) for name, values in SECTIONS.items()}
    sections["model"]["base"] = str(base)
    sections["trigger"]["min_new_rows"] = min_new_rows
    sections["observe"]["port"] = port
    lines = [f'state_dir = "{root}/state"', f'inbox_dir = "{root}/inbox"']
    for name, values in sections.items():
        lines += [f"[{name}]", *(f"{key} = {json.dumps(value)}" for key, value in values.items())]
    return "\n".join(lines) + "\n"


def rows(batch: int, n: int) -> pd.DataFrame:
    start = n * batch
    return pd.DataFrame([(f"{WORDS[LABELS[i % 3]]} item {i}", LABELS[i % 3]) for i in range(start, start + n)],
                        columns=["text", "label"])


def feeder(inbox: Path, batches: int, n: int, stop: threading.Event) -> None:
    """Keep two files waiting in the inbox until `batches` were dropped (write, then rename in)."""
    inbox.mkdir(parents=True, exist_ok=True)
    batch = 0
    while batch < batches and not stop.is_set():
        if sum(1 for p in inbox.iterdir() if p.suffix == ".csv") >= 2:
            stop.wait(0.2)
            continue
        partial = inbox / f".batch{batch:05d}.csv.part"
        rows(batch, n).to_csv(partial, index=False)
        os.replace(partial, inbox / f"batch{batch:05d}.csv")
        batch += 1


def query(db: Path, sql: str) -> list[tuple]:
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:  # the schema is being created
            return []


def counts(state: Path) -> dict[str, int]:
    """Batches recorded and cycles ended (state store); runs, versions and artifact bytes (MLflow)."""
    found = dict(query(state / "state.db", "SELECT type, count(*) FROM events WHERE type IN "
                                          "('ingest.accepted', 'cycle.finished', 'cycle.failed', 'decision', "
                                          "'model.removed', 'model.pruned') GROUP BY type"))
    runs = dict(query(state / "mlflow.db", "SELECT lifecycle_stage, count(*) FROM runs GROUP BY lifecycle_stage"))
    versions = query(state / "mlflow.db", "SELECT count(*) FROM model_versions WHERE current_stage != "
                                          "'Deleted_Internal'")
    artifacts = state / "mlartifacts"
    size = sum(p.stat().st_size for p in artifacts.rglob("*") if p.is_file()) if artifacts.exists() else 0
    return {"batches": found.get("ingest.accepted", 0), "cycles": found.get("cycle.finished", 0),
            "cycles_failed": found.get("cycle.failed", 0), "removed": found.get("model.removed", 0),
            "pruned": found.get("model.pruned", 0), "runs_active": runs.get("active", 0),
            "runs_deleted": runs.get("deleted", 0), "versions": versions[0][0] if versions else 0,
            "artifact_mib": round(size / 2**20, 1),
            "state_db_mib": round((state / "state.db").stat().st_size / 2**20, 1) if (state / "state.db").exists()
            else 0.0}


def mappings(pid: int) -> dict[str, float]:
    """The process's resident memory split by what backs it (MiB): anonymous memory (the malloc heap, Python's
    objects, torch's tensors) against files mapped in (shared libraries, model weights, databases)."""
    split = {"anon": 0.0, "libraries": 0.0, "other_files": 0.0}
    kind = "anon"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            path = head[5] if len(head) > 5 else ""
            kind = ("anon" if not path or path.startswith("[") else
                    "libraries" if ".so" in Path(path).name else "other_files")
        elif line.startswith("Rss:"):
            split[kind] += int(head[1]) / 1024
    return {k: round(v, 1) for k, v in split.items()}


TRACER = r"""
import os, sys, threading, time, tracemalloc

def _trace(out, every):
    time.sleep(2)  # sys.argv is set by now: trace only the daemon (`cltool ... run`), not its children
    if not (os.path.basename(sys.argv[0]) == "cltool" and "run" in sys.argv):
        return
    tracemalloc.start(1)
    first, n = None, 0
    while True:
        time.sleep(every)
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        n += 1
        if first is None:
            first = snap
            continue
        with open(os.path.join(out, f"growth-{n:03d}.txt"), "w") as f:
            size, _ = tracemalloc.get_traced_memory()
            f.write(f"traced now {size / 2**20:.1f} MiB\n")
            for stat in snap.compare_to(first, "lineno")[:30]:
                f.write(f"{stat.size_diff / 2**20:+8.2f} MiB {stat.count_diff:+8d} blocks\n")
                f.write("".join(f"      {line}\n" for line in stat.traceback.format()))

if os.environ.get("CLTOOL_BENCH_TRACEMALLOC"):
    threading.Thread(target=_trace, args=(os.environ["CLTOOL_BENCH_TRACEMALLOC"],
                     float(os.environ.get("CLTOOL_BENCH_TRACE_SECONDS", "120"))), daemon=True).start()
"""


def process(pid: int) -> tuple[float, int]:
    """RSS in MiB and the number of open file descriptors of `pid`."""
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return rss / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=1000)
    p.add_argument("--rows", type=int, default=50, help="rows per file")
    p.add_argument("--batches-per-cycle", type=int, default=20, help="trigger.min_new_rows = this x --rows")
    p.add_argument("--sample-seconds", type=float, default=5.0)
    p.add_argument("--out", type=Path, help="folder for month.json and month.md (else only printed)")
    p.add_argument("--tracemalloc", type=Path, metavar="DIR",
                   help="trace the daemon's Python allocations (tracemalloc, through a sitecustomize on PYTHONPATH) "
                        "and write into DIR, every --trace-seconds, what grew since the first look")
    p.add_argument("--trace-seconds", type=float, default=120)
    args = p.parse_args()
    from retrain.modeling import build_tiny_model

    root = Path(tempfile.mkdtemp(prefix="cltool-month-"))
    state = root / "state"
    base = build_tiny_model(root / "tiny", LABELS)
    port = free_port()
    config = root / "cltool.toml"
    config.write_text(config_text(root, base, port, args.rows * args.batches_per_cycle))
    stop = threading.Event()
    feed = threading.Thread(target=feeder, args=(root / "inbox", args.batches, args.rows, stop), daemon=True)
    log_file = (root / "daemon.log").open("w")
    env = dict(os.environ)
    if args.tracemalloc:
        args.tracemalloc.mkdir(parents=True, exist_ok=True)
        (root / "tracer").mkdir()
        (root / "tracer" / "sitecustomize.py").write_text(TRACER)
        env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(root / "tracer"), env.get("PYTHONPATH")])),
                   CLTOOL_BENCH_TRACEMALLOC=str(args.tracemalloc.resolve()),
                   CLTOOL_BENCH_TRACE_SECONDS=str(args.trace_seconds))
    daemon = subprocess.Popen([CLTOOL, "--config", str(config), "run"], stdout=log_file, stderr=subprocess.STDOUT,
                              env=env)
    began = time.monotonic()
    feed.start()
    samples: list[dict] = []
    scrapes_failed, scraped = 0, False
    idle: list[tuple[int, str]] = []
    last_progress = (0, time.monotonic())
    try:
        while daemon.poll() is None:
            time.sleep(args.sample_seconds)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                    answer.read()
                scraped = True
            except OSError:
                scrapes_failed += scraped  # before the first answer the exporter is still starting
            rss, fds = process(daemon.pid)
            seen = counts(state) if len(samples) % 12 == 0 else {**samples[-1]["counts"],
                                                                "batches": counts_batches(state)}
            samples.append({"t": round(time.monotonic() - began, 1), "rss_mib": round(rss, 1), "fds": fds,
                            "counts": seen, **({"mappings": mappings(daemon.pid)} if len(samples) % 12 == 0 else {})})
            if seen["batches"] != last_progress[0]:
                last_progress = (seen["batches"], time.monotonic())
            if len(samples) % 24 == 0:
                print(f"{samples[-1]['t']:>7.0f} s  batches {seen['batches']:>5}  cycles {seen['cycles']:>4}  "
                      f"rss {rss:7.1f} MiB  fds {fds:>3}  runs {seen['runs_active']}+{seen['runs_deleted']} deleted",
                      flush=True)
            idle.append(newest(state))
            if (seen["batches"] >= args.batches and len(idle) >= 4 and len(set(idle[-4:])) == 1
                    and idle[-1][1] != "cycle.started"):
                break  # every file recorded, no cycle running, nothing new for three samples
            if time.monotonic() - last_progress[1] > 900:
                print("no batch recorded for 15 minutes: giving up", flush=True)
                break
    finally:
        stop.set()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=120)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log_file.close()
    check = subprocess.run([CLTOOL, "--config", str(config), "fsck", "--json"], capture_output=True, text=True,
                           timeout=300)
    end = counts(state)
    decisions = Counter(outcome for (outcome,) in query(
        state / "state.db", "SELECT json_extract(payload, '$.outcome') FROM events WHERE type = 'decision'"))
    half = [s for s in samples if s["counts"]["batches"] >= args.batches / 2]
    xs = [s["counts"]["batches"] for s in half]
    report = {
        "command": " ".join(["python -m bench.month", *sys.argv[1:]]),
        "batches": end["batches"], "rows_per_batch": args.rows, "seconds": round(time.monotonic() - began),
        "cycles": end["cycles"], "cycles_failed": end["cycles_failed"], "decisions": dict(decisions),
        "samples": len(samples), "metrics_scrapes_failed": scrapes_failed,
        "rss_mib": {"first_quarter_median": _median(samples, "rss_mib", 0, 0.25),
                    "last_quarter_median": _median(samples, "rss_mib", 0.75, 1.0),
                    "max": max(s["rss_mib"] for s in samples),
                    "slope_per_100_batches_second_half": round(100 * slope(xs, [s["rss_mib"] for s in half]), 2)},
        "fds": {"first_quarter_median": _median(samples, "fds", 0, 0.25),
                "last_quarter_median": _median(samples, "fds", 0.75, 1.0),
                "max": max(s["fds"] for s in samples),
                "slope_per_100_batches_second_half": round(100 * slope(xs, [s["fds"] for s in half]), 3)},
        "rss_by_mapping_mib": {kind: {
            "first_quarter_median": _median([s for s in samples if "mappings" in s], "mappings", 0, 0.25, kind),
            "last_quarter_median": _median([s for s in samples if "mappings" in s], "mappings", 0.75, 1.0, kind),
            "slope_per_100_batches_second_half": round(100 * slope(
                [s["counts"]["batches"] for s in half if "mappings" in s],
                [s["mappings"][kind] for s in half if "mappings" in s]), 2)}
            for kind in ("anon", "libraries", "other_files")},
        "mlflow_at_end": {k: end[k] for k in ("runs_active", "runs_deleted", "versions", "artifact_mib",
                                              "removed", "pruned")},
        "state_db_mib": end["state_db_mib"],
        "fsck_exit": check.returncode,
        "daemon_exit": daemon.returncode,
        "trace": [{"t": s["t"], "batches": s["counts"]["batches"], "rss_mib": s["rss_mib"], "fds": s["fds"]}
                  for s in samples[:: max(1, len(samples) // 60)]],
    }
    print(json.dumps({k: v for k, v in report.items() if k != "trace"}, indent=1))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "month.json").write_text(json.dumps(report, indent=1))
        (args.out / "month.md").write_text(render(report))
    sys.exit(0 if check.returncode == 0 else 1)


def counts_batches(state: Path) -> int:
    found = query(state / "state.db", "SELECT count(*) FROM events WHERE type = 'ingest.accepted'")
    return found[0][0] if found else 0


def newest(state: Path) -> tuple[int, str]:
    """The id and type of the newest event: an unchanged id with no cycle open means the daemon is idle."""
    found = query(state / "state.db", "SELECT id, type FROM events WHERE type != 'cycle.phase' ORDER BY id DESC LIMIT 1")
    return found[0] if found else (0, "")


def _median(samples: list[dict], key: str, lo: float, hi: float, sub: str | None = None) -> float:
    n = len(samples)
    part = samples[int(lo * n): max(int(lo * n) + 1, int(hi * n))]
    return round(statistics.median(s[key][sub] if sub else s[key] for s in part), 1)


def render(report: dict) -> str:
    rss, fds, ml = report["rss_mib"], report["fds"], report["mlflow_at_end"]
    lines = [
        "# A month of batches", "",
        f"`HF_HUB_OFFLINE=1 .venv/bin/{report['command']}` — {report['batches']} files of "
        f"{report['rows_per_batch']} rows through `cltool run` in {report['seconds']} s: {report['cycles']} cycles "
        f"({report['cycles_failed']} failed), decisions {report['decisions']}, `cltool fsck` exit {report['fsck_exit']}.",
        "",
        "| the daemon's process | first quarter (median) | last quarter (median) | max | slope per 100 batches (2nd half) |",
        "|---|---|---|---|---|",
        f"| RSS, MiB | {rss['first_quarter_median']} | {rss['last_quarter_median']} | {rss['max']} | "
        f"{rss['slope_per_100_batches_second_half']} |",
        f"| open file descriptors | {fds['first_quarter_median']} | {fds['last_quarter_median']} | {fds['max']} | "
        f"{fds['slope_per_100_batches_second_half']} |",
        *[f"| RSS of {kind.replace('_', ' ')} (smaps), MiB | {m['first_quarter_median']} | {m['last_quarter_median']} | "
          f"— | {m['slope_per_100_batches_second_half']} |"
          for kind, m in report.get("rss_by_mapping_mib", {}).items()],
        "",
        f"MLflow at the end (keep_versions 5, keep_runs 20): {ml['versions']} registered versions, "
        f"{ml['runs_active']} active runs and {ml['runs_deleted']} deleted ones awaiting `mlflow gc`, "
        f"{ml['artifact_mib']} MiB of artifacts; {ml['removed']} versions removed with their runs, "
        f"{ml['pruned']} pruned of their weights. State store: {report['state_db_mib']} MiB (the audit trail and "
        f"the rows, never pruned). /metrics scraped at every sample, {report['metrics_scrapes_failed']} failed.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
