"""Drift benchmark: do the monitors find injected drift and stay quiet without it, and what do they cost?

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.drift_bench --data ../shared/data

1. A real `run_cycle` (the daemon's code, default settings, packaged MiniLM, MLflow on SQLite in a
   temporary folder) bootstraps a champion from a 2,000-row Financial PhraseBank batch, timed.
2. Cost: `DriftMonitor.score_batch` on a 2,000-row PhraseBank batch, cold (reference refitted, as
   on the first batch after each cycle) and warm (reference cached), each repeated; medians.
3. Detection: the monitor's own reference suite for that champion (`DriftMonitor.reference`) scores
   seeded windows drawn from pools whose champion outputs are computed once:
   - same distribution: PhraseBank rows the champion never saw, natural label mix (false alarms);
   - domain shift: Twitter Financial News rows after the PhraseBank reference;
   - label-mix flip: PhraseBank rows with the neutral and positive shares swapped;
   - negative surge: PhraseBank rows with the negative share raised to `--surge-share`.
   Rates are per window, per detector and for the combined alert (any detector drifted); the
   hysteresis line counts alerts opened over the same-distribution windows taken as one stream.

Writes bench/results/drift.md and drift.json. PhraseBank is CC BY-NC-SA: read from --data, never copied.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from bench import common
from daemon.config import load_settings
from daemon.context import open_context
from daemon.cycle.run import run_cycle
from daemon.drift import Hysteresis
from daemon.drift.suite import DETECTORS, model_outputs
from daemon.monitoring.drift_pass import DriftMonitor
from retrain.evaluation import Predictor

LABELS = ["negative", "neutral", "positive"]
REPO = Path(__file__).resolve().parents[1]
TWITTER = {0: "negative", 1: "positive", 2: "neutral"}


def load_phrasebank(data: Path) -> pd.DataFrame:
    lines = (data / "financial_phrasebank/Sentences_50Agree.txt").read_text(encoding="latin-1").splitlines()
    rows = [line.rsplit("@", 1) for line in lines if "@" in line]
    frame = pd.DataFrame(rows, columns=["text", "label"]).drop_duplicates("text")
    return frame.sample(frac=1.0, random_state=0).reset_index(drop=True)


def load_twitter(data: Path, n: int) -> pd.DataFrame:
    frame = pd.read_csv(data / "twitter_financial_news_sentiment/sent_train.csv")
    frame["label"] = frame["label"].map(TWITTER)
    return frame.drop_duplicates("text").sample(n=n, random_state=0).reset_index(drop=True)


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return {"nproc": nproc, "cpu": model, "python": platform.python_version(), "gpu": "none (CPU only)"}


def ingest(ctx, rows: pd.DataFrame, name: str, folder: Path):
    path = folder / name
    rows[["text", "label"]].to_csv(path, index=False)
    result = ctx.inbox.ingest_copy(path)
    assert result.status == "accepted", result.reason
    return result.batch


def draw(pool: pd.DataFrame, n: int, seed: int, shares: dict[str, float] | None = None) -> np.ndarray:
    """Row positions of one window: a plain sample, or one with the given label shares."""
    rng = np.random.default_rng(seed)
    if shares is None:
        return rng.choice(len(pool), size=n, replace=False)
    counts = {label: int(round(n * share)) for label, share in shares.items()}
    picked = [rng.choice(np.flatnonzero(pool["label"].to_numpy() == label), size=k, replace=False)
              for label, k in counts.items() if k]
    return np.concatenate(picked)


def rates(windows: list[list]) -> dict[str, float]:
    """Share of windows in which each detector (and any detector) said drifted."""
    out = {}
    for name in DETECTORS:
        flags = [r.drifted for results in windows for r in results if r.detector == name]
        out[name] = float(np.mean(flags)) if flags else None
    out["combined"] = float(np.mean([any(r.drifted for r in results) for results in windows]))
    return out


def alerts_opened(windows: list[list], open_after: int, close_after: int) -> dict[str, int]:
    """Alerts a daemon would have opened on these windows as one stream (hysteresis per detector)."""
    out = {}
    for name in DETECTORS:
        gate, opened = Hysteresis(open_after, close_after), 0
        for results in windows:
            for r in results:
                if r.detector == name:
                    gate.update(r.drifted)
                    opened += gate.transition == "opened"
        out[name] = opened
    out["combined"] = sum(out.values())
    return out


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--batches", type=int, default=50, help="windows per scenario")
    parser.add_argument("--batch-rows", type=int, default=200, help="rows per window in the detection part")
    parser.add_argument("--reference-rows", type=int, default=2000, help="rows of the champion's batch")
    parser.add_argument("--cost-rows", type=int, default=2000, help="rows of the batch whose check is timed")
    parser.add_argument("--repeats", type=int, default=3, help="timed cold drift checks (reference refitted)")
    parser.add_argument("--warm-repeats", type=int, default=1, help="timed warm drift checks (reference cached)")
    parser.add_argument("--pool-rows", type=int, default=1500, help="unseen PhraseBank rows windows are drawn from")
    parser.add_argument("--twitter-rows", type=int, default=1000)
    parser.add_argument("--surge-share", type=float, default=0.35)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results")
    parser.add_argument("--note", default="", help="a sentence for the report (e.g. what else ran on the machine)")
    args = parser.parse_args()
    command = "HF_HUB_OFFLINE=1 .venv/bin/python -m bench.drift_bench " + shlex.join(sys.argv[1:])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started_all = time.perf_counter()

    phrasebank = load_phrasebank(args.data)
    reference, held_out = phrasebank.iloc[:args.reference_rows], phrasebank.iloc[args.reference_rows:].reset_index(drop=True)
    twitter = load_twitter(args.data, args.twitter_rows)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        # Default settings throughout (the training recipe and every [drift] key); the first-model
        # floor is lowered only so that a champion exists whatever its score.
        settings = load_settings(state_dir=str(root / "state"), inbox_dir=str(root / "inbox"),
                                 gate={"first_model_min_macro_f1": 0.0})
        ctx = open_context(settings, owner="bench")
        ingest(ctx, reference, "reference.csv", root)
        t0 = time.perf_counter()
        cycle = run_cycle(ctx, "bench")
        cycle_seconds = time.perf_counter() - t0
        champion = ctx.registry.get_alias("champion")
        print(f"cycle: {cycle.outcome} v{cycle.version} in {cycle_seconds:.1f}s; "
              f"fresh macro-F1 {cycle.metrics.get('fresh_macro_f1'):.3f}", flush=True)

        # Cost of one check on a cost-rows batch, through the daemon's own code path.
        batch = ingest(ctx, held_out.sample(n=args.cost_rows, random_state=1), "cost.csv", root)
        cold, warm = [], []
        for _ in range(args.repeats):
            monitor = DriftMonitor(ctx)
            t0 = time.perf_counter()
            monitor.score_batch(batch)
            cold.append(time.perf_counter() - t0)
        for _ in range(args.warm_repeats):
            t0 = time.perf_counter()
            monitor.score_batch(batch)
            warm.append(time.perf_counter() - t0)
        print(f"drift check on {args.cost_rows} rows: cold {statistics.median(cold):.1f}s, "
              f"warm {statistics.median(warm):.1f}s (medians of {args.repeats})", flush=True)

        # Detection: the monitor's reference suite; champion outputs on each pool computed once.
        suite = DriftMonitor(ctx).reference(batch, champion).suite
        predictor = Predictor(ctx.models.path(champion.version), max_length=settings.model.max_length)
        t0 = time.perf_counter()
        pools = {"phrasebank": held_out.head(args.pool_rows), "twitter": twitter}
        outputs = {name: model_outputs(predictor, pool["text"].tolist()) for name, pool in pools.items()}
        print(f"pool outputs for {sum(map(len, pools.values()))} rows in {time.perf_counter() - t0:.1f}s", flush=True)

        mix = pools["phrasebank"]["label"].value_counts(normalize=True).to_dict()
        flipped = {**mix, "neutral": mix["positive"], "positive": mix["neutral"]}
        rest = 1 - args.surge_share
        others = mix["neutral"] + mix["positive"]
        surge = {"negative": args.surge_share, "neutral": rest * mix["neutral"] / others,
                 "positive": rest * mix["positive"] / others}
        scenarios = {
            "same distribution (PhraseBank)": ("phrasebank", None),
            "domain shift (Twitter after PhraseBank)": ("twitter", None),
            "label-mix flip (neutral <-> positive shares)": ("phrasebank", flipped),
            f"negative surge (negative share {mix['negative']:.0%} -> {args.surge_share:.0%})": ("phrasebank", surge),
        }
        results, windows_by = {}, {}
        for name, (pool_name, shares) in scenarios.items():
            pool, out = pools[pool_name], outputs[pool_name]
            windows = []
            t0 = time.perf_counter()
            for seed in range(args.batches):
                index = draw(pool, args.batch_rows, seed=1000 + seed, shares=shares)
                rows = pool.iloc[index]
                scored, _skipped = suite.score(rows["text"].tolist(), rows["label"].tolist(), out.take(index))
                windows.append(scored)
            windows_by[name] = windows
            results[name] = {"rates": rates(windows), "seconds_per_window": (time.perf_counter() - t0) / args.batches,
                             "label_shares": shares or pool["label"].value_counts(normalize=True).to_dict()}
            print(name, {k: v for k, v in results[name]["rates"].items()}, flush=True)
        same = next(iter(windows_by))
        hysteresis = alerts_opened(windows_by[same], settings.drift.open_after, settings.drift.close_after)

    report = {
        "command": command, "machine": machine(), "note": args.note, "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {"drift": settings.drift.model_dump(), "train": settings.train.model_dump(),
                     "model": settings.model.model_dump()},
        "reference": {"rows": args.reference_rows, "source": "Financial PhraseBank 50Agree (shuffled, seed 0)",
                      "champion_fresh_macro_f1": cycle.metrics.get("fresh_macro_f1"),
                      "baseline_macro_f1": suite.baseline_f1},
        "cost": {"cycle_seconds": cycle_seconds, "cycle_outcome": cycle.outcome, "batch_rows": args.cost_rows,
                 "drift_cold_seconds": cold, "drift_warm_seconds": warm,
                 "drift_cold_median": statistics.median(cold), "drift_warm_median": statistics.median(warm),
                 "ratio_cold": statistics.median(cold) / cycle_seconds,
                 "ratio_warm": statistics.median(warm) / cycle_seconds},
        "detection": {"windows_per_scenario": args.batches, "rows_per_window": args.batch_rows,
                      "scenarios": results, "alerts_opened_on_same_distribution_stream": hysteresis},
        "total_seconds": time.perf_counter() - started_all,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "drift.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (args.out / "drift.md").write_text(render(report))
    print(f"wrote {args.out / 'drift.md'} and drift.json in {report['total_seconds']:.0f}s")


def render(r: dict) -> str:
    m, c, d = r["machine"], r["cost"], r["detection"]
    pct = lambda v: "—" if v is None else f"{v:.0%}"  # noqa: E731
    lines = [
        "# Drift benchmark", "",
        f"Command: `{r['command']}`  ", f"Machine: {m['nproc']} CPU cores (`nproc`), {m['cpu']}, {m['gpu']}, "
        f"Python {m['python']}; run at {r['at']}. {r['note']}".rstrip(), "",
        f"Champion: a real `run_cycle` on {r['reference']['rows']} PhraseBank rows (default settings, packaged "
        f"MiniLM): fresh macro-F1 {r['reference']['champion_fresh_macro_f1']:.3f}, the live-performance baseline.", "",
        "## Cost on CPU", "",
        "| what | seconds | share of the cycle |", "|---|---|---|",
        f"| one cycle (bootstrap on {r['reference']['rows']} rows: train, evaluate, register) | {c['cycle_seconds']:.1f} | 100 % |",
        f"| drift check, {c['batch_rows']}-row batch, cold (reference refitted), median of {len(c['drift_cold_seconds'])} "
        f"| {c['drift_cold_median']:.1f} | {c['ratio_cold']:.1%} |",
        f"| drift check, {c['batch_rows']}-row batch, warm (reference cached), median of {len(c['drift_warm_seconds'])} "
        f"| {c['drift_warm_median']:.1f} | {c['ratio_warm']:.1%} |", "",
        "The cycle timed is a bootstrap (no champion to replay or score against); a later cycle also trains on "
        "replay rows and scores the champion, so it is longer and the share above is an upper bound. "
        "The cold check is what the first batch after every cycle pays.", "",
        f"## Detection ({d['windows_per_scenario']} seeded windows of {d['rows_per_window']} rows per scenario)", "",
        "Share of windows each detector calls drifted; for the same-distribution rows that is the false-alarm "
        "rate, for the others the detection rate. `combined` = any detector drifted.", "",
        "| scenario | " + " | ".join(DETECTORS) + " | combined |",
        "|---|" + "---|" * (len(DETECTORS) + 1),
    ]
    for name, s in d["scenarios"].items():
        lines.append(f"| {name} | " + " | ".join(pct(s["rates"][k]) for k in DETECTORS) + f" | {pct(s['rates']['combined'])} |")
    h = d["alerts_opened_on_same_distribution_stream"]
    drift = r["settings"]["drift"]
    lines += ["", f"Alerts opened (open_after={drift['open_after']}, close_after={drift['close_after']}) over the "
              f"{d['windows_per_scenario']} same-distribution windows taken as one stream: "
              + ", ".join(f"{k} {v}" for k, v in h.items()) + ".", "",
              f"Settings: alpha {drift['alpha']}, label_psi {drift['label_psi']}, text_psi {drift['text_psi']}, "
              f"mmd_max_rows {drift['mmd_max_rows']}, mmd_permutations {drift['mmd_permutations']}, "
              f"surge_min_lift {drift['surge_min_lift']}, max_f1_drop {drift['max_f1_drop']} (the defaults).", "",
              f"Total wall time {r['total_seconds']:.0f} s. Raw numbers: `drift.json`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
