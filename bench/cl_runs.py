"""One strategy, one seed: the stream's updates, each assembled by the daemon's own recipe, trained and scored.

Every strategy but joint builds an update's rows with `retrain.update.prepare_update`, as the daemon's cycle
does: the new batch's train rows plus a replay sample, the val mix, the teacher's probabilities (distill)
and the replay state, carried from each update to the next as the daemon carries it from champion to
candidate. Joint (retrain from the base model on all rows so far) is the benchmark's own yardstick.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.cl_data import domain_ends, domains_to_score
from bench.cl_settings import DOMAINS, LABELS, Settings, replay_config, train_config
from retrain.devices import resolve_device
from retrain.evaluation import Predictor, score
from retrain.modeling import resolve_base
from retrain.train import fine_tune, use_bf16
from retrain.update import Teacher, UpdateRows, prepare_update, split


@dataclass
class Run:
    strategy: str
    seed: int
    matrix: list[list[float | None]] = field(default_factory=list)  # update × domain
    samples: list[int] = field(default_factory=list)  # train rows × epochs per update
    seconds: list[float] = field(default_factory=list)  # training wall time per update
    replay_rows: list[int] = field(default_factory=list)


def predictor(model_dir: Path, s: Settings) -> Predictor:
    """The benchmark scores (and distill's teacher predicts) in the arithmetic it trains in (--precision)."""
    device = resolve_device(s.train.device)
    return Predictor(model_dir, device=device, max_length=s.model.max_length,
                     bf16=use_bf16(s.train.precision, device))


def evaluate(model_dir: Path, tests: dict[str, pd.DataFrame], s: Settings, domains: list[str]) -> list[float | None]:
    """Macro-F1 on each domain's test rows; None for a domain not scored after this update."""
    model = predictor(model_dir, s)
    cells: list[float | None] = []
    for domain in DOMAINS:
        if domain not in domains:
            cells.append(None)
            continue
        ids, _ = model.predict(tests[domain]["text"].tolist())
        cells.append(score(tests[domain]["label"].tolist(), [model.labels[i] for i in ids], LABELS)["macro_f1"])
    return cells


def update_rows(s: Settings, strategy: str, batches: list[pd.DataFrame], update: int,
                state: dict[str, Any] | None, seed: int, model_dir: Path | None) -> UpdateRows:
    """The rows of update `update` (0-based) for `strategy`, by the daemon's recipe.

    `state` is the replay state the previous update left (None for the first: the daemon's first cycle has
    no champion), `model_dir` the model it produced (the champion; distill's teacher).
    """
    new = batches[update]
    past = pd.concat(batches[:update], ignore_index=True) if update else new.iloc[:0]
    teacher = None
    # As the daemon: a teacher only when the update distils and there is a model to distil from.
    if model_dir is not None and train_config(s, seed, strategy).distill_alpha > 0:
        incumbent = predictor(model_dir, s)
        teacher = Teacher(lambda texts: incumbent.predict(texts)[1], incumbent.labels)
    return prepare_update(new, past, LABELS, replay_config(s, strategy), state, seed, teacher)


def first_update(batches: list[pd.DataFrame], tests: dict[str, pd.DataFrame], s: Settings, seed: int,
                 work: Path) -> dict[str, Any]:
    """Update 1, from the base model on batch 1. With no past to replay and no champion to distil from its
    rows are the same for every strategy, so it is trained once per seed (full fine-tuning) and shared."""
    rows = update_rows(s, "naive", batches, 0, None, seed, None)
    result = fine_tune(resolve_base(s.model.base), rows.train_rows, rows.val_rows, LABELS, work / f"first-{seed}",
                       train_config(s, seed, "naive"), max_length=s.model.max_length)
    return {"model_dir": result.model_dir, "samples": result.samples_seen, "seconds": result.seconds,
            "cells": evaluate(result.model_dir, tests, s, domains_to_score(batches, 0))}


def run_strategy(strategy: str, seed: int, batches: list[pd.DataFrame], tests: dict[str, pd.DataFrame],
                 s: Settings, first: dict[str, Any], work: Path, progress: Callable[[str], None]) -> Run:
    """Updates 2..n of one strategy; update 1 (from the base model on batch 1) comes in `first`."""
    run = Run(strategy, seed, [first["cells"]], [first["samples"]], [first["seconds"]], [0])
    model_dir = first["model_dir"]
    config = train_config(s, seed, strategy)
    # The replay state update 1 left for this strategy's policy (update 1's rows are the shared ones).
    state = None if strategy == "joint" else update_rows(s, strategy, batches, 0, None, seed, None).replay_state
    for update in range(1, len(batches)):
        if strategy == "joint":
            so_far = pd.concat(batches[: update + 1], ignore_index=True)
            init, train_rows, val_rows, replayed = (resolve_base(s.model.base), split(so_far, "train"),
                                                    split(so_far, "val"), 0)
        else:
            rows = update_rows(s, strategy, batches, update, state, seed, model_dir)
            init, train_rows, val_rows, replayed = model_dir, rows.train_rows, rows.val_rows, len(rows.replay)
            state = rows.replay_state  # what the candidate is saved with, and the next update starts from
        run.replay_rows.append(replayed)
        if strategy == "joint" and not s.joint_every_update and not domain_ends(batches, update):
            # Retraining from scratch here costs exactly rows × epochs (fixed epochs, no early
            # stopping); only its scores are skipped, to keep the benchmark inside its time budget.
            run.matrix.append([None] * len(DOMAINS))
            run.samples.append(len(train_rows) * s.train.epochs)
            run.seconds.append(0.0)
            continue
        result = fine_tune(init, train_rows, val_rows, LABELS, work / f"{strategy}-{seed}-{update}", config,
                           max_length=s.model.max_length)
        cells = evaluate(result.model_dir, tests, s, domains_to_score(batches, update))
        run.matrix.append(cells)
        run.samples.append(result.samples_seen)
        run.seconds.append(result.seconds)
        progress(f"{strategy} seed {seed} update {update + 1}/{len(batches)}: "
                 f"PB {fmt(cells[0])} TW {fmt(cells[1])}  {result.samples_seen} samples, {result.seconds:.0f}s")
        model_dir = result.model_dir
    return run


def fmt(value: float | None) -> str:
    return "  —  " if value is None else f"{100 * value:5.1f}"
