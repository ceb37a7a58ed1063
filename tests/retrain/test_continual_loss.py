"""The update's loss: class weights, new-vs-replay row weights, distillation towards the champion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from retrain.data import to_dataset
from retrain.evaluation import Predictor
from retrain.modeling import load_for_training
from retrain.train import (TrainConfig, WeightAverage, class_weights, continual_loss, fine_tune, layer_depth, layer_lr_groups,
                           training_arguments, use_bf16)
from retrain.errors import InvalidConfigError, LabelMismatchError

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


def test_row_weights_scale_each_rows_share():
    rows = torch.nn.functional.cross_entropy(LOGITS, LABELS_T, reduction="none")
    w = torch.tensor([1.0, 1.0, 0.5, 0.5])
    assert torch.isclose(continual_loss(LOGITS, LABELS_T, sample_weight=w), (w * rows).sum() / w.sum())
    # Zero weight on a row removes it entirely.
    zero = torch.tensor([1.0, 1.0, 1.0, 0.0])
    assert torch.isclose(continual_loss(LOGITS, LABELS_T, sample_weight=zero), rows[:3].mean())


def test_label_smoothing_mixes_a_uniform_target_into_each_rows_loss():
    eps = 0.1
    log_p = torch.log_softmax(LOGITS, -1)
    # Target: 1 - eps on the label plus eps / 3 on every class (the label included).
    target = torch.full_like(log_p, eps / 3) + (1 - eps) * torch.nn.functional.one_hot(LABELS_T, 3)
    rows = -(target * log_p).sum(-1)
    weight = torch.tensor([10 / 3, 10 / 18, 10 / 9])
    w = weight[LABELS_T]
    assert torch.isclose(continual_loss(LOGITS, LABELS_T, label_smoothing=eps), rows.mean())
    assert torch.isclose(continual_loss(LOGITS, LABELS_T, class_weight=weight, label_smoothing=eps),
                         (w * rows).sum() / w.sum())
    assert not torch.isclose(rows.mean(), continual_loss(LOGITS, LABELS_T))


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


def test_teacher_and_weight_columns_reach_the_dataset(tiny_model_dir, labels):
    _, tokenizer = load_for_training(tiny_model_dir, labels)
    rows = pd.DataFrame({"text": ["good", "bad"], "label": ["positive", "negative"], "weight": [1.0, 0.5],
                         "teacher_probs": [None, [0.1, 0.2, 0.7]]})
    ds = to_dataset(rows, tokenizer, labels, 16)
    assert ds["weight"] == [1.0, 0.5]
    assert ds["teacher_mask"] == [0.0, 1.0]
    assert ds["teacher_probs"][1] == pytest.approx([0.1, 0.2, 0.7])
    with pytest.raises(ValueError, match="one per class"):
        to_dataset(rows.assign(teacher_probs=[None, [0.5, 0.5]]), tokenizer, labels, 16)


@pytest.mark.parametrize("field,value", [("distill_alpha", -1.0), ("distill_temperature", 0.0), ("lora_rank", -2),
                                         ("precision", "fp16"), ("label_smoothing", 1.0),
                                         ("label_smoothing", -0.1), ("layer_lr_decay", 0.0),
                                         ("layer_lr_decay", 1.5), ("ema_decay", 1.0), ("ema_decay", -0.5)])
def test_new_train_settings_are_checked(field, value):
    with pytest.raises(InvalidConfigError, match=field):
        TrainConfig(**{field: value})


def test_weighted_distilled_lora_update_trains_and_saves_a_plain_model(tiny_model_dir, labels, train_rows, tmp_path):
    rows = train_rows.assign(weight=[1.0] * 30 + [0.5] * 30,
                             teacher_probs=[None] * 30 + [[0.2, 0.5, 0.3]] * 30)
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


# -- layer-wise learning-rate decay -------------------------------------------------------------
def test_layer_depth_counts_from_the_embeddings_up_with_or_without_peft():
    assert layer_depth("bert.embeddings.word_embeddings.weight", 6) == 0
    assert layer_depth("bert.encoder.layer.0.attention.self.query.weight", 6) == 1
    assert layer_depth("bert.encoder.layer.5.output.LayerNorm.bias", 6) == 6
    assert layer_depth("base_model.model.bert.encoder.layer.3.attention.self.value.lora_A.default.weight", 6) == 4
    assert layer_depth("bert.pooler.dense.weight", 6) == 7
    assert layer_depth("classifier.weight", 6) == 7


def test_layer_lr_groups_decay_the_rate_per_layer_and_keep_the_weight_decay_exemptions(tiny_model_dir, labels):
    model, _ = load_for_training(tiny_model_dir, labels)
    n = model.config.num_hidden_layers
    model.bert.embeddings.position_embeddings.weight.requires_grad_(False)  # a frozen parameter
    decayed = {name for name, _ in model.named_parameters() if "bias" not in name and "LayerNorm" not in name}
    groups = layer_lr_groups(model, 1e-3, 0.5, 0.01, decayed)
    rate = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert rate[id(params["classifier.weight"])] == (1e-3, 0.01)
    assert rate[id(params["classifier.bias"])] == (1e-3, 0.0)
    assert rate[id(params["bert.encoder.layer.0.attention.self.query.weight"])] == (1e-3 * 0.5 ** n, 0.01)
    assert rate[id(params[f"bert.encoder.layer.{n - 1}.output.LayerNorm.weight"])] == (1e-3 * 0.5, 0.0)
    assert rate[id(params["bert.embeddings.word_embeddings.weight"])] == (1e-3 * 0.5 ** (n + 1), 0.01)
    assert id(params["bert.embeddings.position_embeddings.weight"]) not in rate
    assert len(rate) == sum(p.requires_grad for p in model.parameters())


def test_layer_lr_decay_slows_the_lower_layers_in_a_real_update(tiny_model_dir, labels, train_rows, tmp_path):
    before = load_file(tiny_model_dir / "model.safetensors")

    def moved(decay: float) -> dict[str, float]:
        config = TrainConfig(epochs=1, batch_size=8, learning_rate=1e-3, device="cpu", early_stopping_patience=0,
                             layer_lr_decay=decay)
        after = load_file(fine_tune(tiny_model_dir, train_rows, None, labels, tmp_path / str(decay),
                                    config).model_dir / "model.safetensors")
        return {k: (after[k] - before[k]).abs().max().item()
                for k in ("bert.embeddings.word_embeddings.weight", "classifier.weight")}

    flat, decayed = moved(1.0), moved(0.01)
    # The head learns at the full rate either way; the embeddings at 0.01 ** (layers + 1) of it.
    assert decayed["classifier.weight"] > 0.2 * flat["classifier.weight"]
    assert decayed["bert.embeddings.word_embeddings.weight"] < 1e-3 * flat["bert.embeddings.word_embeddings.weight"]


# -- weight averaging ---------------------------------------------------------------------------
def test_weight_average_tracks_an_ema_and_stands_in_for_the_weights_between_epochs():
    from types import SimpleNamespace

    model = torch.nn.Linear(1, 1, bias=False)
    frozen = torch.nn.Linear(1, 1)  # not trainable: never averaged
    frozen.requires_grad_(False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = WeightAverage(torch.nn.Sequential(model, frozen), decay=0.5)
    assert len(average.params) == 1
    steps = [(1, 4.0), (100, 8.0)]  # (global step, weight after that step)
    for step, value in steps:
        with torch.no_grad():
            model.weight.fill_(value)
        average.on_step_end(None, SimpleNamespace(global_step=step), None)
    # Step 1: decay capped at 2/11 -> 0 * 2/11 + 4 * 9/11. Step 100: decay 0.5 -> the mean of that and 8.
    first = 4.0 * 9 / 11
    assert average.average[0].item() == pytest.approx(0.5 * first + 0.5 * 8.0)
    average.on_epoch_end(None, None, None)
    assert model.weight.item() == pytest.approx(0.5 * first + 4.0)  # scored and checkpointed: the average
    average.on_epoch_begin(None, None, None)
    assert model.weight.item() == 8.0  # training goes on from the raw weights


def test_an_averaged_update_trains_and_saves_the_average(tiny_model_dir, labels, train_rows, val_rows, tmp_path):
    config = dict(epochs=2, batch_size=8, learning_rate=1e-3, device="cpu", early_stopping_patience=1)
    plain = fine_tune(tiny_model_dir, train_rows, val_rows, labels, tmp_path / "plain", TrainConfig(**config))
    averaged = fine_tune(tiny_model_dir, train_rows, val_rows, labels, tmp_path / "ema",
                         TrainConfig(**config, ema_decay=0.9))
    before = load_file(tiny_model_dir / "model.safetensors")
    a, b = (load_file(r.model_dir / "model.safetensors") for r in (plain, averaged))
    key = "classifier.weight"
    # The average lags behind the trained weights: it moved from the start, but less far.
    assert 0 < (b[key] - before[key]).norm() < (a[key] - before[key]).norm()
    assert averaged.best_val_macro_f1 is not None
