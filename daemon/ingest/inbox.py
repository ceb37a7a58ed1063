"""The inbox: claim files atomically, validate, record accepted rows, quarantine the rest.

A file moves inbox/ -> inbox/.claimed/ (atomic rename) -> its rows are written as Parquet -> the
batch is recorded in the ledger (one transaction) -> the file moves to archive/. A crash at any
point is repaired by `recover()`: a claimed file already in the ledger is archived, one that is not
goes back to the inbox. So a batch is either in the ledger or in the inbox, never both, never lost.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from daemon import events
from daemon.config import Settings
from daemon.ingest.validate import FORMATS, Judgement, file_checksum, judge
from daemon.state.store import Batch, StateStore, utcnow

log = logging.getLogger(__name__)

CLAIMED = ".claimed"
MAX_ERRORS_IN_REASON = 50


@dataclass(frozen=True)
class IngestResult:
    file: str
    status: str  # "accepted" | "duplicate" | "quarantined"
    batch: Batch | None = None
    reason: str = ""
    quarantine_path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "status": self.status, "reason": self.reason,
                "batch": self.batch.to_dict() if self.batch else None,
                "quarantine_path": str(self.quarantine_path) if self.quarantine_path else None}


class Inbox:
    def __init__(self, settings: Settings, store: StateStore, clock: Callable[[], datetime] = utcnow,
                 settle_seconds: float = 1.0, actor: str = "daemon") -> None:
        self.settings, self.store, self.clock, self.actor = settings, store, clock, actor
        self.settle_seconds = settle_seconds  # a file younger than this may still be being written
        self.claimed_dir = settings.inbox_dir / CLAIMED
        for folder in (settings.inbox_dir, self.claimed_dir, settings.quarantine_dir,
                       settings.archive_dir):
            folder.mkdir(parents=True, exist_ok=True)

    # -- finding and claiming -----------------------------------------------------------------
    def waiting(self) -> list[Path]:
        """Files ready to take, oldest first; hidden, temporary and still-growing files wait."""
        now = time.time()
        ready = []
        for path in self.settings.inbox_dir.iterdir():
            if not path.is_file() or path.name.startswith(".") or path.suffix.lower() in {".tmp", ".part"}:
                continue
            if now - path.stat().st_mtime < self.settle_seconds:
                continue
            ready.append(path)
        return sorted(ready, key=lambda p: (p.stat().st_mtime, p.name))

    def claim(self, path: Path) -> Path | None:
        target = self.claimed_dir / path.name
        try:
            os.replace(path, target)  # atomic: of two pollers, exactly one gets the file
        except FileNotFoundError:
            return None
        return target

    def take_all(self) -> list[IngestResult]:
        results = []
        for path in self.waiting():
            claimed = self.claim(path)
            if claimed is not None:
                results.append(self.process(claimed))
        return results

    def ingest_copy(self, source: Path) -> IngestResult:
        """`cltool ingest FILE`: the user's file stays where it is; a copy goes through the inbox."""
        if not source.is_file():
            raise FileNotFoundError(f"{source}: no such file")
        staging = self.claimed_dir / f".{source.name}.{os.getpid()}.tmp"
        shutil.copyfile(source, staging)
        target = self.claimed_dir / source.name
        os.replace(staging, target)
        return self.process(target)

    # -- processing ----------------------------------------------------------------------------
    def process(self, claimed: Path) -> IngestResult:
        checksum = file_checksum(claimed)
        existing = self.store.batch_by_checksum(checksum)
        if existing is not None:
            self._archive(claimed, f"duplicates/{self._stamp()}-{claimed.name}")
            reason = f"same bytes as batch {existing.batch_id} ({existing.file_name}); not trained on twice"
            self.store.append(events.INGEST_DUPLICATE, reason, batch_id=existing.batch_id, actor=self.actor,
                              payload={"file": claimed.name})
            return IngestResult(claimed.name, "duplicate", existing, reason)

        settings = self.settings
        judgement = judge(claimed, settings.labels, settings.label_aliases, settings.inbox.max_text_chars)
        if judgement.file_problem is None and len(judgement.accepted):
            known = self.store.known_hashes(judgement.accepted["row_hash"].tolist())
            if known:
                before = len(judgement.accepted)
                judgement.accepted = judgement.accepted[~judgement.accepted["row_hash"].isin(known)]
                judgement.duplicates += before - len(judgement.accepted)
        reject = judgement.file_problem or (
            judgement.errors and settings.inbox.bad_rows == "reject_file" and _summary(judgement))
        if reject:
            return self._quarantine(claimed, checksum, judgement, str(reject))
        if judgement.accepted.empty:  # every row is already recorded: nothing to learn, nothing lost
            self._archive(claimed, f"duplicates/{self._stamp()}-{claimed.name}")
            reason = f"no new rows: all {judgement.duplicates} rows are already recorded"
            self.store.append(events.INGEST_DUPLICATE, reason, actor=self.actor,
                              payload={"file": claimed.name, "checksum": checksum})
            return IngestResult(claimed.name, "duplicate", None, reason)
        return self._record(claimed, checksum, judgement)

    def _record(self, claimed: Path, checksum: str, judgement: Judgement) -> IngestResult:
        batch_id = f"{self._stamp()}-{checksum[:8]}"
        rows = judgement.accepted
        splits = rows["split"].value_counts().to_dict()
        record = {
            "batch_id": batch_id, "file_name": claimed.name, "checksum": checksum, "received_at": self.clock(),
            "rows_in_file": judgement.rows_in_file, "rows_accepted": len(rows), "rows_bad": len(judgement.errors),
            "rows_duplicate": judgement.duplicates, "n_train": int(splits.get("train", 0)),
            "n_val": int(splits.get("val", 0)), "n_test": int(splits.get("test", 0)),
            "label_counts": {k: int(v) for k, v in rows["label"].value_counts().sort_index().items()},
        }
        batch = self.store.add_batch(record, rows.astype(object).where(rows.notna(), None).to_dict("records"))
        if judgement.errors:  # drop_rows policy: the dropped rows are kept, with their reasons
            self._write_reason(self.settings.quarantine_dir / f"{batch_id}-{claimed.name}.dropped", claimed.name,
                               checksum, f"{len(judgement.errors)} bad rows dropped (inbox.bad_rows = drop_rows)",
                               judgement)
        self._archive(claimed, f"{batch_id}-{claimed.name}")
        summary = (f"{batch.rows_accepted} rows accepted (train {batch.n_train}, val {batch.n_val}, "
                   f"test {batch.n_test}); {batch.rows_duplicate} duplicates, {batch.rows_bad} bad")
        self.store.append(events.INGEST_ACCEPTED, summary, batch_id=batch_id, actor=self.actor,
                          payload={"file": claimed.name, "checksum": checksum, "label_counts": batch.label_counts})
        return IngestResult(claimed.name, "accepted", batch, summary)

    def _quarantine(self, claimed: Path, checksum: str, judgement: Judgement, reason: str) -> IngestResult:
        target = self.settings.quarantine_dir / f"{self._stamp()}-{claimed.name}"
        self._write_reason(target, claimed.name, checksum, reason, judgement)
        os.replace(claimed, target)  # the reason file is written first: a quarantined file always has one
        self.store.append(events.INGEST_QUARANTINED, reason, actor=self.actor, payload={"file": claimed.name, "checksum": checksum,
                                                                  "path": str(target)})
        return IngestResult(claimed.name, "quarantined", None, reason, target)

    def _write_reason(self, target: Path, name: str, checksum: str, reason: str, judgement: Judgement) -> None:
        body = {
            "file": name, "checksum": checksum, "at": self.clock().isoformat(), "reason": reason,
            "policy": self.settings.inbox.bad_rows, "rows_in_file": judgement.rows_in_file,
            "bad_rows": len(judgement.errors),
            "errors": [error.to_dict() for error in judgement.errors[:MAX_ERRORS_IN_REASON]],
            "errors_truncated": max(0, len(judgement.errors) - MAX_ERRORS_IN_REASON),
            "expected": {"formats": sorted(FORMATS), "columns": ["text", "label", "id?", "published_at?", "source?"],
                         "labels": self.settings.labels, "label_aliases": self.settings.label_aliases},
        }
        partial = target.parent / f".{target.name}.reason.json.tmp"
        partial.write_text(json.dumps(body, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(partial, Path(f"{target}.reason.json"))

    def _archive(self, claimed: Path, relative: str) -> None:
        target = self.settings.archive_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(claimed, target)

    def _stamp(self) -> str:
        return self.clock().strftime("%Y%m%dT%H%M%S%f")

    # -- crash repair --------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Finish or undo whatever a crash interrupted; returns what was done, one line each."""
        done = []
        for path in sorted(self.claimed_dir.iterdir()):
            if path.name.startswith("."):  # a half-copied `cltool ingest` staging file
                path.unlink(missing_ok=True)
                continue
            batch = self.store.batch_by_checksum(file_checksum(path))
            if batch is not None:
                self._archive(path, f"{batch.batch_id}-{path.name}")
                done.append(f"{path.name}: already recorded as {batch.batch_id}, archived")
            else:
                back = self.settings.inbox_dir / path.name
                while back.exists():
                    back = back.with_name(f"{back.stem}.again{back.suffix}")
                os.replace(path, back)
                done.append(f"{path.name}: not recorded, returned to the inbox")
        for line in done:
            log.warning("recover: %s", line)
        return done


def _summary(judgement: Judgement) -> str:
    first = judgement.errors[0]
    return (f"{len(judgement.errors)} of {judgement.rows_in_file} rows are bad (first: row {first.row}, "
            f"column '{first.column}': got {first.value!r}, expected {first.expected})")
