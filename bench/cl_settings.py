"""What a stream-benchmark run measures: the stream's shape, the strategies, and the package's own configs.

The training, replay and model knobs are `retrain.config`'s types, built from their defaults plus the few
departures below, so every value the benchmark does not override is, by construction, the daemon's.
The strategies differ only by the config each one trains with (`train_config`, `replay_config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from pydantic import BaseModel

from retrain.config import ModelConfig, ReplayConfig, TrainConfig

LABELS = ["negative", "neutral", "positive"]
DOMAINS = ["phrasebank", "twitter"]
STRATEGIES = ["naive", "class_balanced", "reservoir", "recency", "lora", "distill", "joint"]

# The benchmark's deliberate departures from the package defaults, sized to run 7 strategies x 3 seeds in
# < 45 min on 2 CPU cores. Early stopping keeps the package's patience: without --val-share there are no
# val rows, and fine_tune then runs every epoch.
TRAIN_OVERRIDES: dict[str, Any] = {
    "epochs": 2,
    "precision": "bf16",  # mixed precision for training and scoring; fp32 is about 1.7x slower on CPU
}
REPLAY_OVERRIDES: dict[str, Any] = {
    "reservoir_capacity": 500,  # a third of the stream's 1,500 train rows: the buffer really is bounded
    "half_life_rows": 500,  # scaled to the stream as the capacity is
}
QUICK_REPLAY_OVERRIDES: dict[str, Any] = {"reservoir_capacity": 200, "half_life_rows": 100}

C = TypeVar("C", bound=BaseModel)


def derive(config: C, **changes: Any) -> C:
    """`config` with `changes`, validated as strictly as a direct construction (model_copy does not
    validate); a bad value raises `InvalidConfigError` naming the config, field and what it allows."""
    return type(config)(**{**config.model_dump(), **changes})


@dataclass
class Settings:
    model: ModelConfig = field(default_factory=ModelConfig)
    # `train.seed` is unused: each run trains with its own seed (`seeds`).
    train: TrainConfig = field(default_factory=lambda: TrainConfig(**TRAIN_OVERRIDES))
    # `replay.policy` is the class_balanced/lora/distill strategies'; reservoir and recency swap it.
    replay: ReplayConfig = field(default_factory=lambda: ReplayConfig(**REPLAY_OVERRIDES))
    # The lora and distill strategies: what each changes in `train` (both replay with `replay`).
    lora_rank: int = 8
    lora_learning_rate: float = 1e-3  # adapters need a larger step than full fine-tuning
    distill_alpha: float = 1.0
    # The stream.
    pb_batches: int = 3
    tw_batches: int = 3
    batch_rows: int = 250  # 0 = all PhraseBank train rows in pb_batches; Twitter batches the same size
    tw_batch_rows: int = 0  # 0 = Twitter batches as large as the PhraseBank ones; N = N rows each
    test_rows: int = 0  # 0 = the whole test sets (969 PhraseBank rows, 2,388 Twitter rows); N = N stratified rows
    val_share: float = 0.0  # > 0: hold out a share of each batch and early-stop on it
    joint_every_update: bool = False  # False: joint is trained after the last batch of each domain only
    seeds: list[int] = field(default_factory=lambda: [13, 14, 15])
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))


def quick_settings() -> Settings:
    """The smoke run (< 5 min on 2 cores): 50-row batches, 100 test rows, 1 seed, 3 strategies."""
    s = Settings(batch_rows=50, test_rows=100, seeds=[13], strategies=["naive", "class_balanced", "joint"])
    s.replay = derive(s.replay, **QUICK_REPLAY_OVERRIDES)
    return s


def train_config(s: Settings, seed: int, strategy: str) -> TrainConfig:
    """How `strategy` fine-tunes in a run with `seed`."""
    changes: dict[str, Any] = {"seed": seed}
    if strategy == "lora":
        changes.update(lora_rank=s.lora_rank, learning_rate=s.lora_learning_rate)
    if strategy == "distill":
        changes.update(distill_alpha=s.distill_alpha)
    return derive(s.train, **changes)


def replay_config(s: Settings, strategy: str) -> ReplayConfig:
    """Which past rows `strategy` replays (naive: none). Joint retrains on everything and has none."""
    if strategy == "joint":
        raise ValueError("joint retrains on all rows so far: it has no replay config")
    if strategy == "naive":
        return derive(s.replay, ratio=0.0)
    if strategy in ("reservoir", "recency"):
        return derive(s.replay, policy=strategy)
    return s.replay


# -- saved with every report, and read back by --merge ---------------------------------------------
CONFIGS: dict[str, type[BaseModel]] = {"model": ModelConfig, "train": TrainConfig, "replay": ReplayConfig}


def to_json(s: Settings) -> dict[str, Any]:
    """The settings as JSON values: each config as its fields (train without its unused seed)."""
    out = {f.name: getattr(s, f.name) for f in fields(s)}
    for name in CONFIGS:
        out[name] = out[name].model_dump(exclude={"seed"} if name == "train" else None)
    return out


# Settings added after runs were saved whose default is not what those runs did: a file without the
# setting ran with this value (length-grouped batches became the default after they were measured).
BEFORE_IT_EXISTED = {"train": {"length_grouped": False}}


def from_json(saved: dict[str, Any]) -> Settings:
    """Settings from `to_json`. A setting missing from the file (it was added later) takes the value the
    run had before it existed: its default, unless BEFORE_IT_EXISTED says otherwise."""
    defaults = to_json(Settings())
    for name, old in BEFORE_IT_EXISTED.items():
        defaults[name] = {**defaults[name], **old}
    unknown = sorted(set(flatten(saved)) - set(flatten(defaults)))
    if unknown:
        raise ValueError(f"unknown settings {', '.join(unknown)} (saved by another version of the benchmark?)")
    values = {**defaults, **saved}
    for name, config in CONFIGS.items():
        values[name] = config(**{**defaults[name], **saved.get(name, {})})
    return Settings(**values)


def flatten(saved: dict[str, Any]) -> dict[str, Any]:
    """{"train": {"epochs": 2}, "seeds": [13]} → {"train.epochs": 2, "seeds": [13]}."""
    return {f"{name}.{key}" if isinstance(value, dict) else name: inner
            for name, value in saved.items()
            for key, inner in (value.items() if isinstance(value, dict) else [(None, value)])}
