"""The floor under the idle daemon's memory: what a process holding only the daemon's imports weighs before
and after it has loaded and run the default model once, and once it let the model go.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.rss_floor [--with-evaluate]

Prints VmRSS (MiB) at each step as JSON. The idle daemon (bench/light.py) carries its stores, scheduler,
MLflow client and caches on top of this; the difference says how much of its RSS is its own.
"""

from __future__ import annotations

import argparse
import gc
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rss_mib() -> int:
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--with-evaluate", action="store_true", help="also import `evaluate` (the gate's metrics)")
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    from daemon import memory

    memory.limit_arenas()
    import mlflow  # noqa: F401
    import pandas as pd
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import daemon.drift.labels  # noqa: F401 (scipy, as the drift pass loads it)
    import daemon.state.store  # noqa: F401
    from retrain.modeling import resolve_base

    if args.with_evaluate:
        import evaluate  # noqa: F401
    out = {"evaluate": args.with_evaluate, "imports": rss_mib()}
    path = resolve_base("packaged:all-MiniLM-L6-v2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3)
    texts = pd.read_csv(REPO / "data" / "demo" / "01-tweets.csv")["text"].tolist()[:args.rows]
    with torch.no_grad():
        for start in range(0, len(texts), 64):
            model(**tokenizer(texts[start:start + 64], padding=True, truncation=True, max_length=128,
                              return_tensors="pt"))
    out["model_loaded_and_run"] = rss_mib()
    del model, tokenizer
    gc.collect()
    memory.trim()
    out["model_released"] = rss_mib()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
