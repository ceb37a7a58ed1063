"""The model cache under several processes: concurrent downloads of one version and a prune that runs
while another download is in flight leave one complete folder and break nobody (`cltool serve` replicas
and the daemon may share a host's cache)."""

from __future__ import annotations

import threading
import time

from daemon.context import ModelCache
from tests.concurrency import at_once


class SlowRegistry:
    def __init__(self, delay=0.2):
        self.delay, self.calls = delay, 0

    def download_model(self, version, dst):
        self.calls += 1
        dst.mkdir(parents=True, exist_ok=True)
        time.sleep(self.delay)
        (dst / "weights.bin").write_text(f"v{version}")
        (dst / "config.json").write_text("{}")
        return dst


def test_concurrent_downloads_of_one_version_leave_one_complete_folder(tmp_path):
    registry = SlowRegistry()
    cache = ModelCache(tmp_path / "models", registry)
    paths, errors = at_once(lambda: cache.path("3"), 3)
    assert not errors and registry.calls == 3
    assert set(paths) == {tmp_path / "models" / "v3"} and (paths[0] / "weights.bin").read_text() == "v3"
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["v3"]  # no download folder left behind


def test_a_prune_spares_a_download_in_flight(tmp_path):
    cache = ModelCache(tmp_path / "models", SlowRegistry(delay=0.3))
    (tmp_path / "models" / "v1").mkdir(parents=True)
    (tmp_path / "models" / "v1" / "config.json").write_text("{}")
    done = {}
    thread = threading.Thread(target=lambda: done.setdefault("path", cache.path("2")))
    thread.start()
    time.sleep(0.1)
    cache.prune(keep={"9"})  # another process swapped to v9 meanwhile
    thread.join()
    assert (done["path"] / "config.json").is_file()
    assert not (tmp_path / "models" / "v1").exists()
