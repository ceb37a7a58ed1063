"""The six monitors run on every batch, as one unit: fit on a reference once, score each window.

Still pure, like the detectors: texts, labels and the champion's outputs go in, `DriftResult`s
come out. The daemon (daemon/monitoring/drift_pass.py) gathers the rows and runs the model; the benchmark
(bench/drift_bench.py) hands in precomputed outputs and reuses exactly this code.

Monitors and what they read:
- live_performance  true labels vs the champion's predictions on the batch (we have its labels),
                    against the champion's own regression macro-F1 (`baseline_f1`);
- label_mix         true labels (chi-square + PSI);
- prediction_mix    the champion's predicted labels (chi-square + PSI), mean confidence alongside;
- embedding_mmd     the champion's mean-pooled sentence embeddings (permutation MMD);
- text_stats        length, share of words unknown to the tokenizer, share of links/cash-tags;
- negative_surge    the share of `surge_label` among the true labels going up.
The three that need the champion are left out (and say so) when there is none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from daemon.drift.base import DriftResult, DriftValueError, check_alpha
from daemon.drift.config import SuiteConfig
from daemon.drift.embedding import EmbeddingMMDDetector
from daemon.drift.labels import LabelMixDetector, NegativeSurgeDetector
from daemon.drift.text import TextStatsDetector

DETECTORS = ("live_performance", "label_mix", "prediction_mix", "embedding_mmd", "text_stats", "negative_surge")
NEEDS_MODEL = ("live_performance", "prediction_mix", "embedding_mmd")


class Model(Protocol):
    """What the suite needs of a champion (retrain.evaluation.Predictor has it)."""

    labels: list[str]

    def predict_and_embed(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


@dataclass
class Outputs:
    """The champion's view of some rows: predicted label, top-class probability, embedding."""

    pred: list[str]
    confidence: np.ndarray
    embeddings: np.ndarray


def model_outputs(model: Model, texts: Sequence[str]) -> Outputs:
    ids, probs, embeddings = model.predict_and_embed(list(texts))
    return Outputs([model.labels[i] for i in ids], probs.max(axis=1), embeddings)


# Resamples behind live_performance's p-value: 500 keep the p-value's own noise near ±0.01 at alpha 0.01.
LIVE_BOOTSTRAP_SAMPLES = 500


class DriftSuite:
    """All monitors over one reference. `fit` once per reference, `score` once per batch."""

    def __init__(self, config: SuiteConfig, labels: Sequence[str], vocabulary: Sequence[str] | None = None) -> None:
        self.config, self.labels = config, list(labels)
        check_alpha("live_performance", config.alpha)
        c = config
        self.label_mix = LabelMixDetector(alpha=c.alpha, psi_threshold=c.label_psi)
        self.prediction_mix = LabelMixDetector(alpha=c.alpha, psi_threshold=c.label_psi, name="prediction_mix")
        self.embedding = EmbeddingMMDDetector(alpha=c.alpha, permutations=c.mmd_permutations,
                                              max_rows=c.mmd_max_rows, seed=c.seed)
        self.text = TextStatsDetector(vocabulary=vocabulary, alpha=c.alpha, psi_threshold=c.text_psi)
        self.surge = NegativeSurgeDetector(target=c.surge_label, alpha=c.alpha, min_lift=c.surge_min_lift)
        self.baseline_f1: float | None = None
        self.reference_confidence: float | None = None
        self.has_model = False

    def fit(self, texts: Sequence[str], labels: Sequence[str], outputs: Outputs | None = None,
            baseline_f1: float | None = None) -> "DriftSuite":
        """`texts`/`labels`: the reference rows. `outputs`: the champion on reference rows it did NOT
        train on (its outputs on its own training rows are over-confident, which would read as drift on
        every fresh batch). `baseline_f1`: the champion's regression macro-F1."""
        self.label_mix.fit(labels)
        self.surge.fit(labels)
        self.text.fit(texts)
        self.has_model = outputs is not None and len(outputs.pred) >= 2
        if self.has_model:
            self.prediction_mix.fit(outputs.pred)
            self.embedding.fit(outputs.embeddings)
            self.reference_confidence = float(np.mean(outputs.confidence))
        self.baseline_f1 = baseline_f1
        return self

    def score(self, texts: Sequence[str], labels: Sequence[str],
              outputs: Outputs | None = None) -> tuple[list[DriftResult], dict[str, str]]:
        """Results in `DETECTORS` order, and {detector: why it was skipped}."""
        results = {"label_mix": self.label_mix.score(labels), "text_stats": self.text.score(texts),
                   "negative_surge": self.surge.score(labels)}
        skipped: dict[str, str] = {}
        if outputs is None or not self.has_model:
            why = "no champion to label and embed the rows" if outputs is None else "no reference model outputs"
            skipped.update({name: why for name in NEEDS_MODEL})
        else:
            if len(outputs.pred) != len(labels):
                raise DriftValueError("drift suite", "outputs rows", len(outputs.pred), f"{len(labels)} (one per row)")
            mix = self.prediction_mix.score(outputs.pred)
            mix.details["reference_mean_confidence"] = self.reference_confidence
            mix.details["window_mean_confidence"] = float(np.mean(outputs.confidence))
            results["prediction_mix"] = mix
            if len(outputs.embeddings) >= 2:
                results["embedding_mmd"] = self.embedding.score(outputs.embeddings)
            else:
                skipped["embedding_mmd"] = "fewer than 2 rows"
            if self.baseline_f1 is None:
                skipped["live_performance"] = "the champion has no stored macro-F1 to compare with"
            else:
                results["live_performance"] = self._live(labels, outputs.pred)
        return [results[name] for name in DETECTORS if name in results], skipped

    def _live(self, truth: Sequence[str], pred: Sequence[str]) -> DriftResult:
        """Drop of live macro-F1 below the champion's baseline, with a bootstrap p-value.

        Drifted when the drop reaches `max_f1_drop` AND the bootstrap says the batch's macro-F1 is
        below the baseline at level alpha: a 40-row batch can lose 0.1 macro-F1 by luck alone.
        """
        c, baseline = self.config, float(self.baseline_f1)
        true_ids, pred_ids = _ids(truth, self.labels), _ids(pred, self.labels)
        live = float(_macro_f1(true_ids[None, :], pred_ids[None, :], len(self.labels))[0])
        rng = np.random.default_rng([c.seed, 2])
        draws = rng.integers(0, len(true_ids), size=(LIVE_BOOTSTRAP_SAMPLES, len(true_ids)))
        boot = _macro_f1(true_ids[draws], pred_ids[draws], len(self.labels))
        # One-sided: how often a resample of this batch scores at least the baseline.
        p_value = float((1 + np.sum(boot >= baseline)) / (1 + len(boot)))
        drop = baseline - live
        return DriftResult(
            detector="live_performance", score=drop, threshold=c.max_f1_drop,
            drifted=bool(drop >= c.max_f1_drop and p_value < c.alpha), p_value=p_value,
            details={"alpha": c.alpha, "live_macro_f1": live, "live_accuracy": float(np.mean(true_ids == pred_ids)),
                     "baseline_macro_f1": baseline, "n_window": len(true_ids),
                     "bootstrap_samples": LIVE_BOOTSTRAP_SAMPLES},
        )


def _ids(values: Sequence[str], labels: list[str]) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    unknown = [v for v in values if v not in index]
    if unknown:
        raise DriftValueError("live_performance", "label", unknown[0], f"one of {labels}")
    return np.array([index[v] for v in values], dtype=np.int64)


def _macro_f1(true_ids: np.ndarray, pred_ids: np.ndarray, k: int) -> np.ndarray:
    """Macro-F1 of each row of (B × n) label arrays, every class counted (absent ones score 0),
    the same definition as retrain.evaluation.score; vectorised so a bootstrap costs milliseconds."""
    b = true_ids.shape[0]
    offsets = (np.arange(b) * k * k)[:, None]
    confusion = np.bincount((offsets + true_ids * k + pred_ids).ravel(), minlength=b * k * k).reshape(b, k, k)
    tp = np.diagonal(confusion, axis1=1, axis2=2).astype(float)
    support, predicted = confusion.sum(axis=2), confusion.sum(axis=1)
    denominator = support + predicted
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return f1.mean(axis=1)
