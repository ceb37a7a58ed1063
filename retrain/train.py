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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    EvalPrediction,
    PrinterCallback,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from retrain import metrics
from retrain.config import TrainConfig  # also importable from here, as it always was
from retrain.data import to_dataset
from retrain.defaults import MAX_LENGTH
from retrain.devices import resolve_device
from retrain.errors import EmptyTrainingSetError, NonFiniteLossError
from retrain.loss import ContinualTrainer, class_weights
from retrain.modeling import load_for_training, quiet_progress

logger = logging.getLogger(__name__)

# Scratch folder for Trainer checkpoints inside out_dir; removed when fine_tune returns.
CHECKPOINTS = "checkpoints"
MODEL = "model"


@dataclass
class TrainResult:
    model_dir: Path  # out_dir/model: safetensors weights, config with id2label, tokenizer
    train_loss: float  # mean training loss over all steps run
    best_val_macro_f1: float | None  # None when there were no val rows
    epochs_run: float  # fewer than config.epochs when early stopping fired
    samples_seen: int  # train rows × epochs run: the cost measure the benchmarks report
    seconds: float  # wall time of the whole call, loading and saving included
    train_seconds: float = 0.0  # Trainer.train() alone: the optimisation steps plus each epoch's evaluation


class _LogToLogger(TrainerCallback):
    """Send Trainer's per-epoch logs to our logger; its stand-in for tqdm prints to stdout."""

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 (Trainer's hook)
        if logs and state.is_local_process_zero:
            logger.info("epoch %.2f: %s", state.epoch or 0.0, logs)


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
        # Teacher predictions ride along in the batch; the loss pops them.
        remove_unused_columns=False,
        # The daemon logs to MLflow itself: no integration may start its own run.
        report_to="none",
        disable_tqdm=not progress,
        use_cpu=device == "cpu",
        bf16=use_bf16(config.precision, device),
        dataloader_pin_memory=device != "cpu",
    )


def use_bf16(precision: str, device: str) -> bool:
    """Whether a run in `precision` on `device` trains in bf16 mixed precision (fp32 master weights)."""
    if precision == "auto":
        return device.startswith("cuda") and torch.cuda.is_bf16_supported()
    return precision == "bf16"


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
    val_rows: pd.DataFrame | None,
    labels: list[str],
    out_dir: Path,
    config: TrainConfig,
    *,
    max_length: int = MAX_LENGTH,
    progress: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Fine-tune `init` on `train_rows`, keep the best epoch on `val_rows`, save it to out_dir/model.

    `max_length` is the tokens kept per text (`ModelConfig.max_length`; the scorer must use the same).
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
    train_ds = to_dataset(train_rows, tokenizer, labels, max_length)
    has_val = val_rows is not None and len(val_rows) > 0
    val_ds = to_dataset(val_rows, tokenizer, labels, max_length) if has_val else None
    callbacks = (
        [EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience)]
        if has_val and config.early_stopping_patience > 0
        else []
    )
    if config.lora_rank > 0:
        model = _with_lora(model, config.lora_rank)
    trainer = ContinualTrainer(
        model=model,
        args=training_arguments(config, scratch, device, has_val, progress),
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=_val_macro_f1(len(labels)) if has_val else None,
        callbacks=callbacks,
        class_weight=class_weights(train_ds["labels"], len(labels)) if config.class_weighting else None,
        distill_alpha=config.distill_alpha,
        temperature=config.distill_temperature,
        # Batches of similar lengths pad little (tweets vary from 5 to 64 tokens), drawn in random order
        # (retrain/sampling.py; bench/throughput.py measures speed and quality against random batches).
        length_grouped=config.length_grouped,
    )
    # disable_tqdm swaps the bars for PrinterCallback, which print()s every log line.
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_LogToLogger())
    if should_stop is not None:  # the caller checks should_stop() again and discards an interrupted model
        trainer.add_callback(_StopWhenAsked(should_stop))
    logger.debug(
        "fine-tuning %s on %d rows (%d val) for up to %d epochs on %s",
        init, len(train_ds), len(val_ds) if val_ds is not None else 0, config.epochs, device,
    )
    try:
        # Checkpoint saves and the best-model reload have their own bars, outside disable_tqdm.
        with contextlib.nullcontext() if progress else quiet_progress():
            output = trainer.train()
        train_loss = float(output.training_loss)
        train_seconds = float(output.metrics.get("train_runtime", 0.0))
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(train_loss, config.learning_rate)
        trained = trainer.model.merge_and_unload() if config.lora_rank > 0 else trainer.model
        # Under DDP (`accelerate launch`) every rank trained the same weights: rank 0 alone writes them,
        # after every rank is done reading the best checkpoint.
        trainer.accelerator.wait_for_everyone()
        model_dir = out_dir / MODEL
        if trainer.is_world_process_zero():
            _save(trained, tokenizer, model_dir)
    finally:
        if trainer.is_world_process_zero():
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
        train_seconds=train_seconds,
    )
    logger.info("fine-tuned: %s", result)
    return result


def _with_lora(model, rank: int):  # noqa: ANN001, ANN202 (any HF classifier)
    """Wrap `model` in LoRA adapters on the attention query/value projections; the classifier head
    stays fully trainable (peft's SEQ_CLS task saves it). Imported here: peft is needed only then."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=rank, lora_alpha=2 * rank, lora_dropout=0.1,
                        target_modules=["query", "value"])
    return get_peft_model(model, config)


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
