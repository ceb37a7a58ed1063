"""A reviewer opens the champion in the MLflow UI and sees why it is there: real flow, real `mlflow ui`,
real (headless) Chromium.

The store comes from the daemon's own cycle, in-process on a tiny model (as tests/daemon/test_cycle.py
does); `mlflow ui` serves it as a subprocess; Chromium renders the single-page app and hands back
its DOM and a screenshot.

Why the Chromium command line and no driver: `--virtual-time-budget` lets the page run until the
budget of *virtual* time is spent, and virtual time stands still while a network request is
pending, so the DOM is dumped after the app's API calls have answered and React has rendered —
without selenium/chromedriver (a new dependency) or a DevTools client. One process per page, with
a fresh profile, gives the page as a first-time reviewer sees it.

Why the host name `mlflow-ui.test` rather than 127.0.0.1: MLflow 3.17's UI opens its "Assistant"
panel by itself on the first visit from localhost, covering a quarter of the page. Chromium maps
the name to 127.0.0.1 (`--host-resolver-rules`), and the server is told to accept it as a Host
header and an origin (`--allowed-hosts`, `--cors-allowed-origins`), so its security middleware
still guards the test server and answers every request.

Screenshots go to tmp_path; with UPDATE_SCREENSHOTS=1 they replace the ones in docs/ (not a CLTOOL_*
name: tests/conftest.py removes every CLTOOL_* variable so a developer's settings cannot leak in).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.error import URLError

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HOST = "mlflow-ui.test"  # .test is reserved (RFC 2606): it can never reach a real machine
LABELS = ["negative", "neutral", "positive"]
# Text the UI shows when a request failed or a route is unknown; none may appear on a page.
UI_ERRORS = ("Error loading", "Failed to load", "do not have permission", "Page not found", "Something went wrong")

requires_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium not installed: apt-get install chromium (the CI script installs it)"
)


def toy_rows(n: int, start: int = 0) -> list[tuple[str, str]]:
    words = {"negative": "plunge loss", "neutral": "meeting held", "positive": "soar profit"}
    return [(f"{words[LABELS[i % 3]]} item {i}", LABELS[i % 3]) for i in range(start, start + n)]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A state folder after two batches through the real cycle: v1 is the champion."""
    import mlflow
    import pandas as pd

    from daemon.config import load_settings
    from daemon.context import open_context
    from daemon.cycle.run import maybe_run
    from retrain.modeling import build_tiny_model

    root = tmp_path_factory.mktemp("ui-store")
    base = build_tiny_model(root / "base", LABELS)
    settings = load_settings(
        state_dir=str(root / "state"), inbox_dir=str(root / "inbox"),
        model={"base": str(base), "max_length": 16},
        train={"epochs": 5, "batch_size": 16, "learning_rate": 0.002, "early_stopping_patience": 0},
        trigger={"min_new_rows": 50}, gate={"first_model_min_macro_f1": 0.0, "min_fresh_rows": 10},
    )
    ctx = open_context(settings, owner="test")
    for name, start in (("a.csv", 0), ("b.csv", 1000)):
        pd.DataFrame(toy_rows(200, start), columns=["text", "label"]).to_csv(root / name, index=False)
        ctx.inbox.ingest_copy(root / name)
        maybe_run(ctx)
    champion = ctx.registry.get_alias("champion")
    assert champion is not None, "the first cycle should have promoted a champion"
    run = mlflow.MlflowClient(settings.tracking_uri).get_run(champion.run_id)
    return {"root": root, "uri": settings.tracking_uri, "model": settings.mlflow.model_name,
            "champion": champion, "run": run}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ui(store):
    """`mlflow ui` on the store; yields (base URL, server log path); always stopped."""
    port = free_port()
    origin = f"http://{HOST}:{port}"
    log_path = store["root"] / "mlflow-ui.log"
    command = [str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri", store["uri"],
               "--host", "127.0.0.1", "--port", str(port),
               # One worker: each imports all of MLflow (~10 s on 2 cores), and one page needs no more.
               "--workers", "1", "--allowed-hosts", f"{HOST}:{port}", "--cors-allowed-origins", origin]
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    with open(log_path, "wb") as log:
        # Own session: uvicorn forks a worker; the whole group is stopped at the end.
        server = subprocess.Popen(command, cwd=store["root"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        wait_until_up(server, f"http://127.0.0.1:{port}/health", log_path)
        yield origin, log_path
    finally:
        stop(server)


def wait_until_up(server: subprocess.Popen, health: str, log_path: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow ui exited with {server.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(health, timeout=2) as answer:  # /health skips the Host check
                if answer.status == 200:
                    return
        except (URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"mlflow ui did not answer {health} in {timeout:.0f} s:\n{log_path.read_text(errors='replace')[-3000:]}")


def stop(server: subprocess.Popen) -> None:
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=15)


class _Text(HTMLParser):
    """The text a reader sees: everything outside <script>, <style> and <noscript>."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "noscript"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style", "noscript") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())  # also folds &nbsp; ("@ champion")


def browse(url: str, screenshot: Path, scratch: Path) -> str:
    """Render `url` in headless Chromium; write a screenshot; return the page's visible text."""
    profile = scratch / f"chromium-{screenshot.stem}"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--host-resolver-rules=MAP {HOST} 127.0.0.1",
        "--virtual-time-budget=15000", "--hide-scrollbars", "--window-size=1400,1100",
        f"--screenshot={screenshot}", "--dump-dom", url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"chromium failed on {url} ({done.returncode}):\n{done.stderr[-3000:]}"
    assert screenshot.is_file() and screenshot.stat().st_size > 20_000, f"no real screenshot of {url}"
    text = visible_text(done.stdout)
    shown = [error for error in UI_ERRORS if error in text]
    assert not shown, f"{url} shows {shown}:\n{text[:3000]}"
    return text


def screenshot_path(name: str, tmp_path: Path) -> Path:
    return (REPO / "docs" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path) / name


def assert_server_refused_nothing(log_path: Path) -> None:
    """A request the security middleware blocks renders as an empty panel, not an error: check the log."""
    log = log_path.read_text(errors="replace")
    assert "403 Forbidden" not in log and "Blocked cross-origin" not in log, log[-3000:]


@requires_chromium
def test_registered_model_page_lists_the_champion_with_its_decision(store, ui, tmp_path):
    origin, log_path = ui
    model, champion = store["model"], store["champion"]
    text = browse(f"{origin}/#/models/{model}", screenshot_path("mlflow-registered-model.png", tmp_path), tmp_path)
    assert model in text and f"Version {champion.version}" in text
    assert "@ champion" in text
    assert "cltool.decision: PROMOTE" in text or "cltool.decision : PROMOTE" in text
    assert_server_refused_nothing(log_path)


@requires_chromium
def test_version_page_explains_the_promotion(store, ui, tmp_path):
    origin, log_path = ui
    model, champion = store["model"], store["champion"]
    url = f"{origin}/#/models/{model}/versions/{champion.version}"
    text = browse(url, screenshot_path("mlflow-model-version.png", tmp_path), tmp_path)
    assert f"Version {champion.version}" in text and "@ champion" in text
    # The description (daemon/report.py) rendered from Markdown: decision, comparison table, reasons.
    assert "Decision: PROMOTE" in text
    assert "fresh macro-F1" in text and "candidate champion delta" in text
    assert "Reasons" in text and champion.tags["cltool.reasons"].split(" | ")[0] in text
    # The tags table.
    assert "cltool.decision PROMOTE" in text and "cltool.parent_version" in text
    assert store["run"].info.run_name in text  # "Source Run" links the version to its run
    assert_server_refused_nothing(log_path)


@requires_chromium
def test_run_page_shows_the_datasets_behind_the_version(store, ui, tmp_path):
    origin, log_path = ui
    run = store["run"]
    assert run.inputs.dataset_inputs, "the cycle logged no datasets: daemon/cycle.py passes datasets= to log_candidate"
    assert {d.tags[0].value for d in run.inputs.dataset_inputs} >= {"training", "fresh_test"}
    url = f"{origin}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    text = browse(url, screenshot_path("mlflow-run.png", tmp_path), tmp_path)
    assert run.info.run_name in text and "Datasets" in text
    first = run.inputs.dataset_inputs[0]
    assert first.dataset.name in text and first.dataset.digest in text  # "name (digest)"
    assert_server_refused_nothing(log_path)
