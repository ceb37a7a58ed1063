"""Pure drift detectors: `fit(reference)` then `score(window) -> DriftResult`.

No MLflow, registry, files or clock in here; the daemon gathers the rows, calls these,
stores `DriftResult.to_dict()` and feeds `drifted` through a `Hysteresis` per detector.
"""

from daemon.drift.base import (
    DriftResult,
    DriftValueError,
    NotFittedError,
    psi,
    severity,
)
from daemon.drift.embedding import EmbeddingMMDDetector
from daemon.drift.hysteresis import Hysteresis
from daemon.drift.labels import LabelMixDetector, NegativeSurgeDetector
from daemon.drift.text import TextStatsDetector

__all__ = [
    "DriftResult",
    "DriftValueError",
    "EmbeddingMMDDetector",
    "Hysteresis",
    "LabelMixDetector",
    "NegativeSurgeDetector",
    "NotFittedError",
    "TextStatsDetector",
    "psi",
    "severity",
]
