"""Cut the bundled demo stream from the Twitter Financial News Sentiment set (MIT licence).

    python data/make_demo.py --source ../shared/data/twitter_financial_news_sentiment

Writes data/demo/NN-*.csv: a larger first batch that bootstraps the champion, then smaller ones.
Labels 0 Bearish / 1 Bullish / 2 Neutral become negative / positive / neutral. Deterministic.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

LABELS = {0: "negative", 1: "positive", 2: "neutral"}
SIZES = [1200, 600, 600, 600, 600]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder with sent_train.csv")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "demo")
    args = parser.parse_args()
    frame = pd.read_csv(args.source / "sent_train.csv").sample(frac=1.0, random_state=7).reset_index(drop=True)
    frame = frame.assign(label=frame["label"].map(LABELS), source="twitter-financial-news",
                         id=[f"tfn-{i:05d}" for i in range(len(frame))])[["id", "text", "label", "source"]]
    args.out.mkdir(parents=True, exist_ok=True)
    start = 0
    for number, size in enumerate(SIZES, start=1):
        frame.iloc[start:start + size].to_csv(args.out / f"{number:02d}-tweets.csv", index=False)
        start += size
    # One file with a typo'd label, to show quarantine: the daemon keeps going and says why.
    bad = frame.iloc[start:start + 50].copy()
    bad.loc[bad.index[7], "label"] = "postive"
    bad.to_csv(args.out / "03b-typo.csv", index=False)
    (args.out.parent / "LICENSE-demo.txt").write_text(
        "Twitter Financial News Sentiment (zeroshot/twitter-financial-news-sentiment), MIT License.\n"
        "Subsets of sent_train.csv, labels mapped 0->negative, 1->positive, 2->neutral.\n")


if __name__ == "__main__":
    main()
