"""Stream benchmark: does a cltool-style update learn the new without forgetting the old, and at what cost?

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.cl_stream --data ../shared/data --quick     # < 5 min, smoke
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.cl_stream --data ../shared/data             # full, < 45 min
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.cl_stream --data ../shared/data --pb-batches 1 --tw-batches 0 \
        --batch-rows 0 --test-rows 0 --strategies joint --epochs 10 --learning-rate 7e-5   # PhraseBank ceiling

The stream: Financial PhraseBank (50Agree) in 3 batches, then Twitter financial news in 3 batches
(a domain shift: short, noisy tweets with cash-tags). Held out per domain: a fixed 20 % of
PhraseBank (stratified, stream seed 0) and the Twitter `sent_valid.csv` file. Every strategy uses
the same model (the packaged MiniLM), seeds, epochs and hyper-parameters; the first update
(batch 1 from the base model) is identical for all and is trained once per seed and shared.

Strategies: naive (new rows only), each replay policy (class_balanced, reservoir, recency),
LoRA + class-balanced replay, distillation + class-balanced replay (LwF-style), and joint
retraining from the base model on all rows so far (the quality ceiling and the cost without
cltool). Every strategy but joint assembles its updates with the daemon's own
`retrain.update.prepare_update` (replay sample, val mix, teacher probabilities, replay state carried
from update to update). Outputs, under --out, named by --name (default cl_stream): `<name>.md` (tables, with the
command and machine on top), `<name>.json` (every cell of every run) and two PNGs.

Scores are macro-F1 on each domain's test rows. Forgetting (PhraseBank) = the PhraseBank score
after its last batch minus the final one (after the Twitter updates); cumulative samples = train rows × epochs actually
run, summed over updates (the joint strategy retrains from scratch at every update).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import get_args

from bench.cl_data import NEEDED, build_stream
from bench.cl_report import machine, merge, summarise, write_report
from bench.cl_runs import Run, first_update, fmt, run_strategy
from bench.cl_settings import (
    CONFIGS,
    STRATEGIES,
    Settings,
    derive,
    quick_settings,
    train_config,
)
from retrain.errors import InvalidConfigError

REPO = Path(__file__).resolve().parents[1]

# Flags that set a benchmark setting of the same name: the stream, the runs and the strategies.
BENCH_FLAGS = ("pb_batches", "tw_batches", "batch_rows", "tw_batch_rows", "test_rows", "val_share", "seeds",
               "strategies", "lora_rank", "lora_learning_rate", "distill_alpha")
# Flags that set a field of one of the package's configs: flag → (Settings attribute, field).
CONFIG_FLAGS = {"epochs": ("train", "epochs"), "batch_size": ("train", "batch_size"),
                "learning_rate": ("train", "learning_rate"), "precision": ("train", "precision"),
                "class_weighting": ("train", "class_weighting"), "length_grouped": ("train", "length_grouped"),
                "replay_ratio": ("replay", "ratio"),
                "reservoir_capacity": ("replay", "reservoir_capacity"),
                "half_life_rows": ("replay", "half_life_rows"), "max_length": ("model", "max_length")}
# The strategies' own settings are TrainConfig fields too, checked by building the strategy's config.
STRATEGY_FIELDS = {"lora_rank": "lora_rank", "learning_rate": "lora_learning_rate", "distill_alpha": "distill_alpha"}


# Switches the daemon has on by default: their flags turn them off, with this help.
NEGATED = {"class_weighting": "plain cross-entropy instead of the daemon's inverse-class-frequency weights",
           "length_grouped": "random batches instead of the daemon's length-grouped ones"}


def _flag(name: str) -> str:
    return ("--no-" if name in NEGATED else "--") + name.replace("_", "-")


def _config_help(defaults: Settings, section: str, name: str) -> str:
    """A config flag's help: the field's own description and default, and the benchmark's where it differs."""
    info = CONFIGS[section].model_fields[name]
    ours = getattr(getattr(defaults, section), name)
    text = f"{info.description} Default: {ours}" + ("" if ours == info.default else f" (the daemon's: {info.default})")
    return text.replace("%", "%%")  # argparse formats help with %


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, Settings]:
    defaults = Settings()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                   help="folder with financial_phrasebank/ and twitter_financial_news_sentiment/")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="where the report and PNGs go")
    p.add_argument("--name", default="cl_stream", help="file name stem of the report, JSON and PNGs")
    p.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                   help="train nothing: write one report (--out, --name) from the JSON files of runs made "
                        "separately with the same settings and different seeds")
    p.add_argument("--quick", action="store_true", help=quick_settings.__doc__)
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES)
    p.add_argument("--val-share", type=float,
                   help=f"hold out this share of each batch for early stopping (default {defaults.val_share})")
    p.add_argument("--joint-every-update", action="store_true", help="score joint after every update, not only "
                   "after each domain's last batch (its cost is counted either way)")
    p.add_argument("--tw-batch-rows", type=int, help="rows per Twitter batch (default: as many as a PhraseBank batch)")
    for name in ("batch_rows", "test_rows", "pb_batches", "tw_batches"):
        p.add_argument(_flag(name), type=int)
    p.add_argument("--lora-rank", type=int, help=f"the lora strategy's adapter rank (default {defaults.lora_rank})")
    p.add_argument("--lora-learning-rate", type=float,
                   help=f"the lora strategy's learning rate (default {defaults.lora_learning_rate})")
    p.add_argument("--distill-alpha", type=float,
                   help=f"the distill strategy's distillation weight (default {defaults.distill_alpha})")
    for flag, (section, field) in CONFIG_FLAGS.items():
        info = CONFIGS[section].model_fields[field]
        if flag in NEGATED:
            p.add_argument(_flag(flag), dest=flag, action="store_false", default=None, help=NEGATED[flag])
        elif get_args(info.annotation):
            p.add_argument(_flag(flag), choices=get_args(info.annotation),
                           help=_config_help(defaults, section, field))
        else:
            p.add_argument(_flag(flag), type=info.annotation, help=_config_help(defaults, section, field))
    args = p.parse_args(argv)
    for needed in NEEDED:
        if not (args.data / needed).is_file():
            p.error(f"--data {args.data}: {needed} not found (expected the shared data folder)")
    given = [name for name in (*BENCH_FLAGS, *CONFIG_FLAGS) if getattr(args, name) is not None]
    for name in given:
        value = getattr(args, name)
        if name in BENCH_FLAGS and isinstance(value, (int, float)) and value < 0:
            p.error(f"{_flag(name)} {value}: must not be negative")
    training_flags = ([_flag(n) for n in given] + ["--quick"] * args.quick
                      + ["--joint-every-update"] * args.joint_every_update)
    if args.merge and training_flags:
        p.error(f"--merge trains nothing and takes its settings from the parts: drop {', '.join(training_flags)}")
    s = quick_settings() if args.quick else Settings()
    s.joint_every_update = args.joint_every_update
    for name in given:
        value = getattr(args, name)
        if name not in CONFIG_FLAGS:
            setattr(s, name, value)
            continue
        section, field = CONFIG_FLAGS[name]
        try:
            setattr(s, section, derive(getattr(s, section), **{field: value}))
        except InvalidConfigError as exc:
            p.error(f"{_flag(name)} {value}: {exc}")
    for strategy in ("lora", "distill"):
        try:
            train_config(s, 0, strategy)
        except InvalidConfigError as exc:
            name = STRATEGY_FIELDS.get(exc.field, exc.field)
            p.error(f"{_flag(name)} {getattr(s, name, exc.value)}: {exc}")
    return args, s


def main(argv: list[str] | None = None) -> None:
    args, s = parse(argv)
    started = time.perf_counter()
    command = "python -m bench.cl_stream " + shlex.join(sys.argv[1:] if argv is None else argv)

    def progress(line: str) -> None:
        print(f"[{(time.perf_counter() - started) / 60:5.1f} min] {line}", flush=True)

    if args.merge:
        merge(args.merge, args.data, args.out, args.name, command)
        print((args.out / f"{args.name}.md").read_text())
        return
    host = machine()  # once, at the start: the commit is the code that ran
    batches, tests = build_stream(args.data, s)
    progress(f"stream: {[len(b) for b in batches]} rows per batch; test rows "
             f"{ {d: len(t) for d, t in tests.items()} }; strategies {s.strategies}; seeds {s.seeds}")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="cl_stream-") as tmp:
        work = Path(tmp)
        for seed in s.seeds:
            first = first_update(batches, tests, s, seed, work)
            progress(f"seed {seed} update 1 (shared): PB {fmt(first['cells'][0])}")
            for strategy in s.strategies:
                runs.append(run_strategy(strategy, seed, batches, tests, s, first, work, progress))
                for leftover in work.glob(f"{strategy}-{seed}-*"):
                    shutil.rmtree(leftover, ignore_errors=True)
            # Partial results after each seed: a long run that is stopped still leaves a report.
            write_report(args.out, args.name, summarise(runs, batches), runs, s, command, host,
                         time.perf_counter() - started, batches, tests)
    progress(f"done: {args.out / (args.name + '.md')}")
    print((args.out / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
