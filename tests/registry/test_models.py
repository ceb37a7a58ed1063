"""ModelRegistry against a real MLflow store (SQLite + local artifacts in tmp_path)."""

from __future__ import annotations

import json
import shutil
from datetime import timezone
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
import mlflow.transformers
import pytest
import yaml

from registry.errors import (
    DestinationNotEmptyError,
    InvalidModelDirError,
    MissingFileError,
    NoChampionError,
    NoRollbackTargetError,
    RegistryUnavailable,
    UnknownAliasError,
    UnknownVersionError,
)
from registry.models import ModelRegistry
from registry.records import AliasMove

from .conftest import MODEL_NAME, candidate_kwargs, store_uri

pytestmark = pytest.mark.integration


def client_for(registry: ModelRegistry) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)


def model_artifacts(registry: ModelRegistry, version: str) -> Path:
    uri = client_for(registry).get_model_version_download_uri(MODEL_NAME, version)
    return Path(unquote(urlparse(uri).path)) if uri.startswith("file:") else Path(uri)


def aliases(registry: ModelRegistry) -> dict[str, str | None]:
    return {alias: (info.version if (info := registry.get_alias(alias)) else None) for alias in registry.ALIASES}


# ---- logging a candidate ------------------------------------------------------------------------


def test_logged_candidate_is_a_version_with_tags_metrics_and_no_alias(registry, seed_store):
    first = seed_store["versions"][0]
    assert first.version == "1" and first.aliases == ()
    assert first.tags["cltool.cycle"] == "1" and first.tags["cltool.batches"] == "b1"
    assert first.metrics == {"fresh.macro_f1": 0.51, "regression.macro_f1": 0.6}
    assert first.description == "candidate 1 from batch b1"
    assert first.created_at.tzinfo == timezone.utc
    assert first.source.startswith("models:/m-")
    assert registry.get_version("1") == first  # read back from the store, not just returned


def test_run_holds_flattened_params_tags_and_json_artifacts(registry, seed_store, tmp_path):
    client = client_for(registry)
    run = client.get_run(seed_store["versions"][1].run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "candidate-2"
    assert run.data.params["train.lr"] == "2e-05" and run.data.params["cycle"] == "2"
    assert run.data.tags["cltool.batches"] == "b2"
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, tracking_uri=registry.tracking_uri, dst_path=str(tmp_path / "run")
    )
    assert json.loads((Path(local) / "evaluation.json").read_text()) == {"fresh": {"macro_f1": 0.52, "n": 40}}
    assert (Path(local) / "confusion_fresh.png").read_bytes()[:4] == b"\x89PNG"


def test_model_artifacts_are_safetensors_with_signature_and_explicit_requirements(registry):
    import torch
    import transformers

    root = model_artifacts(registry, "1")
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert {"MLmodel", "model/config.json", "model/model.safetensors",
            "components/tokenizer/tokenizer.json", "requirements.txt", "input_example.json"} <= files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".bin", ".pt"))]
    mlmodel = yaml.safe_load((root / "MLmodel").read_text())
    assert mlmodel["flavors"]["transformers"]["task"] == "text-classification"
    assert json.loads(mlmodel["signature"]["inputs"]) == [{"type": "string", "required": True}]
    assert [c["name"] for c in json.loads(mlmodel["signature"]["outputs"])] == ["label", "score"]
    requirements = (root / "requirements.txt").read_text().splitlines()
    assert f"transformers=={transformers.__version__}" in requirements
    assert f"torch=={torch.__version__.split('+')[0]}" in requirements


def test_bad_inputs_fail_before_anything_is_registered(registry, tiny_model_dir, tmp_path):
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(InvalidModelDirError, match="has no config.json"):
        registry.log_candidate(**candidate_kwargs(empty, 9))
    with pytest.raises(MissingFileError, match="missing.png"):
        registry.log_candidate(**candidate_kwargs(tiny_model_dir, 9, files=[tmp_path / "missing.png"]))
    assert [v.version for v in registry.list_versions()] == ["3", "2", "1"]


# ---- reading ------------------------------------------------------------------------------------


def test_list_versions_is_newest_first(registry):
    versions = registry.list_versions()
    assert [v.version for v in versions] == ["3", "2", "1"]
    assert versions[0].metrics["fresh.macro_f1"] == pytest.approx(0.53)


def test_unknown_version_names_the_model_and_the_known_versions(registry):
    with pytest.raises(UnknownVersionError) as caught:
        registry.get_version("7")
    assert str(caught.value) == "model 'sentiment' has no version '7'; versions: 1, 2, 3"
    assert isinstance(caught.value, LookupError)
    with pytest.raises(UnknownVersionError, match="no version 'latest'"):
        registry.promote("latest")


def test_unknown_alias_is_refused(registry):
    with pytest.raises(UnknownAliasError, match="alias 'production' .* champion, challenger, previous_champion"):
        registry.set_alias("production", "1")


# ---- alias moves --------------------------------------------------------------------------------


def test_promote_twice_keeps_the_previous_champion(registry):
    assert registry.promote("1") == AliasMove("champion", None, "1")
    assert aliases(registry) == {"champion": "1", "challenger": None, "previous_champion": None}
    assert registry.promote("2") == AliasMove("champion", "1", "2")
    assert aliases(registry) == {"champion": "2", "challenger": None, "previous_champion": "1"}
    assert registry.get_version("2").aliases == ("champion",)


def test_promoting_the_champion_again_changes_nothing(registry):
    registry.promote("1")
    registry.promote("2")
    move = registry.promote("2")
    assert move == AliasMove("champion", "2", "2") and not move.changed
    assert aliases(registry) == {"champion": "2", "challenger": None, "previous_champion": "1"}


def test_challenger_is_marked_and_cleared_when_promoted(registry):
    registry.promote("1")
    registry.mark_challenger("2")
    assert aliases(registry)["challenger"] == "2"
    registry.promote("2")
    assert aliases(registry) == {"champion": "2", "challenger": None, "previous_champion": "1"}


def test_rollback_to_previous_swaps_and_a_second_rollback_undoes_it(registry):
    registry.promote("1")
    registry.promote("2")
    assert registry.rollback() == AliasMove("champion", "2", "1")
    assert aliases(registry) == {"champion": "1", "challenger": None, "previous_champion": "2"}
    assert registry.rollback() == AliasMove("champion", "1", "2")
    assert aliases(registry) == {"champion": "2", "challenger": None, "previous_champion": "1"}


def test_rollback_to_an_explicit_version(registry):
    registry.promote("2")
    registry.promote("3")
    assert registry.rollback(to="1") == AliasMove("champion", "3", "1")
    assert aliases(registry) == {"champion": "1", "challenger": None, "previous_champion": "3"}


def test_rollback_without_a_champion_or_a_target_explains_why(registry):
    with pytest.raises(NoChampionError, match="model 'sentiment' has no 'champion' alias"):
        registry.rollback()
    registry.promote("1")
    with pytest.raises(NoRollbackTargetError, match="no 'previous_champion'.*versions: 1, 2, 3"):
        registry.rollback()
    with pytest.raises(UnknownVersionError):
        registry.rollback(to="9")
    assert aliases(registry)["champion"] == "1"


def test_set_alias_is_idempotent(registry):
    registry.set_alias("challenger", "3")
    registry.set_alias("challenger", "3")
    assert aliases(registry)["challenger"] == "3"


def test_tags_are_written_on_the_version(registry):
    registry.set_tags("3", {"cltool.decision": "REJECT", "cltool.reasons": "fresh macro-F1 dropped"})
    info = registry.get_version("3")
    assert info.tags["cltool.decision"] == "REJECT" and info.tags["cltool.cycle"] == "3"


def test_a_new_registry_object_on_the_same_store_sees_the_aliases(registry):
    registry.promote("1")
    registry.promote("3")
    registry.mark_challenger("2")
    restarted = ModelRegistry(registry.tracking_uri, MODEL_NAME, artifact_location=registry.artifact_location)
    assert aliases(restarted) == {"champion": "3", "challenger": "2", "previous_champion": "1"}


# ---- the store itself ---------------------------------------------------------------------------


def test_ping_succeeds_on_a_reachable_store(registry):
    registry.ping()
    assert registry.get_alias("champion") is None


def test_ping_names_the_uri_of_a_store_that_cannot_be_opened(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    uri = store_uri(blocker / "state")  # its parent folder would have to be inside a file
    with pytest.raises(RegistryUnavailable) as caught:
        ModelRegistry(uri, MODEL_NAME).ping()
    assert uri in str(caught.value) and isinstance(caught.value, ConnectionError)


def test_construction_touches_nothing(tmp_path):
    ModelRegistry(store_uri(tmp_path / "later"), MODEL_NAME)
    assert not (tmp_path / "later").exists()


# ---- download -----------------------------------------------------------------------------------


def test_download_gives_one_folder_that_reproduces_the_logits(registry, tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = registry.download_model("2", tmp_path / "champion")
    assert folder == tmp_path / "champion"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left

    sentence = "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn."
    logits = []
    for source in (tiny_model_dir, folder):
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSequenceClassification.from_pretrained(source).eval()
        with torch.no_grad():
            logits.append(model(**tokenizer(sentence, return_tensors="pt")).logits)
    assert torch.equal(logits[0], logits[1])
    assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}


def test_download_refuses_a_folder_that_already_has_files(registry, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(DestinationNotEmptyError, match="busy"):
        registry.download_model("1", tmp_path / "busy")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["keep.txt"]


def test_a_version_stored_in_float16_is_half_the_bytes_and_every_reader_computes_in_float32(
        registry, tiny_model_dir, tmp_path):
    import torch
    from safetensors import safe_open

    from retrain.evaluation import Predictor
    from retrain.modeling import store_weights_as

    half = tmp_path / "half"
    shutil.copytree(tiny_model_dir, half)
    store_weights_as(half, "float16")
    assert (half / "model.safetensors").stat().st_size < 0.6 * (tiny_model_dir / "model.safetensors").stat().st_size
    info = registry.log_candidate(**candidate_kwargs(half, 4))
    stored = model_artifacts(registry, info.version)
    weights = next(stored.rglob("model.safetensors"))
    with safe_open(weights, framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}  # stored as float16

    folder = registry.download_model(info.version, tmp_path / "served")
    predictor = Predictor(folder, device="cpu")  # cltool's evaluation and `cltool serve`
    assert {p.dtype for p in predictor.model.parameters()} == {torch.float32}
    reference = Predictor(half, device="cpu").predict(["Profit rose 5%."])[1]
    assert predictor.predict(["Profit rose 5%."])[1] == pytest.approx(reference, abs=1e-6)
    # A consumer elsewhere: MLflow's pyfunc loads the same weights in float32 (the flavour's torch_dtype).
    pipeline = mlflow.transformers.load_model(f"models:/{MODEL_NAME}/{info.version}")
    assert pipeline.model.dtype == torch.float32
    assert pipeline("Profit rose 5%.")[0]["label"] in {"negative", "neutral", "positive"}
