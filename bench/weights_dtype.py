"""What storing a version's weights in float16 or bfloat16 (`mlflow.weights_dtype`) saves and changes.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.weights_dtype --out bench/results/weights_dtype

Fine-tunes the packaged MiniLM with the shipped recipe on --train Financial PhraseBank rows (50 % agree,
stratified 80/20 split with seed 0), then stores the model's weights in each dtype as the daemon does
(`retrain.modeling.store_weights_as`), loads each back as every cltool reader does (float32), and
scores the PhraseBank test rows: the size of the weights file, the share of test predictions that
differ from float32's (the flip rate), the largest class-probability gap, and macro-F1.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from bench import common
from bench.cl_data import read_phrasebank, stratified_take
from retrain.config import TrainConfig
from retrain.evaluation import Predictor, score
from retrain.modeling import PACKAGED_BASE, resolve_base, store_weights_as
from retrain.train import fine_tune

LABELS = ["negative", "neutral", "positive"]
REPO = Path(__file__).resolve().parents[1]
COMMAND = "HF_HUB_OFFLINE=1 .venv/bin/python -m bench.weights_dtype --out bench/results/weights_dtype"


def main() -> None:
    parser = common.parser(__doc__, out=REPO / "bench" / "results" / "weights_dtype")
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    rows = read_phrasebank(args.data).sample(frac=1, random_state=0).reset_index(drop=True)
    cut = int(len(rows) * 0.8)
    pool, test = rows.iloc[:cut], rows.iloc[cut:].reset_index(drop=True)
    train = stratified_take(pool, args.train, seed=0)
    val = stratified_take(pool[~pool["text"].isin(train["text"])], 300, seed=0)
    texts, truth = test["text"].tolist(), test["label"].tolist()
    results = []
    with tempfile.TemporaryDirectory(prefix="cltool-dtype-") as tmp:
        config = TrainConfig(device="cpu", precision="fp32", epochs=args.epochs)
        trained = fine_tune(resolve_base(PACKAGED_BASE), train, val, LABELS, Path(tmp) / "run", config).model_dir
        reference = None
        for dtype in ("float32", "float16", "bfloat16"):
            folder = Path(tmp) / dtype
            shutil.copytree(trained, folder)
            store_weights_as(folder, dtype)
            ids, probs = Predictor(folder, device="cpu").predict(texts)
            if reference is None:
                reference = (ids, probs)
            flips = int((ids != reference[0]).sum())
            results.append({
                "dtype": dtype, "weights_mb": (folder / "model.safetensors").stat().st_size / 1e6,
                "flips": flips, "flip_rate": flips / len(texts),
                "max_prob_gap": float(np.abs(probs - reference[1]).max()),
                "macro_f1": score(truth, ids, LABELS)["macro_f1"]})
            print(results[-1], flush=True)
    lines = ["# Storing versions in float16 / bfloat16", "", f"Command: `{COMMAND}`", "",
             f"Packaged MiniLM fine-tuned ({args.epochs} epochs, shipped recipe, fp32) on {len(train)} PhraseBank rows; "
             f"scored on {len(test)} PhraseBank test rows after storing its weights in each dtype and loading them "
             "back in float32, as every cltool reader does.", "",
             "| stored as | weights file | flipped predictions vs float32 | largest probability gap | test macro-F1 |",
             "|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['dtype']} | {r['weights_mb']:.1f} MB | {r['flips']} ({r['flip_rate']:.2%}) | "
                     f"{r['max_prob_gap']:.4f} | {r['macro_f1']:.4f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "weights_dtype.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "weights_dtype.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
