"""Rows to model input: a pandas frame of text/label becomes a tokenized `datasets.Dataset`."""

from __future__ import annotations

import logging

import datasets
import pandas as pd
from transformers import PreTrainedTokenizerBase

from retrain.errors import InvalidTextError, MissingColumnError, UnknownLabelError

logger = logging.getLogger(__name__)

# Optional per-row class probabilities of a teacher (the champion), for distillation; None = no teacher.
TEACHER_COLUMN = "teacher_probs"


def label_ids(values: pd.Series, labels: list[str]) -> list[int]:
    """Map label names to their position in `labels`, naming the first label that is not there."""
    label2id = {label: i for i, label in enumerate(labels)}
    unknown = [value for value in pd.unique(values) if value not in label2id]
    if unknown:
        raise UnknownLabelError(unknown[0], labels)
    return [label2id[value] for value in values]


def _texts(values: pd.Series) -> list[str]:
    """The text column as a list of str; None/NaN/a number is a bug upstream, not text to tokenize."""
    texts = values.tolist()
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidTextError(position, text)
    return texts


def _teacher(values: pd.Series, n_classes: int) -> tuple[list[list[float]], list[float]]:
    """Teacher probabilities as fixed-length rows plus a 0/1 mask (a row without a teacher gets zeros)."""
    probs, mask = [], []
    for value in values.tolist():
        if value is None or (isinstance(value, float) and value != value):
            probs.append([0.0] * n_classes)
            mask.append(0.0)
            continue
        row = [float(v) for v in value]
        if len(row) != n_classes:
            raise ValueError(f"teacher_probs row has {len(row)} values; expected one per class ({n_classes})")
        probs.append(row)
        mask.append(1.0)
    return probs, mask


def to_dataset(
    rows: pd.DataFrame,
    tokenizer: PreTrainedTokenizerBase,
    labels: list[str],
    max_length: int,
) -> datasets.Dataset:
    """Tokenize `rows` (columns `text`, `label`, optional `teacher_probs`) for a classifier.

    Returns columns input_ids, attention_mask (token_type_ids when the tokenizer makes them),
    `labels` as ints in `labels` order, and `teacher_probs`/`teacher_mask` when present. Sequences are
    truncated to `max_length` but not padded: the collator pads each batch to its own longest row.
    """
    for column in ("text", "label"):
        if column not in rows.columns:
            raise MissingColumnError(column, list(rows.columns))
    ids = label_ids(rows["label"], labels)
    texts = _texts(rows["text"])

    if texts:
        encoded = dict(tokenizer(texts, truncation=True, max_length=max_length))
    else:
        # Fast tokenizers fail on an empty batch; an empty dataset is still a valid answer.
        encoded = {name: [] for name in tokenizer.model_input_names}
    columns = {**encoded, "labels": ids}
    features = {name: datasets.List(datasets.Value("int32")) for name in encoded}
    features["labels"] = datasets.Value("int64")
    if TEACHER_COLUMN in rows.columns:
        probs, mask = _teacher(rows[TEACHER_COLUMN], len(labels))
        columns[TEACHER_COLUMN], columns["teacher_mask"] = probs, mask
        features[TEACHER_COLUMN] = datasets.List(datasets.Value("float32"))
        features["teacher_mask"] = datasets.Value("float32")
    # Explicit features keep the schema identical whether or not the frame is empty.
    dataset = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    logger.debug("tokenized %d rows (max_length %d)", len(dataset), max_length)
    return dataset
