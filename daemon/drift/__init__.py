"""Pure drift detectors: `fit(reference)` then `score(window) -> DriftResult`.

No MLflow, registry, files or clock in here; the daemon gathers the rows, calls these,
stores `DriftResult.to_dict()` and feeds `drifted` through a `Hysteresis` per detector.

The names below load on first use (PEP 562): the detectors import scipy, and `daemon.config` reads
`daemon.drift.config` on every CLI start, which must not pay for it.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "DriftResult": "base", "DriftValueError": "base", "NotFittedError": "base", "psi": "base", "severity": "base",
    "EmbeddingMMDDetector": "embedding", "Hysteresis": "hysteresis", "LabelMixDetector": "labels",
    "NegativeSurgeDetector": "labels", "TextStatsDetector": "text",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
