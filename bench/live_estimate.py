"""How close is the live monitor's label-free macro-F1 to the true one?

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.live_estimate --data ../shared/data --out bench/results/serve

Fine-tunes the packaged MiniLM as bench/serve.py does (one epoch, 2,000 Twitter train rows), fits its
temperature on 500 Twitter valid rows (as a cycle does on its validation rows: `calibration.temperature`),
then cuts the rest of Twitter valid (in-domain) and all of PhraseBank (another domain: news sentences,
not tweets) into windows of --window rows and compares, per window, the true macro-F1 with the
estimate from the probabilities alone (retrain/calibration.py: `expected_macro_f1`), before and after
recalibration. Reports the mean absolute error, the mean signed error and how often the 90 % interval
holds the true score.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from bench import common
from bench.cl_data import read_phrasebank, read_twitter
from bench.serve import LABELS, trained_model
from retrain.calibration import expected_macro_f1, fit_temperature, scaled
from retrain.evaluation import Predictor


def macro_f1(pred: np.ndarray, truth: np.ndarray) -> float:
    scores = []
    for c in range(len(LABELS)):
        denominator = np.sum(pred == c) + np.sum(truth == c)
        scores.append(2 * np.sum((pred == c) & (truth == c)) / denominator if denominator else 0.0)
    return float(np.mean(scores))


def main() -> None:
    parser = common.parser(__doc__, out=common.REPO / "bench" / "results" / "serve")
    parser.add_argument("--window", type=int, default=300)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    valid = read_twitter(args.data, "sent_valid.csv").sample(frac=1.0, random_state=1).reset_index(drop=True)
    domains = {"twitter (in-domain)": valid.iloc[500:], "phrasebank (shifted)": read_phrasebank(args.data)}
    with tempfile.TemporaryDirectory(prefix="bench-estimate-") as tmp:
        model_dir, _ = trained_model(args.data, Path(tmp) / "train")
        predictor = Predictor(model_dir, device="cpu", max_length=128)
        _, calib_probs = predictor.predict(valid.iloc[:500]["text"].tolist())
        temperature = fit_temperature(calib_probs, np.array([LABELS.index(x) for x in valid.iloc[:500]["label"]]))
        rows, summary = [], {}
        for domain, frame in domains.items():
            frame = frame.sample(frac=1.0, random_state=2).reset_index(drop=True)
            _, probs = predictor.predict(frame["text"].tolist())
            truth_all = np.array([LABELS.index(x) for x in frame["label"]])
            for start in range(0, len(frame) - args.window + 1, args.window):
                window = slice(start, start + args.window)
                p, truth = probs[window], truth_all[window]
                true = macro_f1(p.argmax(axis=1), truth)
                raw, calibrated = expected_macro_f1(p), expected_macro_f1(scaled(p, temperature))
                rows.append({"domain": domain, "start": start, "true": true, "raw": raw.to_dict(),
                             "calibrated": calibrated.to_dict()})
            mine = [r for r in rows if r["domain"] == domain]
            summary[domain] = {
                "windows": len(mine), "mean_true": float(np.mean([r["true"] for r in mine])),
                **{f"{kind}_{stat}": value for kind in ("raw", "calibrated") for stat, value in {
                    "mean_estimate": float(np.mean([r[kind]["macro_f1"] for r in mine])),
                    "mae": float(np.mean([abs(r[kind]["macro_f1"] - r["true"]) for r in mine])),
                    "bias": float(np.mean([r[kind]["macro_f1"] - r["true"] for r in mine])),
                    "coverage": float(np.mean([r[kind]["low"] <= r["true"] <= r[kind]["high"] for r in mine])),
                }.items()}}
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    lines = ["# The label-free macro-F1 estimate against the truth", "",
             f"Command: `HF_HUB_OFFLINE=1 .venv/bin/python -m bench.live_estimate --data {args.data} --out {args.out}` "
             f"(commit {commit}); windows of {args.window} rows; temperature fitted on 500 Twitter valid rows: "
             f"T = {temperature:.2f}.", "",
             "| domain | windows | true macro-F1 (mean) | estimate raw / calibrated | MAE raw / calibrated | "
             "bias raw / calibrated | 90 % interval holds the truth raw / calibrated |", "|---|---|---|---|---|---|---|"]
    for domain, s in summary.items():
        lines.append(f"| {domain} | {s['windows']} | {s['mean_true']:.3f} | {s['raw_mean_estimate']:.3f} / "
                     f"{s['calibrated_mean_estimate']:.3f} | {s['raw_mae']:.3f} / {s['calibrated_mae']:.3f} | "
                     f"{s['raw_bias']:+.3f} / {s['calibrated_bias']:+.3f} | {s['raw_coverage']:.0%} / "
                     f"{s['calibrated_coverage']:.0%} |")
    (args.out / "live_estimate.md").write_text("\n".join(lines) + "\n")
    (args.out / "live_estimate.json").write_text(json.dumps({"commit": commit, "temperature": temperature,
                                                             "summary": summary, "windows": rows}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
