"""The benchmark's stream: PhraseBank then Twitter batches in arrival order, and a fixed test set per domain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.cl_settings import DOMAINS, Settings

TWITTER_LABELS = {0: "negative", 1: "positive", 2: "neutral"}  # bearish, bullish, neutral
NEEDED = ("financial_phrasebank/Sentences_50Agree.txt", "twitter_financial_news_sentiment/sent_train.csv",
          "twitter_financial_news_sentiment/sent_valid.csv")


def read_phrasebank(data: Path) -> pd.DataFrame:
    path = data / "financial_phrasebank" / "Sentences_50Agree.txt"
    rows = [line.rsplit("@", 1) for line in path.read_text(encoding="latin-1").splitlines() if "@" in line]
    frame = pd.DataFrame(rows, columns=["text", "label"])
    frame["label"] = frame["label"].str.strip()
    frame["text"] = frame["text"].str.strip()
    # Duplicate texts (8) and texts with two labels (2): keep one copy, drop the conflicting ones.
    conflicting = frame.groupby("text")["label"].nunique()
    frame = frame[~frame["text"].isin(conflicting[conflicting > 1].index)].drop_duplicates("text")
    return frame.reset_index(drop=True)


def read_twitter(data: Path, name: str) -> pd.DataFrame:
    frame = pd.read_csv(data / "twitter_financial_news_sentiment" / name)
    frame["label"] = frame["label"].map(TWITTER_LABELS)
    return frame[["text", "label"]].drop_duplicates("text").reset_index(drop=True)


def stratified_take(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """`n` rows (0 = all) keeping the label mix; deterministic for `seed`."""
    if n <= 0 or n >= len(frame):
        return frame
    share = n / len(frame)
    parts = [g.sample(max(1, round(len(g) * share)), random_state=seed) for _, g in frame.groupby("label")]
    return pd.concat(parts).sample(frac=1, random_state=seed).head(n).reset_index(drop=True)


def build_stream(data: Path, s: Settings) -> tuple[list[pd.DataFrame], dict[str, pd.DataFrame]]:
    """(batches in arrival order, test rows per domain). Fixed by stream seed 0, independent of the run seeds.

    Each batch carries the columns the daemon's rows have and `prepare_update` reads: `split` (train, or
    val for a --val-share of the rows), `row_hash` and `batch_id`.
    """
    pb = read_phrasebank(data)
    pb_test = stratified_take(pb, round(0.2 * len(pb)), seed=0)
    pb_train = pb[~pb["text"].isin(pb_test["text"])].sample(frac=1, random_state=0).reset_index(drop=True)
    tw_train = read_twitter(data, "sent_train.csv").sample(frac=1, random_state=0).reset_index(drop=True)
    tw_test = read_twitter(data, "sent_valid.csv")
    size = s.batch_rows or len(pb_train) // s.pb_batches
    batches = [pb_train.iloc[i * size:(i + 1) * size].assign(domain="phrasebank") for i in range(s.pb_batches)]
    tw_size = s.tw_batch_rows or size
    for domain, rows, per_batch, count in (("PhraseBank", pb_train, size, s.pb_batches),
                                           ("Twitter", tw_train, tw_size, s.tw_batches)):
        if per_batch * count > len(rows):
            raise SystemExit(f"the stream asks for {count} {domain} batches of {per_batch} rows, but {domain} has "
                             f"{len(rows)} train rows: use fewer or smaller batches")
    batches += [tw_train.iloc[i * tw_size:(i + 1) * tw_size].assign(domain="twitter") for i in range(s.tw_batches)]
    rng = np.random.default_rng(0)
    for index, batch in enumerate(batches):
        batch["batch"] = index
        batch["split"] = np.where(rng.random(len(batch)) < s.val_share, "val", "train")
        batch["row_hash"] = [f"{index}-{i}" for i in range(len(batch))]
        batch["batch_id"] = f"b{index}"
    tests = {"phrasebank": stratified_take(pb_test, s.test_rows, seed=0),
             "twitter": stratified_take(tw_test, s.test_rows, seed=0)}
    return batches, tests


def domains_to_score(batches: list[pd.DataFrame], update: int) -> list[str]:
    """PhraseBank after every update (its forgetting curve); Twitter from the last PhraseBank update on."""
    seen = {b["domain"].iloc[0] for b in batches[: update + 1]}
    last_pb = max(i for i, b in enumerate(batches) if b["domain"].iloc[0] == "phrasebank")
    return [d for d in DOMAINS if d in seen or (d == "twitter" and update >= last_pb)]


def domain_ends(batches: list[pd.DataFrame], update: int) -> bool:
    """Whether batch `update` is its domain's last (joint is scored there)."""
    return update == len(batches) - 1 or batches[update + 1]["domain"].iloc[0] != batches[update]["domain"].iloc[0]
