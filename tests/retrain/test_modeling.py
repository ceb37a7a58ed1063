from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from retrain.errors import InvalidLabelsError, LabelMismatchError, ModelSourceError
from retrain.evaluation import Predictor
from retrain.modeling import PACKAGED_BASE, build_tiny_model, load_for_training, resolve_base
from retrain.train import TrainConfig, fine_tune


def test_packaged_base_resolves_to_the_minilm_inside_site_packages():
    path = Path(resolve_base(PACKAGED_BASE))
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    assert json.loads((path / "config.json").read_text())["hidden_size"] == 384


def test_other_names_pass_through_unchanged():
    assert resolve_base("ProsusAI/finbert") == "ProsusAI/finbert"
    assert resolve_base("/models/champion") == "/models/champion"


def test_tiny_model_has_the_small_shape_and_labels(tiny_model_dir, labels):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]) == (32, 2, 2)
    assert (config["intermediate_size"], config["max_position_embeddings"]) == (64, 128)
    assert [config["id2label"][str(i)] for i in range(3)] == labels
    assert (tiny_model_dir / "tokenizer.json").is_file()


def test_tiny_model_is_seeded_and_leaves_the_global_rng_alone(tmp_path, labels):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = load_file(build_tiny_model(tmp_path / "a", labels, seed=5) / "model.safetensors")
    assert torch.rand(1) == expected_next
    b = load_file(build_tiny_model(tmp_path / "b", labels, seed=5) / "model.safetensors")
    c = load_file(build_tiny_model(tmp_path / "c", labels, seed=6) / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])


def test_a_head_with_the_same_labels_is_kept(trained, labels):
    model, tokenizer = load_for_training(trained.model_dir, labels)
    saved = load_file(trained.model_dir / "model.safetensors")
    assert torch.equal(model.classifier.weight, saved["classifier.weight"])
    assert model.config.id2label == dict(enumerate(labels))
    assert tokenizer("good")["input_ids"] == [101, 2204, 102]


def test_a_head_with_other_labels_is_refused(tiny_model_dir):
    with pytest.raises(LabelMismatchError) as caught:
        load_for_training(tiny_model_dir, ["bearish", "bullish", "neutral"])
    message = str(caught.value)
    assert "['negative', 'neutral', 'positive']" in message
    assert "['bearish', 'bullish', 'neutral']" in message


@pytest.mark.parametrize("bad", [[], ["only"], ["a", "b", "a"], ["a", ""]])
def test_unusable_label_lists_are_refused(tiny_model_dir, bad):
    with pytest.raises(InvalidLabelsError):
        load_for_training(tiny_model_dir, bad)


def test_a_hub_id_that_is_not_cached_fails_clearly_offline():
    with pytest.raises(ModelSourceError) as caught:
        load_for_training("cltool-tests/no-such-model", ["a", "b"])
    assert "'cltool-tests/no-such-model'" in str(caught.value)
    assert "HF_HUB_OFFLINE" in str(caught.value)


def test_a_missing_local_directory_fails_clearly(tmp_path):
    with pytest.raises(ModelSourceError, match="cannot load model from"):
        load_for_training(tmp_path / "nothing-here", ["a", "b"])


@pytest.mark.integration
def test_packaged_minilm_gets_a_three_label_head_and_continues_from_it(
    train_rows, labels, tmp_path
):
    base = resolve_base(PACKAGED_BASE)
    # transformers 5 would log a "LOAD REPORT" table listing the new head as MISSING (to stderr).
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    report_logger = logging.getLogger("transformers.modeling_utils")
    report_logger.addHandler(handler)
    try:
        model, tokenizer = load_for_training(base, labels)
    finally:
        report_logger.removeHandler(handler)
    assert not [r for r in records if "LOAD REPORT" in r.getMessage()]
    assert model.classifier.out_features == 3
    assert model.config.id2label == dict(enumerate(labels))
    assert model.config.hidden_size == 384 and model.num_parameters() > 20_000_000
    with torch.no_grad():
        logits = model(**tokenizer(["good results", "bad"], padding=True, return_tensors="pt")).logits
    assert logits.shape == (2, 3)

    # A few steps from the packaged base, then continue from the result as the daemon does
    # with a champion: the trained head must be kept, not replaced.
    config = TrainConfig(epochs=1, batch_size=8, device="cpu")
    first = fine_tune(base, train_rows.iloc[:16], train_rows.iloc[:0], labels, tmp_path / "v1", config)
    assert first.samples_seen == 16
    saved = json.loads((first.model_dir / "config.json").read_text())
    assert saved["architectures"] == ["BertForSequenceClassification"]
    assert Predictor(first.model_dir, device="cpu").labels == labels
    champion, _ = load_for_training(first.model_dir, labels)
    weights = load_file(first.model_dir / "model.safetensors")
    assert torch.equal(champion.classifier.weight, weights["classifier.weight"])
