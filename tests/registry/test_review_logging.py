"""A logged candidate explains itself: datasets with their contexts, review tags on the run and the
version, and a description clipped to what the store holds while the full text stays in the run."""

from __future__ import annotations

import mlflow
import pytest

from registry.candidate import log_and_register
from registry.review import MAX_VERSION_DESCRIPTION_LENGTH, InvalidDatasetError, review_tags
from registry.store import default_artifact_location, open_store

from .conftest import MODEL_NAME, candidate_kwargs, store_uri
from .test_review import rows

pytestmark = pytest.mark.integration


def log(folder, tiny_model_dir, **overrides):
    """log_and_register as ModelRegistry.log_candidate calls it, with `datasets` passed through."""
    uri = store_uri(folder)
    client, experiment_id = open_store(uri, "cltool", default_artifact_location(uri))
    kwargs = {"files": [], "input_example": None, **candidate_kwargs(tiny_model_dir, 1)}
    kwargs.update(overrides)
    run_id, version = log_and_register(client=client, tracking_uri=uri, experiment_id=experiment_id,
                                       model_name=MODEL_NAME, **kwargs)
    return client, run_id, version


def datasets(folder) -> list[dict]:
    return [
        {"name": "new train rows b2", "context": "training", "rows": rows(60, "b2"), "source": str(folder / "b2.parquet")},
        {"name": "replay sample", "context": "replay", "rows": rows(40, "b1", 500), "source": str(folder / "b1.parquet")},
        {"name": "fresh test rows b2", "context": "fresh_test", "rows": rows(20, "b2", 900),
         "source": str(folder / "b2.parquet")},
        {"name": "regression suite", "context": "regression", "rows": rows(25, "b1", 700),
         "source": str(folder / "b1.parquet")},
    ]


def test_datasets_tags_and_description_reach_the_run_and_the_version(tmp_path, tiny_model_dir):
    tags = review_tags(decision="PROMOTE", reasons=["fresh macro-F1 0.70 ≥ champion 0.66"] * 500,
                       parent_version="1", batch_ids=["b2"], batch_checksums=["ab" * 32], rows_new=60,
                       rows_replay=40)
    description = "**Decision: PROMOTE**\n\n| metric | candidate |\n|---|---|\n" + "| fresh macro-F1 | 0.700 |\n" * 400
    client, run_id, version = log(tmp_path, tiny_model_dir, tags=tags, description=description,
                                  datasets=datasets(tmp_path))

    run = client.get_run(run_id)
    logged = {d.tags[0].value: d.dataset for d in run.inputs.dataset_inputs}
    assert set(logged) == {"training", "replay", "fresh_test", "regression"}
    assert logged["replay"].name == "replay sample" and '"num_rows": 40' in logged["replay"].profile
    assert str(tmp_path / "b1.parquet") in logged["regression"].source

    mv = client.get_model_version(MODEL_NAME, version)
    for where in (run.data.tags, mv.tags):
        assert where["cltool.decision"] == "PROMOTE" and where["validation_status"] == "passed"
        assert where["cltool.parent_version"] == "1" and where["cltool.rows_replay"] == "40"
    # 500 reasons are ~19,000 characters: clipped on the run (8,000), whole on the version (100,000).
    assert len(run.data.tags["cltool.reasons"]) == 8000 and "chars]" in run.data.tags["cltool.reasons"]
    assert mv.tags["cltool.reasons"] == tags["cltool.reasons"]

    assert len(mv.description) <= MAX_VERSION_DESCRIPTION_LENGTH and "description clipped" in mv.description
    assert mv.description.startswith("**Decision: PROMOTE**")
    full = client.download_artifacts(run_id, "description.md", str(tmp_path / "dl"))
    assert open(full, encoding="utf-8").read() == description


def test_a_bad_dataset_fails_before_any_run_or_version_exists(tmp_path, tiny_model_dir):
    bad = datasets(tmp_path)
    bad[2]["context"] = "test"
    with pytest.raises(InvalidDatasetError, match="dataset #2"):
        log(tmp_path, tiny_model_dir, datasets=bad)
    # registry_uri too: log_and_register set the process-wide one to an earlier test's store.
    client = mlflow.MlflowClient(store_uri(tmp_path), registry_uri=store_uri(tmp_path))
    assert client.search_runs(experiment_ids=[client.get_experiment_by_name("cltool").experiment_id]) == []
    assert client.search_model_versions(f"name = '{MODEL_NAME}'") == []
