"""Probes for the daemon's slow RSS growth (bench/month.py): repeat one piece of the daemon's work many times in
one process, as the daemon does it, and report the RSS slope once the first quarter has warmed up.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python -m bench.leak_probe --out bench/results/month/probes

Pieces: `load` (a Predictor built from a saved tiny BERT, run over 200 texts, let go), `tokenizer` (the
tokenizer alone), `thread` (one loaded Predictor run over 50 new texts from a new thread each time, as the
scheduler's jobs call it), `register` (`ModelRegistry.log_candidate` of the tiny model into an embedded MLflow
store from a new thread: the cycle's registration). Each step ends as the daemon's cycle does: gc and
malloc_trim, with malloc arenas capped at two (daemon/memory.py).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench.rss_floor import REPO, rss_mib

PIECES = {"load": 200, "tokenizer": 200, "thread": 400, "register": 60}
LABELS = ["negative", "neutral", "positive"]


def probe(piece: str, steps: int, root: Path) -> dict:
    """Run in a fresh process (see main): `steps` repeats of `piece`, the RSS after each."""
    from daemon import memory

    memory.limit_arenas()
    from retrain.evaluation import Predictor
    from retrain.modeling import build_tiny_model

    model_dir = build_tiny_model(root / "tiny", LABELS)
    texts = [f"item {i} rose by {i % 17} percent" for i in range(200)]
    predictor = Predictor(model_dir, device="cpu", max_length=32) if piece == "thread" else None
    registry = None
    if piece == "register":
        from registry.models import ModelRegistry

        registry = ModelRegistry(f"sqlite:///{root}/mlflow.db", "probe", artifact_location=f"file://{root}/art")

    def once(i: int) -> None:
        if piece == "load":
            Predictor(model_dir, device="cpu", max_length=32).predict(texts)
        elif piece == "tokenizer":
            from transformers import AutoTokenizer

            AutoTokenizer.from_pretrained(model_dir)(texts, padding=True)
        elif piece == "thread":
            fresh = [f"item {i}-{j} rose by {j % 17} percent on {i}" for j in range(50)]
            worker = threading.Thread(target=lambda: predictor.predict(fresh))
            worker.start()
            worker.join()
        else:
            worker = threading.Thread(target=lambda: registry.log_candidate(
                model_dir=model_dir, run_name=f"c{i}", params={"i": i}, metrics={"m": 0.5},
                tags={"cltool.decision": "REJECT"}, json_artifacts={"evaluation": {"n": i}}))
            worker.start()
            worker.join()

    seen = []
    for i in range(steps):
        once(i)
        gc.collect()
        memory.trim()
        seen.append(rss_mib())
    warm = steps // 4
    return {"piece": piece, "steps": steps, "rss_first_mib": round(seen[0], 1), "rss_warm_mib": round(seen[warm], 1),
            "rss_last_mib": round(seen[-1], 1),
            "mib_per_100_steps": round((seen[-1] - seen[warm]) / (steps - 1 - warm) * 100, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", nargs="+", choices=list(PIECES), default=list(PIECES))
    parser.add_argument("--steps", type=int, help="repeats of each piece (default: per piece, see PIECES)")
    parser.add_argument("--out", type=Path, help="write probes.json and probes.md here")
    parser.add_argument("--child", nargs=2, metavar=("PIECE", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory(prefix="bench-leak-") as tmp:
            print(json.dumps(probe(args.child[0], int(args.child[1]), Path(tmp))))
        return
    results = []
    for piece in args.pieces:
        done = subprocess.run([sys.executable, "-m", "bench.leak_probe", "--child", piece, str(args.steps or PIECES[piece])],
                              capture_output=True, text=True, check=True, cwd=REPO)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    command = "HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python -m bench.leak_probe " + " ".join(sys.argv[1:])
    lines = ["# Where the daemon's RSS growth is not: one piece of its work repeated", "", f"Command: `{command.strip()}`",
             "", "RSS after each step (gc + malloc_trim, arenas capped at 2); slope from the end of the first quarter.", "",
             "| piece | steps | RSS first | after warm-up | last | MiB per 100 steps |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['piece']} | {r['steps']} | {r['rss_first_mib']:.0f} | {r['rss_warm_mib']:.0f} | {r['rss_last_mib']:.0f} "
              f"| {r['mib_per_100_steps']:+.2f} |" for r in results]
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "probes.json").write_text(json.dumps(results, indent=2))
        (args.out / "probes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
