"""Judge models: predict with a saved classifier, score predictions, count flips against a champion.

The daemon evaluates champion and candidate in one process on the same rows with these pieces;
the reports are plain JSON so they can go straight into MLflow and the event log.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from retrain import metrics
from retrain.defaults import MAX_LENGTH
from retrain.devices import resolve_device
from retrain.errors import LengthMismatchError, MixedLabelTypesError, UnknownLabelError
from retrain.modeling import quiet_progress

logger = logging.getLogger(__name__)


class Predictor:
    """A saved sequence classifier, ready to label texts.

    `labels` comes from the checkpoint's config (id2label in id order), so prediction ids index it.
    """

    def __init__(
        self,
        model_dir: str | Path,
        device: str | None = None,
        batch_size: int = 64,
        max_length: int = MAX_LENGTH,
        bf16: bool = False,
        int8: bool = False,
    ) -> None:
        """`bf16`: run the forward passes under bf16 autocast (faster on CPUs with AVX512-BF16/AMX and
        on GPUs; scores can differ from fp32 in the last digits). `int8`: dynamic int8 quantisation of the
        Linear layers (CPU only; `cltool serve` with serve.precision = "int8": bench/serve.py measures its
        speed and how many predictions it flips)."""
        self.model_dir = Path(model_dir)
        self.bf16 = bf16
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.max_length = max_length
        with quiet_progress():
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
            # float32 even when the weights are stored in float16/bfloat16 (mlflow.weights_dtype).
            self.model = AutoModelForSequenceClassification.from_pretrained(self.model_dir, dtype=torch.float32)
        self.model.to(self.device).eval()
        if int8:
            if self.device != "cpu":
                raise ValueError(f"int8 dynamic quantisation runs on the CPU, not on {self.device}")
            with warnings.catch_warnings():  # torch deprecates the quantized-tensor API in favour of torchao
                warnings.simplefilter("ignore")
                self.model = torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8)
        id2label = self.model.config.id2label
        self.labels: list[str] = [id2label[i] for i in range(len(id2label))]

    def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Return (predicted ids, class probabilities), in the order of `texts`.

        Texts are batched by length so each batch pads little, then put back in input order.
        """
        texts = list(texts)
        pred_ids = np.empty(len(texts), dtype=np.int64)
        probs = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        with torch.inference_mode(), self._autocast():
            for index, batch in self._batches(texts):
                # float() so softmax runs in float32 even if the model was loaded in bf16.
                p = torch.softmax(self.model(**batch).logits.float(), dim=-1).cpu().numpy()
                probs[index] = p
                pred_ids[index] = p.argmax(axis=-1)
        return pred_ids, probs

    def _autocast(self):  # noqa: ANN202 (a context manager)
        return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16, enabled=self.bf16)

    def _batches(self, texts: list[str]):  # noqa: ANN202 (a generator of (positions, tokenized batch))
        """Tokenized batches of `texts`, longest first (the first batch shows any out-of-memory
        problem straight away), each with the positions of its texts in `texts`."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield index, self.tokenizer([texts[i] for i in index], padding=True, truncation=True,
                                        max_length=self.max_length, return_tensors="pt").to(self.device)

    def predict_and_embed(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(predicted ids, class probabilities, sentence embeddings) from ONE forward pass.

        The embedding is the encoder's last hidden state mean-pooled over real tokens (padding
        masked out), as sentence-transformers pools all-MiniLM-L6-v2; drift monitoring needs both
        the labels and the embeddings of a batch, and a second pass would double its cost.
        """
        texts = list(texts)
        hidden = self.model.config.hidden_size
        pred_ids = np.empty(len(texts), dtype=np.int64)
        probs = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        embeddings = np.empty((len(texts), hidden), dtype=np.float32)
        with torch.inference_mode(), self._autocast():
            for index, batch in self._batches(texts):
                out = self.model(**batch, output_hidden_states=True)
                p = torch.softmax(out.logits.float(), dim=-1).cpu().numpy()
                mask = batch["attention_mask"].unsqueeze(-1).float()
                last = out.hidden_states[-1].float()
                pooled = (last * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
                probs[index] = p
                pred_ids[index] = p.argmax(axis=-1)
                embeddings[index] = pooled.cpu().numpy()
        return pred_ids, probs, embeddings


def _as_ids(values: Sequence[Any] | np.ndarray, labels: list[str], what: str) -> np.ndarray:
    """Label names or ids → ids in `labels` order, naming the first value that does not fit."""
    array = np.asarray(values)
    if array.dtype.kind in "iu":
        bad = array[(array < 0) | (array >= len(labels))]
        if bad.size:
            raise UnknownLabelError(int(bad[0]), list(range(len(labels))), where=what)
        return array.astype(np.int64)
    label2id = {label: i for i, label in enumerate(labels)}
    ids = np.empty(len(array), dtype=np.int64)
    for position, value in enumerate(array.tolist()):
        if value not in label2id:
            raise UnknownLabelError(value, labels, where=what)
        ids[position] = label2id[value]
    return ids


def score(
    y_true: Sequence[str] | np.ndarray, y_pred: Sequence[str] | np.ndarray, labels: list[str]
) -> dict[str, Any]:
    """A JSON-serialisable classification report over `labels` (names or ids accepted).

    Macro averages run over every label, including one absent from both y_true and y_pred,
    which scores 0 (scikit-learn with labels=all and zero_division=0): a class the evaluation
    rows never show cannot make a model look better than it is.
    """
    if len(y_true) != len(y_pred):
        raise LengthMismatchError("score", {"y_true": len(y_true), "y_pred": len(y_pred)})
    n = len(y_true)
    if n == 0:
        per_label_none = {label: None for label in labels}
        return {
            "n": 0,
            "macro_f1": None,
            "accuracy": None,
            "recall": per_label_none,
            "precision": dict(per_label_none),
            "f1": dict(per_label_none),
            "support": {label: 0 for label in labels},
            "pred_share": dict(per_label_none),
            "confusion": [[0] * len(labels) for _ in labels],
        }
    true_ids = _as_ids(y_true, labels, "y_true")
    pred_ids = _as_ids(y_pred, labels, "y_pred")
    ids = list(range(len(labels)))
    inputs = {"references": true_ids.tolist(), "predictions": pred_ids.tolist()}
    per_class = {"labels": ids, "average": None, "zero_division": 0}

    def by_label(values: list[float]) -> dict[str, float]:
        return {label: float(v) for label, v in zip(labels, values)}

    # Rows are true labels, columns predicted labels: confusion[i][j] counts true i predicted j.
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(confusion, (true_ids, pred_ids), 1)
    macro = {"labels": ids, "average": "macro", "zero_division": 0}
    return {
        "n": n,
        "macro_f1": metrics.compute("f1", **inputs, **macro)["f1"],
        "accuracy": metrics.compute("accuracy", **inputs)["accuracy"],
        "recall": by_label(metrics.compute("recall", **inputs, **per_class)["recall"]),
        "precision": by_label(metrics.compute("precision", **inputs, **per_class)["precision"]),
        "f1": by_label(metrics.compute("f1", **inputs, **per_class)["f1"]),
        "support": {label: int(c) for label, c in zip(labels, confusion.sum(axis=1))},
        "pred_share": {label: float(c) / n for label, c in zip(labels, confusion.sum(axis=0))},
        "confusion": confusion.tolist(),
    }


def negative_flip_rate(
    y_true: Sequence[Any] | np.ndarray,
    champion_pred: Sequence[Any] | np.ndarray,
    candidate_pred: Sequence[Any] | np.ndarray,
) -> float | None:
    """Share of all rows that the champion got right and the candidate gets wrong.

    These are the regressions users notice ("it used to get this one"), even when the overall
    score improves. None when there are no rows. All three must be names, or all ids.
    """
    arrays = {
        "y_true": np.asarray(y_true),
        "champion_pred": np.asarray(champion_pred),
        "candidate_pred": np.asarray(candidate_pred),
    }
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise LengthMismatchError("negative_flip_rate", lengths)
    if lengths["y_true"] == 0:
        return None
    # Comparing label names with label ids is always "wrong": refuse instead of reporting 100%.
    kinds = {name: ("ids" if a.dtype.kind in "iu" else "names") for name, a in arrays.items()}
    if len(set(kinds.values())) > 1:
        raise MixedLabelTypesError(kinds)
    truth = arrays["y_true"]
    flips = (arrays["champion_pred"] == truth) & (arrays["candidate_pred"] != truth)
    return float(flips.mean())
