"""Fine-tune a sequence classifier on rows with `transformers.Trainer`, early-stopping on val macro-F1.

The daemon hands in the champion's directory as `init` (continual learning starts from what the
model already knows), the new train rows plus a replay sample, and the val rows. Everything
that varies (device, seed, paths) is an argument; nothing is reported anywhere but the result.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
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
from retrain.defaults import MAX_LENGTH
from retrain.devices import resolve_device
from retrain.errors import EmptyTrainingSetError, InvalidConfigError, NonFiniteLossError
from retrain.modeling import load_for_training, quiet_progress

logger = logging.getLogger(__name__)

# Scratch folder for Trainer checkpoints inside out_dir; removed when fine_tune returns.
CHECKPOINTS = "checkpoints"
PRECISIONS = ("auto", "fp32", "bf16")
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
        default=MAX_LENGTH, metadata={"help": "Tokens kept per text, [CLS]/[SEP] included (>= 2)."}
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
    label_smoothing: float = field(
        default=0.0,
        metadata={"help": "Share of each row's target spread evenly over all classes, in [0, 1); 0 = plain "
                          "one-hot targets."},
    )
    distill_alpha: float = field(
        default=0.0,
        metadata={"help": "Weight of the distillation term (KL to the champion's predictions on rows that "
                          "carry `teacher_probs`, LwF-style); 0 = off."},
    )
    distill_temperature: float = field(
        default=2.0, metadata={"help": "Softmax temperature of the distillation term (> 0)."}
    )
    precision: str = field(
        default="auto",
        metadata={"help": '"auto" (bf16 mixed precision on a GPU that supports it, else fp32), "fp32", or '
                          '"bf16" (mixed precision on CPU too: 1.7x faster training on an AVX512-BF16 CPU, '
                          'bench/precision.py; slower on CPUs without).'},
    )
    layer_lr_decay: float = field(
        default=1.0,
        metadata={"help": "Layer-wise learning-rate decay, in (0, 1]: the head trains at `learning_rate`, each "
                          "encoder layer below it at this factor times the layer above, the embeddings "
                          "lowest; 1 = one rate for all."},
    )
    ema_decay: float = field(
        default=0.0,
        metadata={"help": "Per-step decay of an exponential moving average of the weights, in [0, 1); at each "
                          "epoch's end the average is scored on val, checkpointed and, after the last epoch, "
                          "saved. 0 = off: the weights as trained."},
    )
    lora_rank: int = field(
        default=0,
        metadata={"help": "Train LoRA adapters of this rank on query/value (through peft) and merge them "
                          "into the weights afterwards; 0 = full fine-tuning."},
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
        _check_float("label_smoothing", self.label_smoothing, 0.0, 1.0, "[0, 1)", high_open=True)
        _check_float("distill_alpha", self.distill_alpha, 0.0, 100.0, "[0, 100]")
        _check_float("distill_temperature", self.distill_temperature, 0.0, 100.0, "(0, 100]", low_open=True)
        _check_float("layer_lr_decay", self.layer_lr_decay, 0.0, 1.0, "(0, 1]", low_open=True)
        _check_float("ema_decay", self.ema_decay, 0.0, 1.0, "[0, 1)", high_open=True)
        _check_int("lora_rank", self.lora_rank, 0)
        if self.precision not in PRECISIONS:
            raise InvalidConfigError("precision", self.precision, " or ".join(f'"{p}"' for p in PRECISIONS))
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


def class_weights(train_labels: list[int], n_classes: int) -> torch.Tensor:
    """Inverse class frequency ("balanced": n / (k * count)), capped to [0.1, 10] so a class with a
    handful of rows cannot dominate either; 1 for a class with no rows."""
    counts = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(n_classes)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return torch.tensor(np.clip(weights, 0.1, 10.0), dtype=torch.float32)


def continual_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weight: torch.Tensor | None = None,
    sample_weight: torch.Tensor | None = None,
    teacher_probs: torch.Tensor | None = None,
    teacher_mask: torch.Tensor | None = None,
    distill_alpha: float = 0.0,
    temperature: float = 2.0,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy, weighted per class and per row, plus an optional distillation term.

    The weighted CE is a weighted mean (sum of w·CE over sum of w, w = class weight × row weight), so
    with only class weights it equals `cross_entropy(weight=...)`. The distillation term is
    `alpha · T² · KL(teacher_T || student_T)` averaged over the rows whose `teacher_mask` is 1: it
    pulls the update towards the champion's answers on replayed rows (learning without forgetting).
    """
    logits = logits.float()
    per_row = torch.nn.functional.cross_entropy(logits, labels, reduction="none", label_smoothing=label_smoothing)
    weight = torch.ones_like(per_row)
    if class_weight is not None:
        weight = weight * class_weight.to(logits.device)[labels]
    if sample_weight is not None:
        weight = weight * sample_weight.to(logits.device).float()
    loss = (weight * per_row).sum() / weight.sum().clamp_min(1e-12)
    if distill_alpha > 0 and teacher_probs is not None and teacher_mask is not None and teacher_mask.sum() > 0:
        mask = teacher_mask.to(logits.device).float()
        teacher = torch.softmax(torch.log(teacher_probs.to(logits.device).float().clamp_min(1e-8)) / temperature, -1)
        student = torch.log_softmax(logits / temperature, -1)
        kl = (teacher * (torch.log(teacher.clamp_min(1e-12)) - student)).sum(-1)
        loss = loss + distill_alpha * temperature**2 * (kl * mask).sum() / mask.sum()
    return loss


_LAYER = re.compile(r"(?:^|\.)layer\.(\d+)\.")


def layer_depth(name: str, n_layers: int) -> int:
    """Where a parameter sits, bottom up: 0 = embeddings, i + 1 = encoder layer i, n_layers + 1 = above the
    encoder (pooler, classifier head). Works on peft-wrapped names too (`base_model.model.bert...`)."""
    found = _LAYER.search(name)
    if found:
        return int(found.group(1)) + 1
    return 0 if "embeddings" in name else n_layers + 1


def layer_lr_groups(
    model: torch.nn.Module, learning_rate: float, decay: float, weight_decay: float, decayed: set[str]
) -> list[dict]:
    """AdamW parameter groups with layer-wise learning-rate decay: a parameter at depth d (see `layer_depth`)
    gets `learning_rate * decay ** (top - d)`. `decayed` names the parameters that take weight decay (Trainer
    exempts biases and LayerNorm). Frozen parameters are left out."""
    n_layers = model.config.num_hidden_layers
    top = n_layers + 1
    groups: dict[tuple[int, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault((layer_depth(name, n_layers), name in decayed), []).append(param)
    return [
        {"params": params, "lr": learning_rate * decay ** (top - depth),
         "weight_decay": weight_decay if takes_decay else 0.0}
        for (depth, takes_decay), params in sorted(groups.items())
    ]


class _ContinualTrainer(Trainer):
    """Trainer whose loss is `continual_loss`: extra row columns (weight, teacher) never reach the model;
    with `layer_lr_decay` < 1 its AdamW gives each layer its own learning rate."""

    EXTRA = ("weight", "teacher_probs", "teacher_mask")

    def __init__(self, *args, class_weight=None, loss_options=None, layer_lr_decay=1.0, **kwargs):  # noqa: ANN001
        """`loss_options`: continual_loss's keyword settings (distill_alpha, temperature, label_smoothing)."""
        super().__init__(*args, **kwargs)
        self.class_weight, self.loss_options = class_weight, loss_options or {}
        self.layer_lr_decay = layer_lr_decay

    def create_optimizer(self, model=None):  # noqa: ANN001 (Trainer's hook)
        if self.layer_lr_decay == 1.0 or self.optimizer is not None:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        groups = layer_lr_groups(model, self.args.learning_rate, self.layer_lr_decay, self.args.weight_decay,
                                 set(self.get_decay_parameter_names(model)))
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        # Each group's own "lr" wins over the default in optimizer_kwargs; the scheduler scales them all alike.
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
        extra = {name: inputs.get(name) for name in self.EXTRA}
        model_inputs = {k: v for k, v in inputs.items() if k not in self.EXTRA and k != "labels"}
        outputs = model(**model_inputs)
        loss = continual_loss(outputs["logits"], inputs["labels"], self.class_weight, extra["weight"],
                              extra["teacher_probs"], extra["teacher_mask"], **self.loss_options)
        return (loss, outputs) if return_outputs else loss


class _StopWhenAsked(TrainerCallback):
    """Ends training at the next step once `should_stop()` is true (the daemon is shutting down)."""

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        self.should_stop = should_stop

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 (Trainer's hook)
        if self.should_stop():
            control.should_training_stop = True
        return control


class WeightAverage(TrainerCallback):
    """An exponential moving average of the trainable weights, updated after every optimizer step.

    At each epoch's end the average takes the weights' place, so the val score, the checkpoint and,
    after the last epoch, the saved model are the average's; the next epoch trains on from the raw
    weights. Early on the decay is capped at (1 + step) / (10 + step), so the first steps' weights do
    not linger in the average."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.average = [p.detach().float().clone() for p in self.params]
        self.raw: list[torch.Tensor] | None = None

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 (Trainer's hook)
        decay = min(self.decay, (1 + state.global_step) / (10 + state.global_step))
        with torch.no_grad():
            for average, param in zip(self.average, self.params):
                average.mul_(decay).add_(param.detach().float(), alpha=1 - decay)

    def on_epoch_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self.raw = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for average, param in zip(self.average, self.params):
                param.copy_(average)

    def on_epoch_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.raw is not None:
            with torch.no_grad():
                for raw, param in zip(self.raw, self.params):
                    param.copy_(raw)
            self.raw = None


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
        # Row weights and teacher predictions ride along in the batch; the loss pops them.
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
    if config.lora_rank > 0:
        model = _with_lora(model, config.lora_rank)
    trainer = _ContinualTrainer(
        model=model,
        args=training_arguments(config, scratch, device, has_val, progress),
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=_val_macro_f1(len(labels)) if has_val else None,
        callbacks=callbacks,
        class_weight=class_weights(train_ds["labels"], len(labels)) if config.class_weighting else None,
        loss_options={"distill_alpha": config.distill_alpha, "temperature": config.distill_temperature,
                      "label_smoothing": config.label_smoothing},
        layer_lr_decay=config.layer_lr_decay,
    )
    # disable_tqdm swaps the bars for PrinterCallback, which print()s every log line.
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_LogToLogger())
    if should_stop is not None:  # the caller checks should_stop() again and discards an interrupted model
        trainer.add_callback(_StopWhenAsked(should_stop))
    if config.ema_decay > 0:  # after Trainer moved the model to its device: the average lives there too
        trainer.add_callback(WeightAverage(trainer.model, config.ema_decay))
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
        trained = trainer.model.merge_and_unload() if config.lora_rank > 0 else trainer.model
        model_dir = _save(trained, tokenizer, out_dir / MODEL)
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
