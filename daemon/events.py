"""Every event type the daemon writes to the event log, named once.

Writers (`store.append`) and readers (`store.events(types=...)`, `last_event`, the metrics and the
views) use these names, so a renamed event cannot leave a reader looking for the old string. The
values are what the event log stores: changing one is a migration of recorded history.
"""

from __future__ import annotations

# The service itself.
DAEMON_STARTED = "daemon.started"
DAEMON_STOPPED = "daemon.stopped"
DEMO_FED = "demo.fed"
JOB_MISSED = "job.missed"
JOB_FAILED = "job.failed"
OBSERVE_LISTENING = "observe.listening"
OBSERVE_FAILED = "observe.failed"

# The inbox.
INGEST_ACCEPTED = "ingest.accepted"
INGEST_DUPLICATE = "ingest.duplicate"
INGEST_QUARANTINED = "ingest.quarantined"

# Cycles and their decisions.
RETRAIN_REQUESTED = "retrain.requested"
CYCLE_STARTED = "cycle.started"
CYCLE_PHASE = "cycle.phase"  # a running cycle entered a phase (training, evaluation, ...): `cltool status`
CYCLE_FINISHED = "cycle.finished"
CYCLE_ABORTED = "cycle.aborted"
CYCLE_FAILED = "cycle.failed"
DECISION = "decision"
# Training failed train.max_failures times in a row on the same batches: they are set aside (payload:
# batches, reason, failures) until `cltool retrain` brings them back (`batches.unparked`).
BATCHES_PARKED = "batches.parked"
BATCHES_UNPARKED = "batches.unparked"
CYCLE_ENDS = (CYCLE_FINISHED, CYCLE_ABORTED, CYCLE_FAILED)

# Alias moves (each also an alias intent until ALIAS_SYNCED records that MLflow matches).
PROMOTION = "promotion"
ROLLBACK = "rollback"
CHALLENGER = "challenger"
ALIAS_SYNCED = "alias.synced"
ALIAS_MOVES = (PROMOTION, ROLLBACK, CHALLENGER)

# Retention.
MODEL_PRUNED = "model.pruned"  # weights deleted; run and registry entry kept
MODEL_REMOVED = "model.removed"  # run and registry entry deleted too (older than mlflow.keep_runs)

# Probation after a promotion.
WATCH_SCORED = "watch.scored"
WATCH_PASSED = "watch.passed"

# Drift.
DRIFT_SCORED = "drift.scored"
DRIFT_SKIPPED = "drift.skipped"
DRIFT_ALERT_OPENED = "drift.alert_opened"
DRIFT_ALERT_CLOSED = "drift.alert_closed"
DRIFT_EVENTS = (DRIFT_SCORED, DRIFT_SKIPPED, DRIFT_ALERT_OPENED, DRIFT_ALERT_CLOSED)

# A dependency (the state store, MLflow) went away or came back. `dependency.lost` is written when it
# happens if the store is up, else with `dependency.restored` when the store returns.
DEPENDENCY_LOST = "dependency.lost"
DEPENDENCY_RESTORED = "dependency.restored"

# `cltool fsck --repair` (or the daemon at start-up) put something right; the payload says what and why.
FSCK_REPAIRED = "fsck.repaired"

# `cltool serve`: started, swapped in a new champion version, or could not load one (it keeps serving
# the old one); `live.*`: the unlabeled monitors of served traffic (daemon/monitoring/live.py).
SERVE_STARTED = "serve.started"
SERVE_SWAPPED = "serve.swapped"
SERVE_LOAD_FAILED = "serve.load_failed"
LIVE_SCORED = "live.scored"
LIVE_EMBEDDING_SCORED = "live.embedding_scored"
LIVE_SURGE_OPENED = "live.surge_opened"
LIVE_SURGE_CLOSED = "live.surge_closed"
LIVE_EVENTS = (LIVE_SCORED, LIVE_EMBEDDING_SCORED, LIVE_SURGE_OPENED, LIVE_SURGE_CLOSED)

# Bookkeeping an operator does not need in the log (`cltool status` and `history --all` show it).
DEBUG = frozenset({CYCLE_PHASE})

# Events an operator must notice: logged at WARNING (every event is logged once, when it is written).
WARNINGS = frozenset({INGEST_QUARANTINED, CYCLE_FAILED, CYCLE_ABORTED, JOB_FAILED, JOB_MISSED, OBSERVE_FAILED,
                      ROLLBACK, DRIFT_ALERT_OPENED, DEPENDENCY_LOST, FSCK_REPAIRED, BATCHES_PARKED,
                      SERVE_LOAD_FAILED, LIVE_SURGE_OPENED})
