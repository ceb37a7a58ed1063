"""Random-kill soak: the real daemon (`cltool run`) SIGKILLed at random moments while batches flow in.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.kill_soak                       # 6 batches, 20 kills
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.kill_soak --batches 8 --kills 30 --seed 2 --out bench/results/soak

A tiny BERT (built locally) learns toy rows, so a cycle takes seconds and the kills land in every phase:
claiming and recording files, drift scoring, training, registration, the decision and the alias move.
A feeder drops one 150-row file into the inbox every --feed-seconds, whatever the daemon is doing. The
daemon is started, SIGKILLed (no cleanup), and started again, --kills times;
each kill comes a random 0-6 s after the daemon's start-up has finished; then it runs undisturbed
until every batch is decided (or waits for more data) and is stopped with
SIGTERM. Then `cltool fsck --json` must be clean, every file recorded once and every consumed batch named
by exactly one decision. The report gives the kills, the phase each one interrupted (from the event log),
the repairs the restarts made (`fsck.repaired`), and the verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd

CLTOOL = str(Path(sys.executable).parent / "cltool")
LABELS = ["negative", "neutral", "positive"]
WORDS = {"negative": "plunge loss", "neutral": "meeting held", "positive": "soar profit"}
CONFIG = """\
state_dir = "{root}/state"
inbox_dir = "{root}/inbox"
[model]
base = "{base}"
max_length = 16
[train]
epochs = 4
batch_size = 16
learning_rate = 0.002
early_stopping_patience = 0
[trigger]
min_new_rows = 50
poll_seconds = 1
[gate]
first_model_min_macro_f1 = 0.0
min_fresh_rows = 10
[drift]
min_reference_rows = 20
[observe]
enabled = false
"""


def rows(batch: int, n: int = 150) -> pd.DataFrame:
    start = 1000 * batch
    return pd.DataFrame([(f"{WORDS[LABELS[i % 3]]} item {i}", LABELS[i % 3]) for i in range(start, start + n)],
                        columns=["text", "label"])


def feeder(inbox: Path, batches: int, every: float, stop: threading.Event) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    for batch in range(batches):
        if stop.wait(every if batch else 0.5):
            return
        partial = inbox / f".batch{batch}.csv.part"
        rows(batch).to_csv(partial, index=False)
        os.replace(partial, inbox / f"batch{batch}.csv")  # as a producer should: write, then rename in


def cltool(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([CLTOOL, "--config", str(config), *args], capture_output=True, text=True, timeout=timeout)


def events(config: Path) -> list[dict]:
    """The event log, read straight from the SQLite state store (a CLI call costs seconds of imports)."""
    db = config.parent / "state" / "state.db"
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        try:
            found = conn.execute("SELECT type, reason, payload FROM events ORDER BY id").fetchall()
        except sqlite3.OperationalError:  # the schema is being created
            return []
    return [{"type": t, "reason": r, "payload": json.loads(p)} for t, r, p in found]


def started(config: Path) -> int:
    return sum(1 for e in events(config) if e["type"] == "daemon.started")


def settled(config: Path, batches: int) -> bool:
    """Every fed file is recorded, no cycle is running, and the last decision leaves nothing to take
    (its batches consumed, or WAIT with no batch recorded since)."""
    log = events(config)
    if sum(1 for e in log if e["type"] == "ingest.accepted") < batches:
        return False
    ends = ("cycle.finished", "cycle.aborted", "cycle.failed")
    cycles = [e for e in log if e["type"] == "cycle.started" or e["type"] in ends]
    if not cycles or cycles[-1]["type"] == "cycle.started":
        return False
    last_ingest = max(i for i, e in enumerate(log) if e["type"] == "ingest.accepted")
    last_cycle = max(i for i, e in enumerate(log) if e["type"] == "cycle.started")
    return last_cycle > last_ingest and cycles[-1]["type"] == "cycle.finished"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--feed-seconds", type=float, default=6.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, help="folder for soak.json (else only printed)")
    args = p.parse_args()
    rng = random.Random(args.seed)
    from retrain.modeling import build_tiny_model

    root = Path(tempfile.mkdtemp(prefix="cltool-soak-"))
    base = build_tiny_model(root / "tiny", LABELS)
    config = root / "cltool.toml"
    config.write_text(CONFIG.format(root=root, base=base))
    stop = threading.Event()
    feed = threading.Thread(target=feeder, args=(root / "inbox", args.batches, args.feed_seconds, stop), daemon=True)
    began = time.monotonic()
    feed.start()
    interrupted: list[str] = []
    for kill in range(args.kills):
        before = started(config)
        daemon = subprocess.Popen([CLTOOL, "--config", str(config), "run"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120  # the kill lands in the daemon's life, not in its imports
        while started(config) == before and time.monotonic() < deadline and daemon.poll() is None:
            time.sleep(0.1)
        time.sleep(rng.uniform(0.0, 6.0))
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        log = events(config)
        starts = sum(1 for e in log if e["type"] == "daemon.started")
        last = log[-1]["type"] if log else "(nothing yet)"
        phase = next((e["reason"] for e in reversed(log) if e["type"] == "cycle.phase"), None)
        open_cycle = [e for e in log if e["type"] == "cycle.started"][-1:] and log[-1]["type"] not in (
            "cycle.finished", "cycle.aborted", "cycle.failed", "daemon.started")
        interrupted.append(f"after {last}" + (f" (cycle in {phase})" if open_cycle and phase else ""))
        print(f"kill {kill + 1}/{args.kills}: {interrupted[-1]}; {starts} starts so far", flush=True)
    feed.join()
    daemon = subprocess.Popen([CLTOOL, "--config", str(config), "run"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not settled(config, args.batches):
        time.sleep(2)
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=120)
    check = cltool(config, "fsck", "--json")
    findings = json.loads(check.stdout)
    log = json.loads(cltool(config, "history", "--all", "--json", "--limit", "100000").stdout)
    decided = Counter(b for e in log if e["type"] == "decision" and e["payload"].get("outcome") in ("PROMOTE", "REJECT")
                      for b in e["payload"].get("batches", []))
    accepted = Counter(e["payload"]["file"] for e in log if e["type"] == "ingest.accepted")
    report = {
        "command": " ".join(["python -m bench.kill_soak", *sys.argv[1:]]), "seed": args.seed,
        "batches_fed": args.batches, "kills": args.kills, "seconds": round(time.monotonic() - began),
        "interrupted": dict(Counter(interrupted)),
        "repairs": dict(Counter(e["payload"]["check"] for e in log if e["type"] == "fsck.repaired")),
        "files_recorded_once": all(n == 1 for n in accepted.values()) and len(accepted) == args.batches,
        "batches_decided_at_most_once": all(n == 1 for n in decided.values()),
        "decisions": Counter(e["payload"].get("outcome") for e in log if e["type"] == "decision"),
        "fsck_exit": check.returncode, "fsck": findings,
    }
    report["verdict"] = ("survived" if check.returncode == 0 and report["files_recorded_once"]
                         and report["batches_decided_at_most_once"] else "FAILED")
    print(json.dumps(report, indent=1, default=str))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "soak.json").write_text(json.dumps(report, indent=1, default=str))
    sys.exit(0 if report["verdict"] == "survived" else 1)


if __name__ == "__main__":
    main()
