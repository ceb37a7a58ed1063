"""The floor under the idle daemon's memory: what a process holding only the daemon's imports weighs before
and after it has loaded and run the default model once, and once it let the model go.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.rss_floor [--with-evaluate]
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.rss_floor --imports [--out bench/results/light/imports]

Prints VmRSS (MiB) at each step as JSON. The idle daemon (bench/light.py) carries its stores, scheduler,
MLflow client and caches on top of this; the difference says how much of its RSS is its own.

`--imports` splits the imports alone: each library in the order the daemon's import pulls it, in a fresh
process, with the RSS it added, and then what the daemon's own modules add; and, in another fresh process,
the libraries a coordinator needs that runs no model itself (no torch, transformers, datasets, evaluate).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    """This process's VmRSS in MiB, to the KiB (bench/leak_probe.py's slopes are fractions of a MiB)."""
    return round(int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) / 1024, 1)


# The libraries `import daemon.service` pulls in, heaviest first-comers in the order they load; then the
# daemon's own modules. A coordinator that runs no model in its own process would need only the first set.
COORDINATOR = ["sqlalchemy", "pydantic", "apscheduler.schedulers.background", "numpy", "pandas", "scipy.stats",
               "mlflow", "daemon.state.store", "daemon.drift.labels"]
ML = ["torch", "transformers", "datasets", "evaluate", "matplotlib.pyplot"]
DAEMON = ["daemon.service", "daemon.cycle.run", "registry.candidate"]

_STEPS = """
import gc, importlib, json, sys
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
steps, last = [["(interpreter)", rss(), rss()]], rss()
for name in sys.argv[1:]:
    importlib.import_module(name)
    gc.collect()
    now = rss()
    steps.append([name, now - last, now])
    last = now
print(json.dumps(steps))
"""


def _imports(modules: list[str]) -> list[dict]:
    done = subprocess.run([sys.executable, "-c", _STEPS, *modules], capture_output=True, text=True, check=True,
                          cwd=REPO)
    return [{"module": m, "added_mib": round(a, 1), "rss_mib": round(r, 1)} for m, a, r in json.loads(done.stdout)]


def imports(out: Path | None) -> None:
    runs = {"daemon": _imports(COORDINATOR + ML + DAEMON), "coordinator": _imports(COORDINATOR)}
    lines = ["# What the daemon's imports weigh, before it does anything", "",
             f"Command: `HF_HUB_OFFLINE=1 .venv/bin/python -m bench.rss_floor --imports"
             f"{f' --out {out}' if out else ''}`", "",
             "Each library imported in turn in a fresh process (VmRSS after `gc.collect()`); a library's figure "
             "is what it added on top of those before it.", ""]
    for name, steps in runs.items():
        lines += [f"**{name}**", "", "| module | added MiB | RSS MiB |", "|---|---:|---:|"]
        lines += [f"| {s['module']} | {s['added_mib']:+.0f} | {s['rss_mib']:.0f} |" for s in steps]
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "imports.json").write_text(json.dumps(runs, indent=2))
        (out / "imports.md").write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--with-evaluate", action="store_true", help="also import `evaluate` (the gate's metrics)")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--imports", action="store_true", help="only split the imports' RSS (see above)")
    parser.add_argument("--out", type=Path, help="with --imports: write imports.md and imports.json here")
    args = parser.parse_args()
    if args.imports:
        imports(args.out)
        return
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
