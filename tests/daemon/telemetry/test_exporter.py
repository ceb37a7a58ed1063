"""Metrics derived from the event log: exact after any writer, and the same after a restart."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from daemon.context import open_context
from daemon.telemetry.exporter import Telemetry


def values(telemetry: Telemetry) -> dict[tuple[str, tuple], float]:
    text = generate_latest(telemetry.metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if not s.name.endswith("_created")}


def test_counters_and_gauges_follow_the_event_log_and_survive_a_restart(settings):
    ctx = open_context(settings, owner="test")
    store = ctx.store
    done_at = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    store.append("cycle.finished", "PROMOTE", version="1", now=done_at)
    store.append("promotion", "gate: PROMOTE", version="1", actor="daemon", payload={"op": "promote", "to": "1"})
    store.append("alias.synced", "promote 1", version="1", payload={"champion": "1"})
    store.append("cycle.failed", "RuntimeError: boom")
    store.append("promotion", "by hand", version="2", actor="ann@host", payload={"op": "promote", "to": "2"})
    store.append("alias.synced", "promote 2", version="2", payload={"champion": "2"})
    store.append("rollback", "auto", version="1", actor="daemon:auto-rollback", payload={"op": "rollback", "to": "1"})
    store.append("alias.synced", "rollback 1", version="1", payload={"champion": "1"})
    store.append("job.failed", "cycle: RuntimeError('x')", payload={"job_id": "cycle"})
    store.append("job.missed", "inbox: late beyond misfire grace", payload={"job_id": "inbox"})
    store.append("ingest.quarantined", "bad label")
    store.append("drift.scored", "1 of 2 drifted", batch_id="b1", payload={"results": [
        {"detector": "label_mix", "score": 0.4, "threshold": 0.2, "drifted": True, "alert": "open"},
        {"detector": "live_performance", "score": 0.02, "threshold": 0.1, "drifted": False, "alert": "ok",
         "details": {"live_macro_f1": 0.71, "live_accuracy": 0.8}}], "mean_confidence": 0.66})
    (settings.inbox_dir / "waiting.csv").write_text("text,label\n")
    os.utime(settings.inbox_dir / "waiting.csv", (time.time() - 10, time.time() - 10))  # settled

    telemetry = Telemetry(ctx)
    telemetry.refresh()
    telemetry.refresh()  # nothing new: nothing counted twice
    got = values(telemetry)
    assert got[("cltool_cycles_total", (("outcome", "PROMOTE"),))] == 1
    assert got[("cltool_cycles_total", (("outcome", "failed"),))] == 1
    assert got[("cltool_last_successful_cycle_timestamp_seconds", ())] == done_at.timestamp()
    assert got[("cltool_promotions_total", (("actor_kind", "gate"),))] == 1
    assert got[("cltool_promotions_total", (("actor_kind", "manual"),))] == 1
    assert got[("cltool_rollbacks_total", (("kind", "automatic"),))] == 1
    assert got[("cltool_champion_info", (("version", "1"),))] == 1
    assert ("cltool_champion_info", (("version", "2"),)) not in got
    assert got[("cltool_scheduler_job_errors_total", (("job_id", "cycle"),))] == 1
    assert got[("cltool_scheduler_job_misfires_total", (("job_id", "inbox"),))] == 1
    assert got[("cltool_quarantined_files_total", ())] == 1
    assert got[("cltool_drift_score", (("detector", "label_mix"),))] == 0.4
    assert got[("cltool_drift_threshold", (("detector", "label_mix"),))] == 0.2
    assert got[("cltool_drift_state", (("detector", "label_mix"),))] == 1
    assert got[("cltool_drift_state", (("detector", "live_performance"),))] == 0
    assert got[("cltool_live_macro_f1", ())] == 0.71 and got[("cltool_live_accuracy", ())] == 0.8
    assert got[("cltool_prediction_mean_confidence", ())] == 0.66
    assert got[("cltool_inbox_backlog_files", ())] == 1

    store.append("cycle.finished", "WAIT")
    telemetry.refresh()
    assert values(telemetry)[("cltool_cycles_total", (("outcome", "WAIT"),))] == 1

    restarted = Telemetry(open_context(settings, owner="test"))
    restarted.refresh()
    assert values(restarted) == values(telemetry)
