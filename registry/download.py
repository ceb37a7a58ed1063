"""Fetch a registered transformers model as one folder that `from_pretrained` can load.

mlflow's transformers flavour stores the weights and config under `model/` and each pipeline
component under `components/<name>/` (the tokenizer in `components/tokenizer/`). Training and
inference want a single save_pretrained-style folder, so this downloads only those parts — not
the environment files, card or examples — and merges the tokenizer files into the model folder.
No model is loaded into memory: files are copied as they are.

The folder is assembled in a hidden sibling of the destination and renamed into place at the end,
so a crash never leaves a half-downloaded model where a caller would load it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from registry.errors import DestinationNotEmptyError, NotATransformersModelError

log = logging.getLogger(__name__)


def _join(uri: str, relative: str) -> str:
    return uri.rstrip("/") + "/" + relative


def _fetch(uri: str, relative: str, into: Path, tracking_uri: str) -> Path:
    """Download `<uri>/<relative>` (file or folder) under `into`; returns the local path."""
    import mlflow.artifacts

    into.mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=_join(uri, relative), dst_path=str(into), tracking_uri=tracking_uri
    )
    return Path(local)


def _merge_missing(src: Path, dst: Path) -> None:
    """Copy files of `src` into `dst` without replacing any: the model folder's own config wins
    over a component's file of the same name."""
    for item in src.iterdir():
        target = dst / item.name
        if target.exists():
            continue
        if item.is_dir():
            shutil.copytree(item, target)
        else:
            shutil.copy2(item, target)


def download_transformers_model(
    *, client: Any, tracking_uri: str, model_name: str, version: str, dst: Path
) -> Path:
    from mlflow.models import Model

    dst = Path(dst).resolve()
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise DestinationNotEmptyError(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    uri = client.get_model_version_download_uri(model_name, version)
    staging = Path(tempfile.mkdtemp(prefix=f".{dst.name}.partial-", dir=dst.parent))
    try:
        mlmodel = Model.load(str(_fetch(uri, "MLmodel", staging / "meta", tracking_uri)))
        flavor = mlmodel.flavors.get("transformers")
        if flavor is None:
            raise NotATransformersModelError(model_name, version, sorted(mlmodel.flavors))
        model_dir = _fetch(uri, flavor.get("model_binary", "model"), staging / "files", tracking_uri)
        for component in flavor.get("components", []):
            # Usually just "tokenizer"; a feature extractor or processor would be merged the same way.
            part = _fetch(uri, f"components/{component}", staging / "components", tracking_uri)
            _merge_missing(part, model_dir)
        if dst.exists():
            dst.rmdir()  # empty, checked above; rename onto an existing folder fails on Windows
        model_dir.rename(dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("downloaded %s version %s to %s", model_name, version, dst)
    return dst
