"""The update's loss (class weights, distillation towards the champion), LoRA, precision, a growing head."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from retrain.data import to_dataset
from retrain.errors import InvalidConfigError, LabelMismatchError
from retrain.evaluation import Predictor
from retrain.loss import class_weights, continual_loss
from retrain.modeling import load_for_training
from retrain.train import TrainConfig, fine_tune, training_arguments, use_bf16

LOGITS = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [1.0, 1.0, 1.0]])
LABELS_T = torch.tensor([0, 1, 2, 0])


def test_class_weights_are_balanced_inverse_frequency_capped():
    # 6 neutral, 3 positive, 1 negative -> n / (k * count) = 10/3 over (1, 6, 3) rows.
    assert torch.allclose(class_weights([1] * 6 + [2] * 3 + [0], 3), torch.tensor([10 / 3, 10 / 18, 10 / 9]))
    assert class_weights([1] * 1000 + [0], 3)[0] == 10.0  # capped
    assert class_weights([1, 1], 3)[0] == 1.0  # absent class


def test_class_weighted_loss_equals_torch_weighted_cross_entropy():
    weight = torch.tensor([10 / 3, 10 / 18, 10 / 9])
    expected = torch.nn.functional.cross_entropy(LOGITS, LABELS_T, weight=weight)
    assert torch.isclose(continual_loss(LOGITS, LABELS_T, class_weight=weight), expected)
    assert not torch.isclose(expected, torch.nn.functional.cross_entropy(LOGITS, LABELS_T))


def test_distillation_adds_t_squared_kl_on_masked_rows_only():
    teacher = torch.tensor([[0.7, 0.2, 0.1]] * 4)
    mask = torch.tensor([0.0, 0.0, 1.0, 1.0])
    base = continual_loss(LOGITS, LABELS_T)
    t = 2.0
    q = torch.softmax(torch.log(teacher) / t, -1)
    kl = (q * (torch.log(q) - torch.log_softmax(LOGITS / t, -1))).sum(-1)
    expected = base + 0.5 * t * t * kl[2:].mean()
    got = continual_loss(LOGITS, LABELS_T, teacher_probs=teacher, teacher_mask=mask, distill_alpha=0.5,
                         temperature=t)
    assert torch.isclose(got, expected)
    # A student that already agrees with its teacher pays no distillation cost.
    agree = continual_loss(torch.log(teacher), LABELS_T, teacher_probs=teacher, teacher_mask=torch.ones(4),
                           distill_alpha=1.0)
    assert torch.isclose(agree, continual_loss(torch.log(teacher), LABELS_T), atol=1e-6)
    # alpha 0 or no teacher rows: plain loss.
    assert torch.isclose(continual_loss(LOGITS, LABELS_T, teacher_probs=teacher, teacher_mask=torch.zeros(4),
                                        distill_alpha=1.0), base)


def test_teacher_columns_reach_the_dataset(tiny_model_dir, labels):
    _, tokenizer = load_for_training(tiny_model_dir, labels)
    rows = pd.DataFrame({"text": ["good", "bad"], "label": ["positive", "negative"],
                         "teacher_probs": [None, [0.1, 0.2, 0.7]]})
    ds = to_dataset(rows, tokenizer, labels, 16)
    assert ds["teacher_mask"] == [0.0, 1.0]
    assert ds["teacher_probs"][1] == pytest.approx([0.1, 0.2, 0.7])
    with pytest.raises(ValueError, match="one per class"):
        to_dataset(rows.assign(teacher_probs=[None, [0.5, 0.5]]), tokenizer, labels, 16)


@pytest.mark.parametrize("field,value", [("distill_alpha", -1.0), ("distill_temperature", 0.0), ("lora_rank", -2),
                                         ("precision", "fp16")])
def test_new_train_settings_are_checked(field, value):
    with pytest.raises(InvalidConfigError, match=field):
        TrainConfig(**{field: value})


def test_distilled_lora_update_trains_and_saves_a_plain_model(tiny_model_dir, labels, train_rows, tmp_path):
    rows = train_rows.assign(teacher_probs=[None] * 30 + [[0.2, 0.5, 0.3]] * 30)
    config = TrainConfig(epochs=1, batch_size=8, device="cpu", lora_rank=4, distill_alpha=1.0,
                         early_stopping_patience=0)
    result = fine_tune(tiny_model_dir, rows, None, labels, tmp_path, config)
    saved = load_file(result.model_dir / "model.safetensors")
    assert not any("lora" in key for key in saved), "LoRA adapters must be merged into the weights"
    before = load_file(tiny_model_dir / "model.safetensors")
    changed = [k for k in before if k in saved and not torch.equal(before[k], saved[k])]
    # Only query/value (through the merged adapters) and the classifier move under LoRA.
    assert changed and all(("query" in k or "value" in k or "classifier" in k) for k in changed), changed


@pytest.mark.parametrize("precision,device,bf16", [("auto", "cpu", False), ("fp32", "cpu", False),
                                                  ("bf16", "cpu", True), ("fp32", "cuda", False)])
def test_precision_decides_mixed_precision(precision, device, bf16):
    assert use_bf16(precision, device) is bf16


def test_bf16_training_and_scoring_run_on_cpu(tiny_model_dir, labels, train_rows, tmp_path):
    config = TrainConfig(epochs=1, batch_size=8, device="cpu", precision="bf16", early_stopping_patience=0)
    assert training_arguments(config, tmp_path, "cpu", has_val=False).bf16
    result = fine_tune(tiny_model_dir, train_rows, None, labels, tmp_path, config)
    saved = load_file(result.model_dir / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in saved.values()), "mixed precision keeps fp32 weights"
    texts = train_rows["text"].tolist()
    ids16, probs16 = Predictor(result.model_dir, device="cpu", bf16=True).predict(texts)
    ids32, probs32 = Predictor(result.model_dir, device="cpu").predict(texts)
    assert np.allclose(probs16.sum(axis=1), 1.0, atol=1e-3)
    assert np.abs(probs16 - probs32).max() < 0.05  # bf16 keeps ~3 significant digits


# -- class-incremental: the head grows ----------------------------------------------------------
def test_a_head_grows_for_a_new_label_and_keeps_the_old_rows(tiny_model_dir, labels):
    grown_labels = ["negative", "neutral", "positive", "mixed"]
    model, _ = load_for_training(tiny_model_dir, grown_labels)
    saved = load_file(tiny_model_dir / "model.safetensors")
    assert model.classifier.weight.shape[0] == 4
    assert torch.equal(model.classifier.weight[:3], saved["classifier.weight"])
    assert torch.equal(model.classifier.bias[:3], saved["classifier.bias"])
    assert not torch.equal(model.classifier.weight[3], torch.zeros_like(model.classifier.weight[3]))
    assert model.config.id2label == dict(enumerate(grown_labels))
    assert model.num_labels == 4


def test_a_new_label_in_the_middle_moves_old_rows_to_their_new_place(tiny_model_dir):
    model, _ = load_for_training(tiny_model_dir, ["negative", "mixed", "neutral", "positive"])
    saved = load_file(tiny_model_dir / "model.safetensors")["classifier.weight"]
    assert torch.equal(model.classifier.weight[0], saved[0])
    assert torch.equal(model.classifier.weight[2], saved[1])
    assert torch.equal(model.classifier.weight[3], saved[2])


def test_removing_a_label_is_refused(tiny_model_dir):
    with pytest.raises(LabelMismatchError, match="cannot be removed"):
        load_for_training(tiny_model_dir, ["negative", "positive"])


def test_old_classes_survive_training_the_grown_head(tiny_model_dir, labels, train_rows, val_rows, toy_config,
                                                    tmp_path):
    """Learn the 3-class toy task, then grow to 4 classes with a batch of the new class plus replay:
    the old classes must still be predicted (no collapse onto the new class)."""
    from retrain.evaluation import Predictor, score

    first = fine_tune(tiny_model_dir, train_rows, val_rows, labels, tmp_path / "a", toy_config)
    grown = ["negative", "neutral", "positive", "mixed"]
    mixed = pd.DataFrame({"text": [f"good but bad {w}" for w in ["today", "stock", "price"] * 10],
                          "label": "mixed"})
    rows = pd.concat([mixed, train_rows.sample(30, random_state=0)], ignore_index=True)
    second = fine_tune(first.model_dir, rows, None, grown, tmp_path / "b", toy_config)
    predictor = Predictor(second.model_dir, device="cpu")
    ids, _ = predictor.predict(val_rows["text"].tolist())
    report = score(val_rows["label"].tolist(), [predictor.labels[i] for i in ids], grown)
    assert predictor.labels == grown
    for label in labels:
        assert report["recall"][label] > 0.5, report
