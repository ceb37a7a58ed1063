"""The gate benchmark's own knobs, its quick mode, and the daemon settings each of its cycles runs with.

The daemon's settings are not re-declared here: every cycle runs `daemon.config.load_settings` with the
daemon's defaults, overriding only the folders, the run seed (train.seed), drift (off: no detector is
under test) and retention (keep every version), plus `train.epochs` when --epochs is given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from daemon.config import Settings, load_settings


@dataclass
class Config:
    seeds: list[int] = field(default_factory=lambda: [13, 14, 15])
    stream_seeds: list[int] | None = None
    """Seeds of stage 3 (None: the first of `seeds`; the stream trains 12 cycles and 2 joint models per seed)."""
    bootstrap_rows: int = 0
    """Rows of data/demo/01-tweets.csv the champion bootstraps on (0 = all 1,200, as `make run`)."""
    batch_rows: int = 600
    """Rows per candidate and stream batch (the demo's later batches have 600); clean_large has twice as many."""
    noise: float = 0.2
    worse_lr: float = 5e-3
    epochs: int | None = None
    """train.epochs of every cycle; None = the daemon's default."""
    pool_rows: int = 0
    """Rows of sent_valid in the evaluation pool (0 = all), half fresh, half regression."""
    draws: int = 300
    fresh_rows: int = 60
    """Fresh rows per pending batch in stage 2 (a 600-row batch has ~60 test rows); WAIT adds as many again."""
    regression_rows: int = 200
    jobs: int = 2

    def stage1_key(self) -> dict[str, Any]:
        """What stage 1's cached predictions depend on: a cache made with other values is not reused."""
        keys = ("seeds", "bootstrap_rows", "batch_rows", "noise", "worse_lr", "epochs", "pool_rows")
        return {key: getattr(self, key) for key in keys}

    def stage3_key(self) -> dict[str, Any]:
        """What stage 3's cached streams depend on (its seeds are per entry)."""
        return {key: value for key, value in self.stage1_key().items() if key != "seeds"}

    def stage3_seeds(self) -> list[int]:
        return self.stream_seeds if self.stream_seeds is not None else self.seeds[:1]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quick() -> Config:
    """Smoke run of every stage in minutes: 1 seed, 400 bootstrap rows, 300-row batches, 1 epoch, 800 pool
    rows, 50 draws."""
    return Config(seeds=[13], bootstrap_rows=400, batch_rows=300, epochs=1, pool_rows=800, draws=50,
                  regression_rows=100)


# Stage 3's "always promote" gate: every threshold a policy field sets, opened. What the gate still
# refuses (a collapsed model, the negative-flip sign test, which no field turns off) is force-promoted.
ALWAYS_PROMOTE = {"name": "always_promote", "min_fresh_gain": -1.0, "max_forgetting": 1.0, "max_class_drop": 1.0,
                  "max_negative_flip_rate": 1.0, "first_model_min_macro_f1": 0.0}


def daemon_settings(root: Path, cfg: Config, seed: int, train: dict | None = None,
                    gate: dict | None = None) -> Settings:
    """The daemon's settings for one state folder under `root`; `train`/`gate` override single fields."""
    train_fields = {"seed": seed, **({"epochs": cfg.epochs} if cfg.epochs else {}), **(train or {})}
    gate_fields = {k: v for k, v in (gate or {}).items() if k != "name"}
    return load_settings(state_dir=str(root / "state"), inbox_dir=str(root / "inbox"), train=train_fields,
                         gate=gate_fields, drift={"enabled": False}, mlflow={"keep_versions": 0, "keep_runs": 0},
                         observe={"enabled": False})
