"""Peak memory of ingesting one large file: the daemon's own Inbox on an empty state, one file of N rows.

    .venv/bin/python -m bench.ingest_memory --rows 1000000          # one size
    .venv/bin/python -m bench.ingest_memory --rows 100000 300000 1000000 --out bench/results/ingest_memory.json

Each size runs in a fresh process (so its peak resident set size, ru_maxrss, is its own) and reports the
peak RSS, the RSS after importing cltool (the floor), the wall time and the rows recorded. The rows are
synthetic headlines of 60-140 characters with three labels, all distinct, written as CSV.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
from pathlib import Path
from daemon.config import load_settings
from daemon.ingest.inbox import Inbox
from daemon.state.store import StateStore
floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
root, path = Path(sys.argv[1]), Path(sys.argv[2])
settings = load_settings(state_dir=str(root / "state"), inbox_dir=str(root / "inbox"))
inbox = Inbox(settings, StateStore(settings.store_url), settle_seconds=0)
began = time.perf_counter()
result = inbox.ingest_copy(path)
print(json.dumps({"status": result.status, "rows": result.batch.rows_accepted if result.batch else 0,
                  "seconds": time.perf_counter() - began, "floor_kib": floor,
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

WORDS = ("shares", "profit", "loss", "quarter", "revenue", "guidance", "bank", "rates", "merger", "dividend",
         "outlook", "falls", "rises", "beats", "misses", "estimates", "stock", "market", "bond", "yield")


def write_rows(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    labels = ("negative", "neutral", "positive")
    with path.open("w", encoding="utf-8") as handle:
        handle.write("text,label\n")
        for i in range(n):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 18)))
            handle.write(f"headline {i}: {words},{labels[i % 3]}\n")


def measure(n: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="cltool-ingest-bench-") as folder:
        root = Path(folder)
        path = root / f"rows-{n}.csv"
        write_rows(path, n)
        size = path.stat().st_size
        done = subprocess.run([sys.executable, "-c", CHILD, str(root), str(path)], capture_output=True, text=True,
                              check=True)
        out = json.loads(done.stdout.strip().splitlines()[-1])
    return {"rows_in_file": n, "file_mb": round(size / 1e6, 1), "rows_recorded": out["rows"], "status": out["status"],
            "seconds": round(out["seconds"], 1), "floor_mb": round(out["floor_kib"] / 1024),
            "peak_rss_mb": round(out["peak_kib"] / 1024)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    p.add_argument("--out", type=Path, help="also write the results here as JSON")
    args = p.parse_args()
    results = []
    for n in args.rows:
        began = time.perf_counter()
        results.append(measure(n))
        print(json.dumps(results[-1]), f"({time.perf_counter() - began:.0f} s with the file's writing)", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"command": " ".join(["python -m bench.ingest_memory", *sys.argv[1:]]),
                                        "results": results}, indent=1))


if __name__ == "__main__":
    main()
