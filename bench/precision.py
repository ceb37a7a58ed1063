"""How much faster is bf16 mixed precision than fp32 for MiniLM training and scoring on this CPU?

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.precision --rows 1000 --repeats 3

Fine-tunes the packaged MiniLM for one epoch on the first --rows rows of the bundled demo stream in
each precision (`train.precision` fp32 and bf16), then scores the same rows with each, alternating
the two so that machine noise hits both alike. Prints rows/s per run, the medians, and the
bf16/fp32 ratio of the medians. Training rows/s include fine_tune's fixed costs (loading the model,
tokenizing, saving 88 MB), as a cycle pays them. Also prints the largest gap between the two
precisions' class probabilities on the same trained model.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from retrain.config import TrainConfig
from retrain.evaluation import Predictor
from retrain.modeling import PACKAGED_BASE, resolve_base
from retrain.train import fine_tune

LABELS = ["negative", "neutral", "positive"]
REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = pd.read_csv(REPO / "data/demo/01-tweets.csv").head(args.rows)
    texts = rows["text"].tolist()
    train: dict[str, list[float]] = {"fp32": [], "bf16": []}
    scoring: dict[str, list[float]] = {"fp32": [], "bf16": []}
    gap = 0.0
    with tempfile.TemporaryDirectory(prefix="precision-") as tmp:
        for repeat in range(args.repeats):
            for precision in ("fp32", "bf16"):
                config = TrainConfig(epochs=1, early_stopping_patience=0, device="cpu", precision=precision)
                result = fine_tune(resolve_base(PACKAGED_BASE), rows[["text", "label"]], None, LABELS,
                                   Path(tmp) / f"{precision}-{repeat}", config)
                train[precision].append(len(rows) / result.seconds)
                probs = {}
                for bf16 in (False, True):
                    predictor = Predictor(result.model_dir, device="cpu", bf16=bf16)
                    started = time.perf_counter()
                    _, probs[bf16] = predictor.predict(texts)
                    scoring["bf16" if bf16 else "fp32"].append(len(texts) / (time.perf_counter() - started))
                gap = max(gap, float(np.abs(probs[True] - probs[False]).max()))
                print(f"repeat {repeat + 1}: train {precision} {train[precision][-1]:.1f} rows/s; "
                      f"score fp32 {scoring['fp32'][-1]:.0f}, bf16 {scoring['bf16'][-1]:.0f} rows/s", flush=True)
    for what, numbers in (("train", train), ("score", scoring)):
        fp32, bf16 = statistics.median(numbers["fp32"]), statistics.median(numbers["bf16"])
        print(f"{what}: median fp32 {fp32:.1f} rows/s, bf16 {bf16:.1f} rows/s, bf16/fp32 {bf16 / fp32:.2f}x "
              f"(n={len(numbers['fp32'])})")
    print(f"largest |p_bf16 - p_fp32| on one model: {gap:.4f}")


if __name__ == "__main__":
    main()
