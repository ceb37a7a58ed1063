"""Fixtures for the registry tests: a tiny BERT classifier and real MLflow stores on SQLite.

Logging a candidate takes seconds and a new SQLite store spends seconds creating its tables, so
one "seed" store with three logged versions is built per session; each test that moves aliases
gets its own copy of that database file (the artifacts it points at are only ever read).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

LABELS = ["negative", "neutral", "positive"]
MODEL_NAME = "sentiment"

# Set before anything imports mlflow or huggingface_hub: no Hub access, no usage telemetry
# thread posting to mlflow's servers, no progress bars in the test log.
_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
for _key, _value in _ENV.items():
    os.environ.setdefault(_key, _value)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT classifier with the packaged MiniLM tokenizer, saved to a folder."""
    from retrain.modeling import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), LABELS, seed=0)


def store_uri(folder: Path) -> str:
    return f"sqlite:///{folder}/mlflow.db"


def candidate_kwargs(model_dir: Path, n: int, **overrides: object) -> dict:
    """A log_candidate call shaped like the daemon's, numbered so versions are told apart."""
    kwargs = {
        "model_dir": model_dir,
        "run_name": f"candidate-{n}",
        "params": {"train": {"lr": 2e-5, "epochs": 1}, "replay": {"ratio": 1.0}, "cycle": n},
        "metrics": {"fresh.macro_f1": 0.5 + n / 100, "regression.macro_f1": 0.6},
        "tags": {"cltool.cycle": str(n), "cltool.batches": f"b{n}"},
        "json_artifacts": {"evaluation": {"fresh": {"n": 40, "macro_f1": 0.5 + n / 100}}},
        "description": f"candidate {n} from batch b{n}",
    }
    kwargs.update(overrides)
    return kwargs


@pytest.fixture(scope="session")
def seed_store(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict:
    """A store with versions 1, 2, 3 of MODEL_NAME and no aliases; built once, never modified."""
    from registry.models import ModelRegistry

    from registry.plots import confusion_png

    folder = tmp_path_factory.mktemp("seed-store")
    plot = confusion_png([[3, 1, 0], [0, 4, 1], [1, 0, 5]], LABELS, "fresh", folder / "confusion_fresh.png")
    registry = ModelRegistry(store_uri(folder), MODEL_NAME)
    extras = {1: {"input_example": ["Profit rose 5%."]}, 2: {"files": [plot]}, 3: {}}
    infos = [registry.log_candidate(**candidate_kwargs(tiny_model_dir, n, **extras[n])) for n in (1, 2, 3)]
    return {"folder": folder, "artifact_location": registry.artifact_location, "versions": infos}


@pytest.fixture
def registry(tmp_path: Path, seed_store: dict):
    """A ModelRegistry on a private copy of the seed store's database (versions 1-3, no aliases)."""
    from registry.models import ModelRegistry

    shutil.copy2(seed_store["folder"] / "mlflow.db", tmp_path / "mlflow.db")
    return ModelRegistry(store_uri(tmp_path), MODEL_NAME, artifact_location=seed_store["artifact_location"])


# ---- evaluation reports for the gate tests, built from which rows each model gets right -------


def truth(n: int) -> list[str]:
    """n rows cycling negative, neutral, positive: balanced classes."""
    return [LABELS[i % 3] for i in range(n)]


def wrong_on(y_true: list[str], rows) -> list[str]:
    """Predictions equal to the truth except on `rows`, where they name the next class.

    Wrong on the first k rows of `truth(n)` with k a multiple of 3, every class has precision =
    recall = 1 - k/n, so macro-F1 is exactly 1 - k/n."""
    rows = set(rows)
    return [LABELS[(LABELS.index(y) + 1) % 3] if i in rows else y for i, y in enumerate(y_true)]


def scored(y_true: list[str], y_pred: list[str]):
    """A PartReport as the daemon builds one, per-row evidence included (numbers from sklearn)."""
    from sklearn.metrics import f1_score, recall_score

    from registry.evidence import PartReport

    n = len(y_true)
    if n == 0:  # what retrain.evaluation.score reports for no rows
        return PartReport(0, None, None, dict.fromkeys(LABELS), dict.fromkeys(LABELS), (), ())
    recall = recall_score(y_true, y_pred, labels=LABELS, average=None, zero_division=0)
    return PartReport(
        n=n,
        macro_f1=float(f1_score(y_true, y_pred, labels=LABELS, average="macro", zero_division=0)),
        accuracy=sum(t == p for t, p in zip(y_true, y_pred)) / n,
        recall=dict(zip(LABELS, map(float, recall))),
        pred_share={label: list(y_pred).count(label) / n for label in LABELS},
        y_true=tuple(y_true),
        y_pred=tuple(y_pred),
    )


def pair(fresh_true, cand_fresh, champ_fresh, reg_true=None, cand_reg=None, champ_reg=None):
    """(candidate, champion) EvaluationReports scored on the same fresh and regression rows."""
    from registry.evidence import EvaluationReport

    regression = reg_true is not None
    candidate = EvaluationReport(scored(fresh_true, cand_fresh),
                                 scored(reg_true, cand_reg) if regression else None, train_loss=0.3)
    champion = EvaluationReport(scored(fresh_true, champ_fresh),
                                scored(reg_true, champ_reg) if regression else None, train_loss=None)
    return candidate, champion
