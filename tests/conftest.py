"""Shared test set-up: never reach a model hub; small settings factories over tmp_path."""

from __future__ import annotations

import os

# Set before transformers/datasets/evaluate are imported anywhere in the test session.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DISABLE_MLFLOW_INTEGRATION", "TRUE")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# Under pytest-xdist (make test runs two workers) each worker gets its share of the cores: torch, its
# OpenMP pool and the tokenizers would otherwise each start a thread per core in every worker, and
# oversubscribed OpenMP threads spin against each other. Subprocesses (the CLI, training children) inherit it.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    _threads = str(max(1, _cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_name, _threads)
for _name in list(os.environ):  # a developer's own cltool settings must not leak into tests
    if _name.startswith("CLTOOL_"):
        del os.environ[_name]
# Most tests train inside their own process: a child per cycle costs another interpreter's import of
# torch and transformers (6.0 s idle here: `time .venv/bin/python -c "import retrain.train, pandas"`).
# The child-process launcher, the daemon's default, is exercised where it is the point:
# tests/retrain/test_job.py, tests/daemon/cycle/test_training_child.py, the CLI end-to-end tour and the
# production tests, which drop this variable.
os.environ["CLTOOL_TRAIN__LAUNCHER"] = "inline"
