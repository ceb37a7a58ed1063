"""Training throughput of cltool's update recipe against a plain `transformers.Trainer`, and what
length-grouped batches do to quality.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.throughput --out bench/results/throughput

The same packaged MiniLM, the same --rows tweets (Twitter financial news, train split), batch size 16,
fp32 on the CPU, three setups side by side per seed (their order rotates from seed to seed, so machine
noise hits each alike):

- `plain`: `transformers.Trainer` with its defaults (3 epochs, lr 5e-5, random batches, no evaluation);
- `random`: `retrain.train.fine_tune` with `train.length_grouped = false` (random batches);
- `grouped`: `fine_tune` as shipped (`train.length_grouped = true`, the default: retrain/sampling.py).

Throughput is training samples per second of `Trainer.train()` (for fine_tune that includes its
evaluation of the validation rows after each epoch and the checkpoint of the best one: the recipe's
real cost). Quality is macro-F1 on --val held-out tweets (the validation split) of the model each setup
returns. The padding share is the share of padded tokens in one epoch of each sampler's batches.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from bench import common
from bench.cl_data import read_twitter, stratified_take
from retrain.config import TrainConfig
from retrain.data import to_dataset
from retrain.defaults import MAX_LENGTH
from retrain.evaluation import Predictor, score
from retrain.modeling import PACKAGED_BASE, quiet_progress, resolve_base
from retrain.train import fine_tune

LABELS = ["negative", "neutral", "positive"]
SETUPS = ("plain", "random", "grouped")
REPO = Path(__file__).resolve().parents[1]
COMMAND = "HF_HUB_OFFLINE=1 .venv/bin/python -m bench.throughput --out bench/results/throughput"


def plain_trainer(base: str, train: pd.DataFrame, out: Path, batch_size: int, seed: int) -> tuple[Path, float, int]:
    """Trainer with its defaults on the same model, rows and batch size: (model folder, samples/s, samples)."""
    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    with quiet_progress():
        model = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
            label2id={label: i for i, label in enumerate(LABELS)})
    args = TrainingArguments(output_dir=str(out / "scratch"), per_device_train_batch_size=batch_size,
                             seed=seed, use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=to_dataset(train, tokenizer, LABELS, MAX_LENGTH),
                      processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer))
    output = trainer.train()
    trainer.save_model(str(out / "model"))
    samples = round(len(train) * args.num_train_epochs)
    return out / "model", samples / output.metrics["train_runtime"], samples


def padding_share(base: str, train: pd.DataFrame, grouped: bool, batch_size: int) -> float:
    """The share of padding tokens in one epoch of batches drawn as fine_tune draws them."""
    from retrain.loss import ContinualTrainer
    from retrain.train import training_arguments

    tokenizer = AutoTokenizer.from_pretrained(base)
    with quiet_progress():
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(LABELS))
    config = TrainConfig(device="cpu", batch_size=batch_size, length_grouped=grouped)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = ContinualTrainer(model=model, args=training_arguments(config, Path(tmp), "cpu", has_val=False),
                                   train_dataset=to_dataset(train, tokenizer, LABELS, MAX_LENGTH),
                                   processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                                   length_grouped=grouped)
        masks = [batch["attention_mask"] for batch in trainer.get_train_dataloader()]
    return 1 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)


def run(setup: str, base: str, train: pd.DataFrame, val: pd.DataFrame, batch_size: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"cltool-throughput-{setup}-") as tmp:
        if setup == "plain":
            model_dir, per_second, samples = plain_trainer(base, train, Path(tmp), batch_size, seed)
            epochs = 3.0
        else:
            config = TrainConfig(device="cpu", precision="fp32", batch_size=batch_size, seed=seed,
                                 length_grouped=setup == "grouped")
            result = fine_tune(base, train, val, LABELS, Path(tmp), config)
            model_dir, samples, epochs = result.model_dir, result.samples_seen, result.epochs_run
            per_second = samples / result.train_seconds
        ids, _ = Predictor(model_dir, device="cpu").predict(val["text"].tolist())
    f1 = score(val["label"].tolist(), ids, LABELS)["macro_f1"]
    return {"setup": setup, "seed": seed, "samples_per_second": per_second, "samples": samples,
            "epochs": epochs, "val_macro_f1": f1}


def report(runs: list[dict], padding: dict[str, float], args: argparse.Namespace) -> str:
    median = {s: {k: statistics.median(r[k] for r in runs if r["setup"] == s)
                  for k in ("samples_per_second", "val_macro_f1", "epochs")} for s in SETUPS}
    gaps = [next(r for r in runs if r["setup"] == "grouped" and r["seed"] == seed)["val_macro_f1"]
            - next(r for r in runs if r["setup"] == "random" and r["seed"] == seed)["val_macro_f1"]
            for seed in sorted({r["seed"] for r in runs})]
    lines = [
        "# Training throughput: cltool's recipe against a plain transformers.Trainer", "",
        f"Command: `{COMMAND}`" + (f" (run with `--rows {args.rows} --seeds {args.seeds}`)"
                                   if (args.rows, args.seeds) != (1000, 3) else ""), "",
        f"Packaged MiniLM, {args.rows} Twitter financial-news tweets (train split), batch 16, fp32, CPU; quality on "
        f"{args.val} validation-split tweets. Medians over {args.seeds} seeds, the setups alternating within each.", "",
        "| setup | samples/s | ratio to plain | epochs | val macro-F1 | padding share |", "|---|---:|---:|---:|---:|---:|",
    ]
    plain = median["plain"]["samples_per_second"]
    for s in SETUPS:
        m = median[s]
        pad = padding["grouped" if s == "grouped" else "random"]
        lines.append(f"| {s} | {m['samples_per_second']:.1f} | {m['samples_per_second'] / plain:.2f} | "
                     f"{m['epochs']:.1f} | {m['val_macro_f1']:.3f} | {pad:.1%} |")
    lines += ["", f"grouped − random val macro-F1 per seed (paired): {', '.join(f'{g:+.3f}' for g in gaps)}", "",
              "`plain` runs Trainer's defaults (3 epochs, lr 5e-5, no per-epoch evaluation); `random` and `grouped` "
              "run the shipped recipe (up to 4 epochs with early stopping on the validation rows, lr 2e-4, class "
              "weighting), whose samples/s include the evaluation after each epoch and the best checkpoint.", "",
              "| setup | seed | samples/s | samples | epochs | val macro-F1 |", "|---|---:|---:|---:|---:|---:|"]
    for r in runs:
        lines.append(f"| {r['setup']} | {r['seed']} | {r['samples_per_second']:.1f} | {r['samples']} | "
                     f"{r['epochs']:.1f} | {r['val_macro_f1']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--val", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "throughput")
    args = parser.parse_args()
    base = str(resolve_base(PACKAGED_BASE))
    train = stratified_take(read_twitter(args.data, "sent_train.csv"), args.rows, seed=0)
    val = stratified_take(read_twitter(args.data, "sent_valid.csv"), args.val, seed=0)
    padding = {name: padding_share(base, train, name == "grouped", 16) for name in ("random", "grouped")}
    print(f"padding share: {padding}", flush=True)
    runs = []
    for index, seed in enumerate(range(13, 13 + args.seeds)):
        order = SETUPS[index % 3:] + SETUPS[:index % 3]
        for setup in order:
            started = time.perf_counter()
            runs.append(run(setup, base, train, val, 16, seed))
            print(f"{setup} seed {seed}: {runs[-1]} ({time.perf_counter() - started:.0f} s)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "throughput.json").write_text(json.dumps({"runs": runs, "padding": padding}, indent=2) + "\n")
    text = report(runs, padding, args)
    (args.out / "throughput.md").write_text(text)
    print(text)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
