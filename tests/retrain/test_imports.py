from __future__ import annotations

import subprocess
import sys
import textwrap

# A fresh interpreter, because this session has long since imported everything.
CHECK = textwrap.dedent(
    """
    import sys, threading
    import retrain.config, retrain.data, retrain.devices, retrain.errors, retrain.evaluation, retrain.loss
    import retrain.metrics, retrain.modeling, retrain.replay, retrain.train, retrain.update
    assert threading.active_count() == 1, threading.enumerate()
    forbidden = sorted(m for m in sys.modules if m.split(".")[0] in {"mlflow", "registry", "daemon"})
    assert not forbidden, forbidden
    print("ok")
    """
)


def test_importing_retrain_starts_nothing_and_pulls_in_no_mlflow(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
    assert list(tmp_path.iterdir()) == []  # and writes nothing where it runs
