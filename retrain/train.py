"""Fine-tune a sequence classifier on rows with `transformers.Trainer`, early-stopping on val macro-F1.

The daemon hands in the champion's directory as `init` (continual learning starts from what the
model already knows), the new train rows plus a replay sample, and the val rows. Everything
that varies (device, seed, paths) is an argument; nothing is reported anywhere but the result.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    EvalPrediction,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from retrain import metrics
from retrain.data import to_dataset
from retrain.devices import resolve_device
from retrain.errors import EmptyTrainingSetError, InvalidConfigError, NonFiniteLossError
from retrain.modeling import load_for_training, quiet_progress

logger = logging.getLogger(__name__)

# Scratch folder for Trainer checkpoints inside out_dir; removed when fine_tune returns.
CHECKPOINTS = "checkpoints"
MODEL = "model"


@dataclass
class TrainConfig:
    """How to fine-tune. Every field is checked on construction; a bad one names itself."""

    epochs: int = field(default=4, metadata={"help": "Maximum passes over the train rows (>= 1)."})
    batch_size: int = field(default=16, metadata={"help": "Rows per training step (>= 1)."})
    learning_rate: float = field(
        default=2e-4, metadata={"help": "Peak AdamW learning rate, in (0, 1]."}
    )
    seed: int = field(
        default=13, metadata={"help": "Seeds head init, shuffling and dropout (>= 0)."}
    )
    max_length: int = field(
        default=64, metadata={"help": "Tokens kept per text, [CLS]/[SEP] included (>= 2)."}
    )
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay, in [0, 1)."})
    warmup_ratio: float = field(
        default=0.1, metadata={"help": "Share of steps warming up the learning rate, in [0, 1)."}
    )
    early_stopping_patience: int = field(
        default=1,
        metadata={
            "help": "Epochs without a better val macro-F1 before stopping (>= 0; 0 = never stop early)."
        },
    )
    device: str | None = field(
        default=None, metadata={"help": '"cpu", "cuda", or None to use a GPU when one is visible.'}
    )
    class_weighting: bool = field(
        default=True,
        metadata={"help": "Weight the loss by inverse class frequency of the train rows, so a "
                          "majority class (neutral news) cannot swamp the rare ones."},
    )

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_float("learning_rate", self.learning_rate, 0.0, 1.0, "(0, 1]", low_open=True)
        _check_int("seed", self.seed, 0)
        _check_int("max_length", self.max_length, 2)
        _check_float("weight_decay", self.weight_decay, 0.0, 1.0, "[0, 1)", high_open=True)
        _check_float("warmup_ratio", self.warmup_ratio, 0.0, 1.0, "[0, 1)", high_open=True)
        _check_int("early_stopping_patience", self.early_stopping_patience, 0)
        if self.device not in (None, "cpu", "cuda"):
            raise InvalidConfigError("device", self.device, '"cpu", "cuda" or None (auto)')


def _check_int(name: str, value: object, minimum: int) -> None:
    # bool is an int in Python; `epochs=True` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidConfigError(name, value, f"an integer >= {minimum}")


def _check_float(
    name: str,
    value: object,
    low: float,
    high: float,
    interval: str,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    expected = f"a number in {interval}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidConfigError(name, value, expected)
    if value < low or value > high or (low_open and value == low) or (high_open and value == high):
        raise InvalidConfigError(name, value, expected)


@dataclass
class TrainResult:
    model_dir: Path  # out_dir/model: safetensors weights, config with id2label, tokenizer
    train_loss: float  # mean training loss over all steps run
    best_val_macro_f1: float | None  # None when there were no val rows
    epochs_run: float  # fewer than config.epochs when early stopping fired
    samples_seen: int  # train rows × epochs run: the cost measure the benchmarks report
    seconds: float  # wall time of the whole call, loading and saving included


class _LogToLogger(TrainerCallback):
    """Send Trainer's per-epoch logs to our logger; its stand-in for tqdm prints to stdout."""

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 (Trainer's hook)
        if logs and state.is_local_process_zero:
            logger.info("epoch %.2f: %s", state.epoch or 0.0, logs)


def _weighted_loss(train_labels: list[int], n_classes: int):
    """Cross-entropy weighted by inverse class frequency ("balanced": n / (k * count)), capped at 10x
    so a class with a handful of rows cannot dominate either."""
    counts = np.bincount(np.asarray(train_labels), minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(n_classes)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    weights = torch.tensor(np.clip(weights, 0.1, 10.0), dtype=torch.float32)

    def loss(outputs, labels, num_items_in_batch=None):  # noqa: ANN001 (Trainer's hook)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        return torch.nn.functional.cross_entropy(logits.float(), labels, weight=weights.to(logits.device))

    return loss


class _StopWhenAsked(TrainerCallback):
    """Ends training at the next step once `should_stop()` is true (the daemon is shutting down)."""

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        self.should_stop = should_stop

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 (Trainer's hook)
        if self.should_stop():
            control.should_training_stop = True
        return control


def training_arguments(
    config: TrainConfig, output_dir: Path, device: str, has_val: bool, progress: bool = False
) -> TrainingArguments:
    """The TrainingArguments for one fine-tuning run (kept separate so tests can inspect them)."""
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        # transformers 5 dropped `warmup_ratio`: a float in [0, 1) here is read as a ratio.
        warmup_steps=float(config.warmup_ratio),
        seed=config.seed,
        data_seed=config.seed,
        eval_strategy="epoch" if has_val else "no",
        save_strategy="epoch" if has_val else "no",
        load_best_model_at_end=has_val,
        metric_for_best_model="macro_f1" if has_val else None,
        greater_is_better=True if has_val else None,
        # Only the best and the latest checkpoint, weights only: optimizer state is never resumed.
        save_total_limit=1,
        save_only_model=True,
        logging_strategy="epoch",
        # By default Trainer replaces a NaN/inf step loss with the running mean, which would
        # hide a diverged run from the finiteness check in fine_tune.
        logging_nan_inf_filter=False,
        # The daemon logs to MLflow itself: no integration may start its own run.
        report_to="none",
        disable_tqdm=not progress,
        use_cpu=device == "cpu",
        bf16=device.startswith("cuda") and torch.cuda.is_bf16_supported(),
        dataloader_pin_memory=device != "cpu",
    )


def _val_macro_f1(num_labels: int):
    """compute_metrics for Trainer: macro-F1 over all classes, through the shipped metric module."""

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        pred_ids = np.asarray(prediction.predictions).argmax(axis=-1)
        report = metrics.compute(
            "f1",
            predictions=pred_ids.tolist(),
            references=np.asarray(prediction.label_ids).tolist(),
            labels=list(range(num_labels)),
            average="macro",
            zero_division=0,
        )
        return {"macro_f1": report["f1"]}

    return compute


def fine_tune(
    init: str | Path,
    train_rows: pd.DataFrame,
    val_rows: pd.DataFrame,
    labels: list[str],
    out_dir: Path,
    config: TrainConfig,
    progress: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Fine-tune `init` on `train_rows`, keep the best epoch on `val_rows`, save it to out_dir/model.

    With no val rows it trains for `config.epochs` and keeps the last epoch. Checkpoints live in
    out_dir/checkpoints only while training. The model folder is written under a temporary name
    and renamed, so a crash never leaves a half-written model where a finished one is expected.
    """
    started = time.perf_counter()
    if len(train_rows) == 0:
        raise EmptyTrainingSetError()
    device = resolve_device(config.device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = out_dir / CHECKPOINTS
    shutil.rmtree(scratch, ignore_errors=True)  # leftovers of a run that crashed

    # Seed before loading: a fresh classification head is drawn from the global RNG.
    set_seed(config.seed)
    model, tokenizer = load_for_training(init, labels)
    train_ds = to_dataset(train_rows, tokenizer, labels, config.max_length)
    has_val = val_rows is not None and len(val_rows) > 0
    val_ds = to_dataset(val_rows, tokenizer, labels, config.max_length) if has_val else None
    callbacks = (
        [EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience)]
        if has_val and config.early_stopping_patience > 0
        else []
    )
    trainer = Trainer(
        model=model,
        args=training_arguments(config, scratch, device, has_val, progress),
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=_val_macro_f1(len(labels)) if has_val else None,
        compute_loss_func=_weighted_loss(train_ds["labels"], len(labels)) if config.class_weighting else None,
        callbacks=callbacks,
    )
    # disable_tqdm swaps the bars for PrinterCallback, which print()s every log line.
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_LogToLogger())
    if should_stop is not None:  # the caller checks should_stop() again and discards an interrupted model
        trainer.add_callback(_StopWhenAsked(should_stop))
    logger.info(
        "fine-tuning %s on %d rows (%d val) for up to %d epochs on %s",
        init, len(train_ds), len(val_ds) if val_ds is not None else 0, config.epochs, device,
    )
    try:
        # Checkpoint saves and the best-model reload have their own bars, outside disable_tqdm.
        with contextlib.nullcontext() if progress else quiet_progress():
            output = trainer.train()
        train_loss = float(output.training_loss)
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(train_loss, config.learning_rate)
        model_dir = _save(trainer.model, tokenizer, out_dir / MODEL)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    epochs_run = float(trainer.state.epoch or 0.0)
    best = trainer.state.best_metric if has_val else None
    result = TrainResult(
        model_dir=model_dir,
        train_loss=train_loss,
        best_val_macro_f1=float(best) if best is not None else None,
        epochs_run=epochs_run,
        samples_seen=round(len(train_ds) * epochs_run),
        seconds=time.perf_counter() - started,
    )
    logger.info("fine-tuned: %s", result)
    return result


def _save(model, tokenizer, model_dir: Path) -> Path:  # noqa: ANN001 (any HF model/tokenizer)
    """Write model + tokenizer to `model_dir` through a temporary sibling and a rename."""
    partial = model_dir.with_name(model_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with quiet_progress():
        model.save_pretrained(partial)  # safetensors: the only format transformers 5 writes
        tokenizer.save_pretrained(partial)
    shutil.rmtree(model_dir, ignore_errors=True)
    partial.rename(model_dir)
    return model_dir
