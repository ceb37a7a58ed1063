"""Class probabilities a registered version gave a text, kept so that no job scores the same text with
the same version twice.

A version's weights never change, so its probabilities for a text are a fact to keep: the drift pass
scores each new batch with the champion once, and the probation watch and the next cycle's fresh and
regression rows read those figures instead of running the champion again. A candidate's own scores
are kept under a provisional key while its cycle runs and filed under its version number once it is
registered, so that after a promotion the new champion's figures on the regression suite are already
there. Bounded (least recently used rows go first) and in memory: a restart only costs a rescoring.

Scoring is float32 everywhere in the daemon, so a cached figure and a fresh one of the same text differ
at most in the last bits (a batch of other lengths pads differently); `tests/daemon/test_scores.py`
shows a cycle decides the same with and without the cache. A predictor that runs under bf16 autocast
is never cached: there the rounding depends on the batch, and the cache would make it depend on history.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy loads with the first score: `cltool status` opens a Context without it
    import numpy as np

MAX_ROWS = 50_000  # about 15 MB: the regression suite (gate.regression_max_rows), a few batches and replay


def _key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class ScoreCache:
    """(model key, text) -> class probabilities (float32), least recently used out first."""

    def __init__(self, max_rows: int = MAX_ROWS) -> None:
        self.max_rows = max_rows
        self._rows: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, model: str, texts: Sequence[str]) -> list[np.ndarray | None]:
        found = []
        for text in texts:
            key = (model, _key(text))
            probs = self._rows.get(key)
            if probs is not None:
                self._rows.move_to_end(key)
            found.append(probs)
        hits = sum(p is not None for p in found)
        self.hits, self.misses = self.hits + hits, self.misses + len(found) - hits
        return found

    def put(self, model: str, texts: Sequence[str], probs: np.ndarray) -> None:
        import numpy as np

        for text, row in zip(texts, probs):
            key = (model, _key(text))
            self._rows[key] = np.array(row, dtype=np.float32)
            self._rows.move_to_end(key)
        while len(self._rows) > self.max_rows:
            self._rows.popitem(last=False)

    def rename(self, old: str, new: str) -> None:
        """File the rows kept under `old` (a candidate's provisional key) under `new` (its version)."""
        for model, digest in [key for key in self._rows if key[0] == old]:
            self._rows[(new, digest)] = self._rows.pop((old, digest))

    def drop(self, model: str) -> None:
        for key in [key for key in self._rows if key[0] == model]:
            del self._rows[key]


class CachedPredictor:
    """A `retrain.evaluation.Predictor` that answers from `cache` what `model` already scored; everything
    else (labels, model_dir, ...) is the predictor's."""

    def __init__(self, predictor: Any, model: str, cache: ScoreCache) -> None:
        self.predictor, self.model_key, self.cache = predictor, model, cache
        self.enabled = not getattr(predictor, "bf16", False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.predictor, name)

    def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        texts = list(texts)
        if not self.enabled:
            return self.predictor.predict(texts)
        probs = self.cache.get(self.model_key, texts)
        missing = [i for i, p in enumerate(probs) if p is None]
        if missing:
            fresh = list(dict.fromkeys(texts[i] for i in missing))  # each text once
            _, scored = self.predictor.predict(fresh)
            self.cache.put(self.model_key, fresh, scored)
            by_text = dict(zip(fresh, scored))
            for i in missing:
                probs[i] = by_text[texts[i]]
        out = np.vstack(probs).astype(np.float32) if texts else np.empty((0, len(self.labels)), dtype=np.float32)
        return out.argmax(axis=-1).astype(np.int64), out

    def predict_and_embed(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Embeddings are not kept (384 floats a row): this always runs the model, and keeps its probabilities."""
        ids, probs, embeddings = self.predictor.predict_and_embed(texts)
        if self.enabled:
            self.cache.put(self.model_key, list(texts), probs)
        return ids, probs, embeddings
