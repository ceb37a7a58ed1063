from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from retrain.devices import resolve_device
from retrain.errors import (
    DeviceUnavailableError,
    EmptyTrainingSetError,
    InvalidConfigError,
    NonFiniteLossError,
    UnknownLabelError,
)
from retrain.evaluation import Predictor, score
from retrain.train import TrainConfig, fine_tune, training_arguments


def test_fine_tuned_model_learns_the_toy_task(trained, val_rows, labels):
    ids, _ = Predictor(trained.model_dir, device="cpu").predict(val_rows["text"].tolist())
    report = score(val_rows["label"].tolist(), ids, labels)
    assert report["accuracy"] >= 0.9
    assert trained.best_val_macro_f1 >= 0.9
    # An untrained 3-class model starts at ln(3) ≈ 1.10; the mean over all epochs must be lower.
    assert math.isfinite(trained.train_loss) and trained.train_loss < math.log(3)


def test_result_accounts_for_epochs_and_samples(trained, train_rows):
    assert trained.epochs_run == 20.0  # early_stopping_patience=0: every epoch runs
    assert trained.samples_seen == len(train_rows) * 20
    assert trained.seconds > 0


def test_only_the_saved_model_is_left_in_out_dir(trained, labels):
    out_dir = trained.model_dir.parent
    assert [p.name for p in out_dir.iterdir()] == ["model"]  # checkpoints and .partial are gone
    files = {p.name for p in trained.model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files
    assert not any(name.endswith(".bin") for name in files)
    assert Predictor(trained.model_dir, device="cpu").labels == labels


def test_same_seed_gives_identical_predictions(
    trained, tiny_model_dir, train_rows, val_rows, labels, toy_config, tmp_path
):
    again = fine_tune(tiny_model_dir, train_rows, val_rows, labels, tmp_path, toy_config)
    texts = val_rows["text"].tolist()
    first_ids, first_probs = Predictor(trained.model_dir, device="cpu").predict(texts)
    again_ids, again_probs = Predictor(again.model_dir, device="cpu").predict(texts)
    assert np.array_equal(first_ids, again_ids)
    assert np.array_equal(first_probs, again_probs)
    assert again.train_loss == trained.train_loss


def test_without_val_rows_every_epoch_runs(tiny_model_dir, train_rows, labels, toy_config, tmp_path):
    result = fine_tune(
        tiny_model_dir, train_rows, train_rows.iloc[:0], labels, tmp_path,
        toy_config.model_copy(update={"epochs": 2, "early_stopping_patience": 1}),
    )
    assert result.best_val_macro_f1 is None
    assert result.epochs_run == 2.0
    assert result.samples_seen == 2 * len(train_rows)
    assert Predictor(result.model_dir, device="cpu").labels == labels


def test_early_stopping_stops_quietly_and_writes_only_under_out_dir(
    tiny_model_dir, train_rows, val_rows, labels, tmp_path, monkeypatch, capfd
):
    # A learning rate this small cannot change any prediction, so val macro-F1 never improves
    # after the first epoch and patience 1 stops training after the second.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    # The shared conftest sets this; without it, only fine_tune itself can keep MLflow out.
    monkeypatch.delenv("DISABLE_MLFLOW_INTEGRATION", raising=False)
    config = TrainConfig(epochs=5, batch_size=16, learning_rate=1e-9, early_stopping_patience=1, device="cpu")
    result = fine_tune(tiny_model_dir, train_rows, val_rows, labels, tmp_path / "out", config)
    assert result.epochs_run == 2.0
    assert result.samples_seen == 2 * len(train_rows)
    # No reporting integration ran: MLflow would have left ./mlruns or ./mlflow.db, TensorBoard ./runs.
    assert list(cwd.iterdir()) == []
    # progress=False: no tqdm bars, and no printed log dicts on stdout.
    captured = capfd.readouterr()
    assert captured.out == ""
    assert "it/s]" not in captured.err


def test_a_diverged_run_raises_and_saves_nothing(tiny_model_dir, train_rows, labels, tmp_path):
    # A NaN in the head makes every loss NaN: the stand-in for a run that diverged.
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = load_file(broken / "model.safetensors")
    weights["classifier.bias"] = torch.full_like(weights["classifier.bias"], float("nan"))
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    out_dir = tmp_path / "out"
    config = TrainConfig(epochs=1, batch_size=16, device="cpu")
    with pytest.raises(NonFiniteLossError, match="training loss is nan"):
        fine_tune(broken, train_rows, train_rows.iloc[:0], labels, out_dir, config)
    assert list(out_dir.iterdir()) == []  # no model, no checkpoints


def test_training_arguments_report_nowhere(tmp_path):
    args = training_arguments(TrainConfig(device="cpu"), tmp_path, "cpu", has_val=True)
    assert args.report_to == []
    assert args.use_cpu and not args.bf16
    assert args.load_best_model_at_end and args.metric_for_best_model == "macro_f1"
    assert args.greater_is_better
    assert args.warmup_steps == pytest.approx(0.1)  # transformers 5: a float < 1 is a ratio
    assert args.disable_tqdm
    assert args.seed == 13 and args.data_seed == 13
    no_val = training_arguments(TrainConfig(device="cpu"), tmp_path, "cpu", has_val=False, progress=True)
    assert no_val.eval_strategy == "no" and not no_val.load_best_model_at_end
    assert not no_val.disable_tqdm


def _padding_share(config: TrainConfig, model_dir, labels, tmp_path) -> float:
    """The share of padding tokens in one epoch of the batches fine_tune's Trainer would draw."""
    from transformers import DataCollatorWithPadding

    from retrain.data import to_dataset
    from retrain.loss import ContinualTrainer
    from retrain.modeling import load_for_training

    rng = np.random.default_rng(0)
    words = ["up", "down", "flat", "stock", "bond", "rate"]
    rows = pd.DataFrame({"text": [" ".join(rng.choice(words, size=int(n))) for n in rng.integers(1, 60, 400)],
                         "label": [labels[i % len(labels)] for i in range(400)]})
    model, tokenizer = load_for_training(model_dir, labels)
    trainer = ContinualTrainer(model=model, args=training_arguments(config, tmp_path, "cpu", has_val=False),
                               train_dataset=to_dataset(rows, tokenizer, labels, 64), processing_class=tokenizer,
                               data_collator=DataCollatorWithPadding(tokenizer), length_grouped=config.length_grouped)
    masks = [batch["attention_mask"] for batch in trainer.get_train_dataloader()]
    return 1 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)


def test_length_grouped_batches_pad_far_less_than_random_ones(tiny_model_dir, labels, tmp_path):
    grouped = _padding_share(TrainConfig(device="cpu", batch_size=16, length_grouped=True), tiny_model_dir, labels,
                             tmp_path)
    random = _padding_share(TrainConfig(device="cpu", batch_size=16, length_grouped=False), tiny_model_dir,
                            labels, tmp_path)
    assert random > 0.3  # texts of 1 to 60 words in random batches of 16: about half of it is padding
    assert grouped < random / 2  # 0.14 against 0.42 here


def test_empty_train_rows_are_refused(tiny_model_dir, train_rows, labels, tmp_path):
    with pytest.raises(EmptyTrainingSetError, match="train_rows is empty"):
        fine_tune(tiny_model_dir, train_rows.iloc[:0], train_rows, labels, tmp_path, TrainConfig(device="cpu"))


def test_unknown_label_in_val_rows_is_refused_before_training(
    tiny_model_dir, train_rows, val_rows, labels, tmp_path
):
    bad_val = val_rows.assign(label=["bullish"] * len(val_rows))
    with pytest.raises(UnknownLabelError, match="'bullish'"):
        fine_tune(tiny_model_dir, train_rows, bad_val, labels, tmp_path, TrainConfig(device="cpu"))
    assert not (tmp_path / "model").exists()


def test_auto_device_picks_a_gpu_when_one_is_visible():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == resolve_device(None) == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(tiny_model_dir, train_rows, labels, tmp_path):
    with pytest.raises(DeviceUnavailableError, match="'cuda'.*no CUDA GPU"):
        fine_tune(tiny_model_dir, train_rows, train_rows, labels, tmp_path, TrainConfig(device="cuda"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("epochs", 2.5),
        ("epochs", True),
        ("epochs", "6"),
        ("batch_size", 0),
        ("learning_rate", 0.0),
        ("learning_rate", 2.0),
        ("learning_rate", float("nan")),
        ("seed", -1),
        ("weight_decay", -0.1),
        ("warmup_ratio", 1.0),
        ("early_stopping_patience", -1),
        ("device", "tpu"),
    ],
)
def test_config_errors_name_the_field_and_value(field, value):
    with pytest.raises(InvalidConfigError) as caught:
        TrainConfig(**{field: value})
    assert caught.value.field == field
    assert f"TrainConfig.{field} = {value!r}" in str(caught.value)
    assert "expected" in str(caught.value)


def test_default_config_is_valid():
    config = TrainConfig()
    assert (config.epochs, config.batch_size, config.learning_rate, config.seed) == (4, 16, 2e-4, 13)
    assert config.class_weighting is True
    assert config.device == "auto"


