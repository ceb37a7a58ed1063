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
import stat
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from daemon import events, failpoints
from daemon.config import Settings
from daemon.ingest.validate import FORMATS, Judgement, RowError, conflict_expected, file_checksum, judge, other_labels
from daemon.state.store import Batch, StateStore, utcnow

log = logging.getLogger(__name__)

CLAIMED = ".claimed"
MAX_ERRORS_IN_REASON = 50
# File names are kept under this many bytes: quarantine and archive add a 40-byte stamp and ".reason.json",
# and most filesystems allow 255.
NAME_BYTES = 180
# Rows per query when a large file's rows are looked up in the store.
LOOKUP_CHUNK = 5000


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
        self._ignored: set[str] = set()  # entries that are not files, each logged once
        for folder in (settings.inbox_dir, self.claimed_dir, settings.quarantine_dir,
                       settings.archive_dir):
            folder.mkdir(parents=True, exist_ok=True)

    # -- finding and claiming -----------------------------------------------------------------
    def waiting(self) -> list[Path]:
        """Files ready to take, oldest first; hidden, temporary and still-growing files wait.

        Nothing is followed or opened here: a symbolic link is taken as a link (and refused when it is
        processed), and a directory, FIFO, socket or device is left where it is, with one warning."""
        now = time.time()
        ready = []
        for path in self.settings.inbox_dir.iterdir():
            if path.name.startswith(".") or path.suffix.lower() in {".tmp", ".part"}:
                continue
            try:
                info = path.lstat()
            except FileNotFoundError:  # taken by another poller meanwhile
                continue
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
                if path.name not in self._ignored:
                    self._ignored.add(path.name)
                    log.warning("inbox: %s is not a file (%s): left where it is, not read", path.name,
                                _kind_of(info.st_mode))
                continue
            if now - info.st_mtime < self.settle_seconds:
                continue
            ready.append((info.st_mtime, path.name, path))
        return [path for _mtime, _name, path in sorted(ready)]

    def claim(self, path: Path) -> Path | None:
        target = self.claimed_dir / safe_name(path.name)
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
                failpoints.hit("ingest.after_claim")
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
        started = time.time()
        if claimed.is_symlink():  # never followed: its target is neither read nor moved
            return self._quarantine(claimed, "", Judgement(), f"a symbolic link (to {os.readlink(claimed)!r}): "
                                    "cltool does not follow links out of the inbox; its target was not read")
        checksum = file_checksum(claimed)
        existing = self.store.batch_by_checksum(checksum)
        if existing is not None:
            self._archive(claimed, f"duplicates/{self._stamp()}-{claimed.name}")
            reason = f"same bytes as batch {existing.batch_id} ({existing.file_name}); not trained on twice"
            self.store.append(events.INGEST_DUPLICATE, reason, batch_id=existing.batch_id, actor=self.actor,
                              payload={"file": claimed.name})
            return IngestResult(claimed.name, "duplicate", existing, reason)

        settings = self.settings
        judgement = judge(claimed, settings.labels, settings.label_aliases, settings.inbox.max_text_chars,
                          conflicts=settings.inbox.conflicting_labels)
        if judgement.file_problem is None and len(judgement.accepted):
            known = self.store.known_hashes(judgement.accepted["row_hash"].tolist())
            if known:
                before = len(judgement.accepted)
                judgement.accepted = judgement.accepted[~judgement.accepted["row_hash"].isin(known)]
                judgement.duplicates += before - len(judgement.accepted)
            if settings.inbox.conflicting_labels == "reject":
                self._drop_conflicts_with_history(judgement)
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
        return self._record(claimed, checksum, judgement, started)

    def _drop_conflicts_with_history(self, judgement: Judgement) -> None:
        """A new row whose text is recorded with another label becomes a bad row (the recorded one stays)."""
        accepted = judgement.accepted
        bad: dict[int, str] = {}  # position in accepted -> the recorded label
        for start in range(0, len(accepted), LOOKUP_CHUNK):  # bounded memory on a large file
            alternates = {}  # row hash of (text, other label) -> (position, other label)
            part = accepted.iloc[start:start + LOOKUP_CHUNK]
            for position, (text, label) in enumerate(zip(part["text"], part["label"]), start=start):
                for row_hash, other in other_labels(text, label, self.settings.labels).items():
                    alternates[row_hash] = (position, other)
            for row_hash in self.store.known_hashes(list(alternates)):
                position, other = alternates[row_hash]
                bad.setdefault(position, other)
        if not bad:
            return
        for position, other in sorted(bad.items()):
            row = accepted.iloc[position]
            judgement.errors.append(RowError(int(row["file_row"]), "label", row["label"],
                                             conflict_expected(other, "a recorded row")))
        judgement.errors.sort(key=lambda error: error.row)
        judgement.accepted = accepted.drop(index=accepted.index[sorted(bad)])

    def _record(self, claimed: Path, checksum: str, judgement: Judgement, started: float) -> IngestResult:
        batch_id = f"{self._stamp()}-{checksum[:8]}"
        rows = judgement.accepted.drop(columns=["file_row"])
        splits = rows["split"].value_counts().to_dict()
        record = {
            "batch_id": batch_id, "file_name": claimed.name, "checksum": checksum, "received_at": self.clock(),
            "rows_in_file": judgement.rows_in_file, "rows_accepted": len(rows), "rows_bad": len(judgement.errors),
            "rows_duplicate": judgement.duplicates, "n_train": int(splits.get("train", 0)),
            "n_val": int(splits.get("val", 0)), "n_test": int(splits.get("test", 0)),
            "label_counts": {k: int(v) for k, v in rows["label"].value_counts().sort_index().items()},
        }
        if judgement.errors:  # drop_rows policy: the dropped rows are kept, with their reasons
            self._write_reason(self.settings.quarantine_dir / safe_name(f"{batch_id}-{claimed.name}.dropped"),
                               claimed.name, checksum,
                               f"{len(judgement.errors)} bad rows dropped (inbox.bad_rows = drop_rows)", judgement)
        summary = (f"{record['rows_accepted']} rows accepted (train {record['n_train']}, val {record['n_val']}, "
                   f"test {record['n_test']}); {record['rows_duplicate']} duplicates, {record['rows_bad']} bad")
        event = {"type": events.INGEST_ACCEPTED, "reason": summary, "actor": self.actor,
                 "payload": {"file": claimed.name, "checksum": checksum, "label_counts": record["label_counts"],
                             "timing": _timing(claimed, started)}}
        # The ledger row, the rows and the event are one transaction; the file is archived after it, and a
        # crash in between is finished by recover() (a claimed file already in the ledger is archived).
        batch = self.store.add_batch(record, _records(rows), event)
        failpoints.hit("ingest.after_record")
        self._archive(claimed, f"{batch_id}-{claimed.name}")
        failpoints.hit("ingest.after_archive")
        return IngestResult(claimed.name, "accepted", batch, summary)

    def _quarantine(self, claimed: Path, checksum: str, judgement: Judgement, reason: str) -> IngestResult:
        target = self.settings.quarantine_dir / safe_name(f"{self._stamp()}-{claimed.name}")
        self._write_reason(target, claimed.name, checksum, reason, judgement)
        os.replace(claimed, target)  # the reason file is written first: a quarantined file always has one
        failpoints.hit("ingest.before_quarantine_event")  # fsck --repair writes a missing event
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
        target = target.with_name(safe_name(target.name))
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
            if path.is_symlink():  # refused as in a normal pass, never followed
                self.process(path)
                done.append(f"{path.name}: a symbolic link, quarantined")
                continue
            if not path.is_file():
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


def _records(frame) -> Iterator[dict[str, Any]]:  # noqa: ANN001 (a DataFrame)
    """The frame's rows as dicts, one at a time (missing values as None), for a chunked insert."""
    columns = list(frame.columns)
    for values in frame.astype(object).itertuples(index=False, name=None):
        yield {name: (None if value is None or value != value else value) for name, value in zip(columns, values)}


def safe_name(name: str, limit: int = NAME_BYTES) -> str:
    """`name` as every folder and both stores can take it: UTF-8 (undecodable bytes spelled as \\xNN), no
    control characters, at most `limit` bytes with its suffix kept (the folders add a stamp to it)."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    text = "".join("_" if ord(ch) < 32 or 127 <= ord(ch) < 160 else ch for ch in text)
    if len(text.encode("utf-8")) <= limit:
        return text
    suffix = "".join(Path(text).suffixes[-2:])[-16:]
    stem = text[: len(text) - len(suffix)] if suffix else text
    while len((stem + "~" + suffix).encode("utf-8")) > limit:
        stem = stem[:-1]
    return stem + "~" + suffix


def _kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def _summary(judgement: Judgement) -> str:
    first = judgement.errors[0]
    return (f"{len(judgement.errors)} of {judgement.rows_in_file} rows are bad (first: row {first.row}, "
            f"column '{first.column}': got {first.value!r}, expected {first.expected})")


def _timing(claimed: Path, started: float) -> dict[str, float]:
    """When the file landed (its modification time: a claim renames it, which keeps it) and how long it
    waited in the inbox and took to validate and record: the first phases of `timing.*` (daemon/cycle/timing.py)."""
    landed = claimed.lstat().st_mtime
    return {"landed_at": landed, "waited_seconds": round(max(0.0, started - landed), 3),
            "ingest_seconds": round(time.time() - started, 3)}
