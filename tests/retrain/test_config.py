"""The settings models: strict from Python with errors naming class, field and range; lax when nested."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from retrain.config import ModelConfig, ReplayConfig, TrainConfig
from retrain.defaults import MAX_LENGTH
from retrain.errors import InvalidConfigError


@pytest.mark.parametrize(
    ("cls", "field", "value", "expected"),
    [
        (TrainConfig, "epochs", 0, "an integer in [1, 100]"),
        (TrainConfig, "epochs", "6", "an integer in [1, 100]"),  # strict: text is not a number from Python
        (TrainConfig, "batch_size", 2.0, "an integer in [1, 4096]"),
        (TrainConfig, "seed", -1, "an integer >= 0"),
        (TrainConfig, "learning_rate", 0.0, "a number in (0, 1]"),
        (TrainConfig, "warmup_ratio", 1.0, "a number in [0, 1)"),
        (TrainConfig, "class_weighting", 1, "True or False"),
        (TrainConfig, "device", "tpu", "'auto', 'cpu' or 'cuda'"),
        (TrainConfig, "precision", "fp16", "'auto', 'fp32' or 'bf16'"),
        (ModelConfig, "max_length", 1, "an integer in [8, 512]"),
        (ModelConfig, "base", "", "a non-empty string"),
        (ReplayConfig, "policy", "fifo", "'class_balanced', 'reservoir' or 'recency'"),
        (ReplayConfig, "ratio", -0.5, "a number in [0, 100]"),
        (ReplayConfig, "reservoir_capacity", 0, "an integer >= 1"),
    ],
)
def test_errors_name_the_class_the_field_the_value_and_the_range(cls, field, value, expected):
    with pytest.raises(InvalidConfigError) as caught:
        cls(**{field: value})
    assert (caught.value.config, caught.value.field, caught.value.value) == (cls.__name__, field, value)
    assert str(caught.value) == f"{cls.__name__}.{field} = {value!r} is not allowed: expected {expected}"
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("removed", ["label_smoothing", "layer_lr_decay", "ema_decay", "max_length"])
def test_removed_and_moved_train_settings_are_refused_by_name(removed):
    with pytest.raises(InvalidConfigError, match=f"TrainConfig.{removed} = 0.5 is not allowed: expected one of"):
        TrainConfig(**{removed: 0.5})


def test_replay_weight_is_gone():
    with pytest.raises(InvalidConfigError, match="ReplayConfig.weight"):
        ReplayConfig(weight=1.0)


def test_defaults():
    assert (ModelConfig().base, ModelConfig().max_length) == ("packaged:all-MiniLM-L6-v2", MAX_LENGTH)
    replay = ReplayConfig()
    assert (replay.policy, replay.ratio, replay.reservoir_capacity, replay.half_life_rows) == (
        "class_balanced", 0.9, 5000, 5000)
    # Integers are numbers where a float is asked for.
    assert TrainConfig(learning_rate=1).learning_rate == 1.0


def test_every_field_has_a_description_for_the_commented_config_file():
    for cls in (ModelConfig, TrainConfig, ReplayConfig):
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name}"


class Settings(BaseModel):
    """Stands in for the daemon's Settings, which embed the configs as sections."""

    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    replay: ReplayConfig = ReplayConfig()


def test_nested_configs_read_text_as_a_file_or_environment_would():
    settings = Settings.model_validate({"train": {"epochs": "6", "learning_rate": "1e-3"}, "model": {"max_length": "64"}})
    assert (settings.train.epochs, settings.train.learning_rate, settings.model.max_length) == (6, 1e-3, 64)
    assert settings.train.batch_size == 16


@pytest.mark.parametrize(
    ("section", "bad", "message"),
    [
        ("train", {"epochs": "0"}, "Input should be greater than or equal to 1"),
        ("train", {"device": "tpu"}, "Input should be 'auto', 'cpu' or 'cuda'"),
        ("replay", {"weight": 1.0}, "Extra inputs are not permitted"),
    ],
)
def test_nested_errors_are_pydantics_with_their_location(section, bad, message):
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({section: bad})
    error = caught.value.errors()[0]
    assert error["loc"] == (section, *bad)
    assert error["msg"] == message


def test_assignment_is_validated():
    settings = Settings()
    settings.train.device = "cpu"
    assert settings.train.device == "cpu"
    with pytest.raises(ValidationError):
        settings.train.epochs = 0
