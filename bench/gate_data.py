"""The gate benchmark's rows: candidate batches of each kind, the stream, and the evaluation pool.

All rows are Twitter Financial News (MIT). The demo files (data/demo/*.csv) bootstrap the champion,
so candidate and stream batches come from the rest of sent_train.csv: rows the champion never saw.
sent_valid.csv is the evaluation pool, cut in two halves by a fixed seed: the "fresh" pool (stands in
for the test rows of pending batches) and the "regression" pool (stands in for past test rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "demo"
TWITTER = "twitter_financial_news_sentiment"
NEEDED = (f"{TWITTER}/sent_train.csv", f"{TWITTER}/sent_valid.csv")
TWITTER_LABELS = {0: "negative", 1: "positive", 2: "neutral"}  # Bearish, Bullish, Neutral
# Poisoning rotates every label one step: a systematic, plausible-looking mislabel (not noise).
ROTATE = {"negative": "positive", "positive": "neutral", "neutral": "negative"}
POOL_SEED = 0  # the fresh/regression cut of sent_valid: fixed, the same for every run seed


@dataclass(frozen=True)
class Kind:
    """One kind of candidate: which rows it learns (a draw of `rows` new rows, or another kind's rows),
    how their labels are corrupted, and the [train] overrides it is trained with."""

    name: str
    rows: int
    labels: str = "true"  # "true" | "noisy" | "rotated"
    same_rows_as: str | None = None
    train: dict | None = None
    harmful: bool = False  # harmful by construction (also: any candidate whose true pool gain is < 0)
    note: str = ""


def kinds(batch_rows: int, noise: float, worse_lr: float) -> list[Kind]:
    return [
        Kind("clean", batch_rows, note=f"{batch_rows} new rows, true labels"),
        Kind("clean_large", 2 * batch_rows, note=f"{2 * batch_rows} new rows, true labels"),
        Kind("noisy", batch_rows, "noisy", note=f"{batch_rows} new rows, {noise:.0%} of labels set to another class"),
        Kind("poisoned", batch_rows, "rotated", harmful=True,
             note=f"{batch_rows} new rows, every label rotated (negative→positive→neutral→negative)"),
        Kind("worse", batch_rows, same_rows_as="clean", train={"learning_rate": worse_lr}, harmful=True,
             note=f"the clean rows, trained with train.learning_rate {worse_lr:g} (destructive)"),
    ]


def read_twitter(data: Path, name: str) -> pd.DataFrame:
    """One file of the Twitter set with the daemon's label names, each text once."""
    frame = pd.read_csv(data / TWITTER / name)
    frame["label"] = frame["label"].map(TWITTER_LABELS)
    return frame[["text", "label"]].drop_duplicates("text").reset_index(drop=True)


def bootstrap_rows(rows: int) -> pd.DataFrame:
    """The champion's batch: data/demo/01-tweets.csv, as `make run` starts; its first `rows` rows (0 = all)."""
    frame = pd.read_csv(DEMO / "01-tweets.csv")[["text", "label"]]
    return frame if rows <= 0 else frame.head(rows).reset_index(drop=True)


def unseen_train(data: Path) -> pd.DataFrame:
    """sent_train rows in no demo file (neither the bootstrap nor the later demo batches)."""
    demo = set(pd.concat([pd.read_csv(path) for path in sorted(DEMO.glob("*.csv"))])["text"])
    frame = read_twitter(data, "sent_train.csv")
    return frame[~frame["text"].isin(demo)].reset_index(drop=True)


def evaluation_pool(data: Path, rows: int = 0) -> pd.DataFrame:
    """sent_valid (or a seeded `rows`-row sample), with a `pool` column: "fresh" or "regression", half each."""
    frame = read_twitter(data, "sent_valid.csv")
    frame = frame.sample(frac=1.0, random_state=POOL_SEED).reset_index(drop=True)
    if rows:
        frame = frame.head(rows).reset_index(drop=True)
    frame["pool"] = np.where(np.arange(len(frame)) < len(frame) // 2, "fresh", "regression")
    return frame


def relabel(rows: pd.DataFrame, how: str, noise: float, labels: list[str], seed: int) -> pd.DataFrame:
    """`rows` with true labels, `noise` of them moved to a uniformly drawn other class, or all rotated."""
    out = rows.copy()
    if how == "rotated":
        out["label"] = out["label"].map(ROTATE)
    elif how == "noisy":
        rng = np.random.default_rng(seed)
        hit = rng.random(len(out)) < noise
        out.loc[hit, "label"] = [rng.choice([x for x in labels if x != y]) for y in out.loc[hit, "label"]]
    elif how != "true":
        raise ValueError(f"label treatment {how!r}: expected 'true', 'noisy' or 'rotated'")
    return out


def candidate_batches(unseen: pd.DataFrame, all_kinds: list[Kind], noise: float, labels: list[str],
                      seed: int) -> dict[str, pd.DataFrame]:
    """One batch per kind for run seed `seed`; kinds with their own rows get disjoint slices of a seeded shuffle."""
    order = unseen.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    out, start = {}, 0
    for kind in all_kinds:
        if kind.same_rows_as:
            continue
        if start + kind.rows > len(order):
            raise SystemExit(f"candidate batches need more than the {len(order)} unseen sent_train rows")
        out[kind.name] = relabel(order.iloc[start:start + kind.rows], kind.labels, noise, labels, seed)
        start += kind.rows
    for kind in all_kinds:
        if kind.same_rows_as:
            out[kind.name] = relabel(out[kind.same_rows_as], kind.labels, noise, labels, seed)
    return out


# Stage 3's two streams after the bootstrap. They share their first two batches (so the daemon's folder is
# branched after them), then the clean stream learns clean3 and the poisoned one the same texts with
# every label rotated.
STREAMS = {"clean": ("clean1", "clean2", "clean3", "clean4"), "poisoned": ("clean1", "clean2", "poisoned3", "clean4")}
SHARED_PREFIX = 2


def stream_batches(unseen: pd.DataFrame, batch_rows: int, labels: list[str], seed: int) -> dict[str, pd.DataFrame]:
    """Stage 3's batches by name, from the end of the seeded shuffle (stage 1's candidates take the front)."""
    order = unseen.sample(frac=1.0, random_state=seed).iloc[::-1].reset_index(drop=True)
    names = ("clean1", "clean2", "clean3", "clean4")
    if len(names) * batch_rows > len(order):
        raise SystemExit(f"the stream needs more than the {len(order)} unseen sent_train rows")
    out = {name: order.iloc[i * batch_rows:(i + 1) * batch_rows].reset_index(drop=True) for i, name in enumerate(names)}
    out["poisoned3"] = relabel(out["clean3"], "rotated", 0.0, labels, seed)
    return out


def write_batch(rows: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows[["text", "label"]].to_csv(path, index=False)
    return path
