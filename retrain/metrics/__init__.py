"""Local `evaluate` metric modules, one folder per metric, and the loader that uses them.

`evaluate.load("accuracy")` fetches the script from the Hugging Face Hub and fails offline, so
cltool ships its own scripts (`<name>/<name>.py`, each an `evaluate.Metric` wrapping scikit-learn)
and loads them by folder path, which works with HF_HUB_OFFLINE=1.

Where evaluate puts things: `evaluate.load(<folder>)` copies the script into
`$HF_MODULES_CACHE/evaluate_modules/metrics/<name>/<hash of the script>/` (default
`~/.cache/huggingface/modules`) and imports it from there. With `keep_in_memory=True`
nothing is written to `$HF_EVALUATE_CACHE` (no Arrow files, no lock files) when computing.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import evaluate

from retrain.errors import UnknownMetricError

METRICS_DIR = Path(__file__).resolve().parent

# An EvaluationModule buffers inputs between add_batch and compute, so one cached instance must
# not be used by two threads at once (e.g. a daemon cycle and a `cltool predict` request).
_compute_lock = threading.Lock()


def available() -> list[str]:
    """Names of the metric modules shipped in this folder."""
    return sorted(p.parent.name for p in METRICS_DIR.glob("*/*.py") if p.stem == p.parent.name)


@functools.cache
def load_metric(name: str) -> evaluate.EvaluationModule:
    """Load a shipped metric module once per process (loading copies and imports a script)."""
    if name not in available():
        raise UnknownMetricError(name, available())
    return evaluate.load(str(METRICS_DIR / name), keep_in_memory=True)


def compute(name: str, **kwargs: Any) -> dict[str, Any]:
    """`load_metric(name).compute(**kwargs)`, serialised across threads."""
    with _compute_lock:
        return load_metric(name).compute(**kwargs)
