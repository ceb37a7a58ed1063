"""Log one candidate model as an MLflow run plus a LoggedModel, and register it as a new version.

Only `mlflow.transformers.log_model` needs mlflow's global ("fluent") state: it creates its
LoggedModel in the experiment of the *active run* through a client built from the *global*
tracking URI. So that one step sets the URI and opens the run under a process-wide lock (the
daemon is multi-threaded, and two registries on different stores must not see each other's URI);
everything else goes through the explicit client.

Registration goes through `client.create_model_version` rather than `registered_model_name=`:
that sets the version's tags, description and run id in one call, and avoids mlflow's
`_register_model`, which prints to stderr and leaves the version's run id empty.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from registry.errors import InvalidArtifactNameError, InvalidModelDirError, MissingFileError
from registry.limits import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_VERSION_TAG_VALUE_LENGTH,
    chunks,
    metrics_for_mlflow,
    params_for_mlflow,
    tags_for_mlflow,
)
from registry.review import (
    MAX_RUN_DESCRIPTION_LENGTH,
    MAX_VERSION_DESCRIPTION_LENGTH,
    dataset_inputs,
    fit_description,
)

log = logging.getLogger(__name__)

MODEL_ARTIFACT_NAME = "model"
TASK = "text-classification"
_ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")

# Serialises the section that depends on mlflow's process-global tracking URI and active run.
_FLUENT_LOCK = threading.Lock()


def check_inputs(model_dir: Path, json_artifacts: Mapping[str, Any], files: Sequence[Path]) -> Path:
    """Fail before anything is written to MLflow, so a bad call leaves no half-logged run."""
    model_dir = Path(model_dir).resolve()
    if not model_dir.is_dir():
        raise InvalidModelDirError(model_dir, "does not exist or is not a folder")
    if not (model_dir / "config.json").is_file():
        raise InvalidModelDirError(model_dir, "has no config.json")
    if not any((model_dir / name).is_file() for name in _WEIGHT_FILES):
        # Only safetensors: a pickled pytorch_model.bin can run code when loaded.
        raise InvalidModelDirError(model_dir, "has no model.safetensors")
    for name in json_artifacts:
        if not _ARTIFACT_NAME.match(name):
            raise InvalidArtifactNameError(name)
    for path in files:
        if not Path(path).is_file():
            raise MissingFileError(path)
    return model_dir


def pip_requirements() -> list[str]:
    """Pinned to what trained the model; given explicitly because mlflow's inference of them
    imports torchvision, which cltool does not install, and fails."""
    import torch
    import transformers

    return [
        f"transformers=={transformers.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        "accelerate",
        "tokenizers",
    ]


def signature() -> Any:
    """String in, label and score out: what a text-classification pipeline returns."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string")]),
        outputs=Schema([ColSpec("string", "label"), ColSpec("double", "score")]),
    )


def _model_card(run_name: str, description: str) -> Any:
    """A local model card: without one, mlflow asks the Hugging Face Hub for the model's card,
    which is a network call (and a failure offline)."""
    from huggingface_hub import ModelCard

    # The metadata block keeps huggingface_hub from warning that the card has none.
    return ModelCard(
        "---\nlibrary_name: transformers\npipeline_tag: text-classification\n---\n"
        f"# {run_name}\n\nA cltool candidate model.\n\n{description}\n"
    )


def _load_pipeline_parts(model_dir: Path) -> dict[str, Any]:
    """Model and tokenizer objects. Passing the folder path instead would avoid loading the
    weights, but mlflow 3.17's local-checkpoint path breaks on transformers 5
    (`build_flavor_config_from_local_checkpoint`: 'str' object has no attribute '__name__')."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise InvalidModelDirError(model_dir, f"has no loadable tokenizer ({exc})") from exc
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    return {"model": model, "tokenizer": tokenizer}


def _log_metadata(client: Any, run_id: str, params: Mapping[str, Any], metrics: Mapping[str, Any]) -> None:
    from mlflow.entities import Metric, Param

    param_list = [Param(k, v) for k, v in params_for_mlflow(params).items()]
    for batch in chunks(param_list, MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, params=batch)
    now_ms = int(time.time() * 1000)
    metric_list = [Metric(k, v, timestamp=now_ms, step=0) for k, v in metrics_for_mlflow(metrics).items()]
    for batch in chunks(metric_list, MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=batch)


def _log_files(
    client: Any, run_id: str, json_artifacts: Mapping[str, Any], files: Sequence[Path], description: str
) -> None:
    if json_artifacts or description:
        with tempfile.TemporaryDirectory(prefix="cltool-json-") as tmp:
            for name, value in json_artifacts.items():
                # default=str: dates and paths in a report should not make logging fail.
                text = json.dumps(value, indent=2, sort_keys=True, default=str)
                Path(tmp, f"{name}.json").write_text(text, encoding="utf-8")
            if description:
                # The whole text, even when the version and run descriptions had to be clipped.
                Path(tmp, "description.md").write_text(description, encoding="utf-8")
            client.log_artifacts(run_id, tmp)
    for path in files:
        client.log_artifact(run_id, str(path))


def ensure_registered_model(client: Any, model_name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(model_name)
    except MlflowException as exc:
        # Another process (or an earlier candidate) created it: that is the normal case.
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


def log_and_register(
    *,
    client: Any,
    tracking_uri: str,
    experiment_id: str,
    model_name: str,
    model_dir: Path,
    run_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    tags: Mapping[str, Any],
    json_artifacts: Mapping[str, Any],
    files: Sequence[Path],
    description: str,
    input_example: list[str] | None,
    datasets: Sequence[Mapping[str, Any]] = (),
) -> tuple[str, str]:
    """Run the whole logging; returns (run_id, version). The run ends FAILED if any step raises,
    and no version exists unless every step before registration succeeded.

    `datasets` (see registry/review.py) become the run's dataset inputs: the rows the candidate
    trained on, replayed, and was judged on, shown in the run page's "Datasets" section."""
    import mlflow
    import mlflow.transformers
    import torch

    model_dir = check_inputs(model_dir, json_artifacts, files)
    inputs = dataset_inputs(datasets)  # validated (and digested) before the run exists
    parts = _load_pipeline_parts(model_dir)
    run_tags = tags_for_mlflow(tags)
    ensure_registered_model(client, model_name)
    with _FLUENT_LOCK:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        with mlflow.start_run(
            experiment_id=experiment_id,
            run_name=run_name,
            tags=run_tags,
            description=fit_description(description, MAX_RUN_DESCRIPTION_LENGTH) or None,
        ) as run:
            run_id = run.info.run_id
            # Params and metrics first: log_model copies the run's params onto the LoggedModel
            # and links the run's step-0 metrics to it, so the UI shows them on the model too.
            _log_metadata(client, run_id, params, metrics)
            if inputs:
                client.log_inputs(run_id, datasets=inputs)
            _log_files(client, run_id, json_artifacts, files, description)
            info = mlflow.transformers.log_model(
                transformers_model=parts,
                name=MODEL_ARTIFACT_NAME,
                task=TASK,
                pip_requirements=pip_requirements(),
                signature=signature(),
                input_example=input_example,
                model_card=_model_card(run_name, description),
                save_pretrained=True,
                # The weights may be stored in float16/bfloat16 (mlflow.weights_dtype): a consumer's pyfunc
                # computes in float32, as the gate judged them and `cltool serve` serves them.
                torch_dtype=torch.float32,
            )
            version = client.create_model_version(
                name=model_name,
                source=info.model_uri,
                run_id=run_id,
                tags=tags_for_mlflow(tags, limit=MAX_VERSION_TAG_VALUE_LENGTH),
                description=fit_description(description, MAX_VERSION_DESCRIPTION_LENGTH) or None,
                model_id=info.model_id,
            )
    log.info("registered %s version %s from run %s (%s)", model_name, version.version, run_id, info.model_uri)
    return run_id, str(version.version)
