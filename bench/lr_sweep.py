"""A small sweep behind the training defaults: fine-tune the packaged MiniLM on the first N rows of
the bundled demo stream, score on a fixed sample of the Twitter valid file.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.lr_sweep --rows 400 --lr 2e-4 --epochs 4 --batch 16
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.lr_sweep --rows 400 --lr 2e-4 --epochs 4 --batch 16 --no-class-weighting

Prints one line: rows, lr, epochs, batch, weighting, macro-F1, accuracy, seconds, predicted-class shares.
One seed, one run per line: a quick guide for defaults, not the stream benchmark (issue 3).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from daemon.ingest.validate import split_of, text_hash
from retrain.config import TrainConfig
from retrain.evaluation import Predictor, score
from retrain.modeling import PACKAGED_BASE, resolve_base
from retrain.train import fine_tune

LABELS = ["negative", "neutral", "positive"]
MAX_LENGTH = 48  # tokens kept per text in this sweep (tweets are short)
REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--no-class-weighting", action="store_true")
    parser.add_argument("--valid", type=Path,
                        default=REPO.parent / "shared/data/twitter_financial_news_sentiment/sent_valid.csv")
    args = parser.parse_args()

    rows = pd.read_csv(REPO / "data/demo/01-tweets.csv").head(args.rows)
    rows["split"] = [split_of(text_hash(t)) for t in rows["text"]]
    valid = pd.read_csv(args.valid).sample(400, random_state=1)
    valid["label"] = valid["label"].map({0: "negative", 1: "positive", 2: "neutral"})
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch, learning_rate=args.lr,
                         early_stopping_patience=0, class_weighting=not args.no_class_weighting)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        result = fine_tune(resolve_base(PACKAGED_BASE), rows[rows["split"] == "train"], rows[rows["split"] == "val"],
                           LABELS, Path(work), config, max_length=MAX_LENGTH)
        predictor = Predictor(result.model_dir, max_length=MAX_LENGTH)
        ids, _ = predictor.predict(valid["text"].tolist())
    report = score(valid["label"].tolist(), [predictor.labels[i] for i in ids], LABELS)
    print(args.rows, args.lr, args.epochs, args.batch, "unweighted" if args.no_class_weighting else "weighted",
          f"macroF1 {report['macro_f1']:.3f}", f"acc {report['accuracy']:.3f}",
          f"secs {time.perf_counter() - started:.1f}", report["pred_share"])


if __name__ == "__main__":
    main()
