from __future__ import annotations

import pandas as pd
import pytest
from transformers import AutoTokenizer

from retrain.data import to_dataset
from retrain.errors import InvalidTextError, MissingColumnError, UnknownLabelError


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_labels_become_ids_in_label_order(tokenizer, labels):
    rows = pd.DataFrame(
        {"text": ["a good day", "a bad day", "flat"], "label": ["positive", "negative", "neutral"]}
    )
    dataset = to_dataset(rows, tokenizer, labels, max_length=16)
    assert dataset["labels"] == [2, 0, 1]
    assert len(dataset) == 3
    # The text is tokenized with special tokens: [CLS] ... [SEP].
    first = tokenizer.convert_ids_to_tokens(dataset[0]["input_ids"])
    assert first == ["[CLS]", "a", "good", "day", "[SEP]"]
    assert dataset[0]["attention_mask"] == [1, 1, 1, 1, 1]


def test_long_texts_are_truncated_to_max_length(tokenizer, labels):
    rows = pd.DataFrame({"text": ["word " * 50], "label": ["neutral"]})
    dataset = to_dataset(rows, tokenizer, labels, max_length=8)
    assert len(dataset[0]["input_ids"]) == 8


def test_unknown_label_is_named_with_the_allowed_ones(tokenizer, labels):
    rows = pd.DataFrame({"text": ["up", "down"], "label": ["positive", "bullish"]})
    with pytest.raises(UnknownLabelError) as caught:
        to_dataset(rows, tokenizer, labels, max_length=8)
    assert caught.value.label == "bullish"
    assert "'bullish'" in str(caught.value)
    assert "'negative', 'neutral', 'positive'" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_empty_rows_give_an_empty_dataset_with_the_same_columns(tokenizer, labels):
    rows = pd.DataFrame({"text": ["good"], "label": ["positive"]})
    full = to_dataset(rows, tokenizer, labels, max_length=8)
    empty = to_dataset(rows.iloc[:0], tokenizer, labels, max_length=8)
    assert len(empty) == 0
    assert empty.features == full.features


def test_missing_column_and_non_text_are_refused(tokenizer, labels):
    with pytest.raises(MissingColumnError, match="'label'"):
        to_dataset(pd.DataFrame({"text": ["x"]}), tokenizer, labels, max_length=8)
    with pytest.raises(InvalidTextError, match="row 1"):
        to_dataset(
            pd.DataFrame({"text": ["fine", None], "label": ["neutral", "neutral"]}),
            tokenizer, labels, max_length=8,
        )
