"""Gate benchmark: does the promotion gate let real improvements through and keep harmful candidates out?

    E="HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false MLFLOW_DISABLE_TELEMETRY=true"
    env $E .venv/bin/python -m bench.gate_bench --data ../shared/data --quick      # smoke run, minutes
    env $E .venv/bin/python -m bench.gate_bench --data ../shared/data              # full: stages 1-3
    # stage 2 alone, from the cached stage-1 predictions, with another policy grid (seconds to minutes):
    env $E .venv/bin/python -m bench.gate_bench --data ../shared/data --stages 2 --name gate_grid \\
        --policy '{"name": "wait 800", "max_wait_rows": 800}' --policy '{"name": "default"}'

Everything runs through the daemon's own code: `run_cycle` trains and registers the candidates (stage 1
and 3), `registry.gate.decide` judges them (stages 1-3), `retrain.evaluation.score` and the daemon's
Predictor score them.

1. Stage 1 (real training; cached under --work as stage1.json, resumable): per seed, a champion
   bootstraps on data/demo/01-tweets.csv; then one cycle per kind of candidate, each in a copy of
   that state folder: clean (batch-rows new rows), clean_large (twice as many), noisy (20 % of labels
   moved to another class), poisoned (every label rotated), worse (the clean rows, trained with a
   destructive learning rate). Champion and candidates are scored on every row of the evaluation
   pool (sent_valid, halved into a fresh and a regression pool); true gain = candidate − champion
   macro-F1 on the whole pool.
2. Stage 2 (no training): per candidate and gate policy, --draws seeded evaluations from the stored
   per-row predictions, with the daemon's WAIT dynamic (bench/gate_draws.py): P(promote), P(reject),
   rows used, WAIT rounds, and the targets: harmful candidates promoted (target 0), clearly better
   candidates (gain ≥ +1 pt) not promoted (target ≤ 20 %).
3. Stage 3 (real training): the daemon over a clean and a poisoned stream with the gate's defaults and
   with always-promote, and joint retraining on each stream's clean rows (bench/gate_stream.py).

Outputs: --out/<name>.md and <name>.json (command, machine, commit, wall time per stage), rewritten as
each stage progresses. Stages not run this time are reported from the --work caches, with their command.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from bench import gate_report
from bench.gate_config import Config, quick
from bench.gate_data import NEEDED, evaluation_pool, kinds, unseen_train
from bench.gate_draws import GATE_CODE, PolicyGridError, read_grid
from registry.policy import GatePolicy

REPO = Path(__file__).resolve().parents[1]
STAGES_FILE = "stages.json"
STAGE2_FILE = "stage2.json"
OVERRIDES = ("seeds", "stream_seeds", "bootstrap_rows", "batch_rows", "noise", "worse_lr", "epochs", "pool_rows",
             "draws", "fresh_rows", "regression_rows", "jobs")
# Training and scoring run with this many torch threads unless --torch-threads says otherwise. On 2 cores
# shared with other jobs, 2 OpenMP threads spin against them: MiniLM trained 1.2 rows/s with 2 threads and
# 4.4 rows/s with 1 under the same load (measured on the 2-core machine of bench/results/gate).
TORCH_THREADS = 1


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, Config, list[dict]]:
    defaults = Config()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                   help="folder with twitter_financial_news_sentiment/")
    p.add_argument("--stages", type=int, nargs="+", choices=(1, 2, 3), default=[1, 2, 3])
    p.add_argument("--work", type=Path, help="stage caches and daemon folders (default /tmp/gate_bench, "
                                             "/tmp/gate_bench_quick with --quick)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gate")
    p.add_argument("--name", help="report file stem (default gate; gate_quick with --quick)")
    p.add_argument("--quick", action="store_true", help=quick.__doc__)
    p.add_argument("--policies", type=Path, nargs="+", metavar="FILE.json",
                   help="stage 2's grid: JSON lists of {'name': ..., <GatePolicy field>: value, ...}")
    p.add_argument("--policy", action="append", metavar="JSON", help="one more grid entry (repeatable); with "
                   "--policies or --policy the built-in grid (bench/gate_draws.py GRID) is not used")
    p.add_argument("--seeds", type=int, nargs="+", help=f"run seeds (default {defaults.seeds})")
    p.add_argument("--stream-seeds", type=int, nargs="+", help="stage 3's seeds (default: the first run seed)")
    p.add_argument("--torch-threads", type=int, default=TORCH_THREADS,
                   help=f"torch intra-op threads for stages 1 and 3 (default {TORCH_THREADS}; 0 = torch's own choice)")
    for name, kind in (("bootstrap_rows", int), ("batch_rows", int), ("noise", float), ("worse_lr", float),
                       ("epochs", int), ("pool_rows", int), ("draws", int), ("fresh_rows", int),
                       ("regression_rows", int), ("jobs", int)):
        p.add_argument("--" + name.replace("_", "-"), type=kind, help=f"default {getattr(defaults, name)}")
    args = p.parse_args(argv)
    for needed in NEEDED:
        if not (args.data / needed).is_file():
            p.error(f"--data {args.data}: {needed} not found (expected the shared data folder)")
    cfg = quick() if args.quick else Config()
    for name in OVERRIDES:
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    for name in OVERRIDES:
        value = getattr(cfg, name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            p.error(f"--{name.replace('_', '-')} {value}: must not be negative")
    if not 0 <= cfg.noise <= 1:
        p.error(f"--noise {cfg.noise}: a share in [0, 1]")
    args.work = args.work or Path("/tmp/gate_bench_quick" if args.quick else "/tmp/gate_bench")
    args.name = args.name or ("gate_quick" if args.quick else "gate")
    try:
        grid = read_grid(args.policies, args.policy)
    except (PolicyGridError, ValueError, OSError) as exc:
        p.error(f"policy grid: {exc}")
    return args, cfg, grid


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def main(argv: list[str] | None = None) -> dict:
    args, cfg, grid = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    command = "python -m bench.gate_bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    started, load_at_start = time.perf_counter(), os.getloadavg()[0]

    def progress(line: str) -> None:
        print(f"[{(time.perf_counter() - started) / 60:5.1f} min] {line}", flush=True)

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    pool = evaluation_pool(args.data, cfg.pool_rows)
    labels = ["negative", "neutral", "positive"]
    all_kinds = kinds(cfg.batch_rows, cfg.noise, cfg.worse_lr)
    stages = _load(work / STAGES_FILE)
    if args.torch_threads and {1, 3} & set(args.stages):
        import torch

        torch.set_num_threads(args.torch_threads)
    host, revision = gate_report.machine(), gate_report.commit()
    stored2 = _load(work / STAGE2_FILE)
    state: dict = {"stage2_raw": stored2.get("results"), "stage2_grid": stored2.get("grid"),
                   "stage2_params": stored2.get("params", {})}

    def cache() -> dict:
        from bench.gate_train import CACHE
        return _load(work / CACHE)

    def report() -> dict:
        stage1 = cache()
        raw2 = state["stage2_raw"]
        # Stage 1's settings are the cache's (what its predictions were made with), whatever this command says.
        # Likewise stage 2's draw settings are those of the run that made its results.
        config = {**cfg.to_dict(), **stage1.get("key", {}), **state["stage2_params"]}
        out = {"command": command, "machine": host, "commit": revision, "name": args.name, "work": str(work),
               "written": datetime.now(timezone.utc).isoformat(timespec="seconds"), "config": config,
               "pool": f"sent_valid {len(pool)} rows ({(pool['pool'] == 'fresh').sum()} fresh, "
                       f"{(pool['pool'] == 'regression').sum()} regression)",
               "gate_code": GATE_CODE, "gate_defaults": GatePolicy().model_dump(),
               "policies": state["stage2_grid"] or grid, "stages": stages,
               "load_average": {"start": load_at_start, "written": os.getloadavg()[0]}}
        if stage1.get("seeds"):
            out["stage1"] = gate_report.stage1_summary(stage1, all_kinds)
            if raw2:
                out["stage2"] = gate_report.stage2_summary(raw2, stage1, all_kinds)
        stage3 = _load(work / "stage3.json")
        if stage3:
            out["stage3"] = gate_report.stage3_summary(stage3)
        gate_report.write(args.out, args.name, out)
        return out

    def finish(stage: int, began: float) -> None:
        stages[str(stage)] = {"seconds": time.perf_counter() - began, "command": command}
        (work / STAGES_FILE).write_text(json.dumps(stages, indent=1))
        report()

    unseen = unseen_train(args.data) if {1, 3} & set(args.stages) else None
    if 1 in args.stages:
        from bench.gate_train import run_stage1

        began = time.perf_counter()
        trained = run_stage1(work, cfg, pool, unseen, labels, progress, cfg.jobs, args.torch_threads)
        if trained or "1" not in stages:
            finish(1, began)
    if 2 in args.stages:
        from bench.gate_draws import run_stage2

        began = time.perf_counter()
        stage1 = cache()
        if not stage1.get("seeds"):
            raise SystemExit(f"stage 2 needs stage 1's predictions: {work / 'stage1.json'} is missing (run --stages 1)")

        params = {"draws": cfg.draws, "fresh_rows": cfg.fresh_rows, "regression_rows": cfg.regression_rows}

        def partial(results: dict) -> None:
            state.update(stage2_raw=results, stage2_grid=grid, stage2_params=params)
            (work / STAGE2_FILE).write_text(json.dumps({"command": command, "grid": grid, "params": params,
                                                        "results": results}))
            report()

        run_stage2(stage1, grid, cfg.draws, cfg.fresh_rows, cfg.regression_rows, cfg.jobs, progress, partial)
        finish(2, began)
    if 3 in args.stages:
        from bench.gate_stream import run_stage3

        began = time.perf_counter()
        run_stage3(work, cfg, pool, unseen, labels, on_result=lambda _: report(), jobs=cfg.jobs,
                   threads=args.torch_threads)
        finish(3, began)
    final = report()
    progress(f"done: {args.out / (args.name + '.md')}")
    print((args.out / f"{args.name}.md").read_text())
    return final


if __name__ == "__main__":
    main()
