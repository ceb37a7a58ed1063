"""Read one labeled file and judge every row: pure, no filesystem writes, no state.

Each accepted row gets a stable split from a hash of its normalised text (train 80 / val 10 /
test 10), so the same sentence lands in the same split whichever batch brings it, and no text can
leak from train into a test set.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

REQUIRED = ("text", "label")
OPTIONAL = ("id", "published_at", "source")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
SPLIT_EDGES = ((80, "train"), (90, "val"), (100, "test"))
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class RowError:
    row: int  # 1-based data row (CSV header excluded; JSONL line number)
    column: str
    value: str
    expected: str

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class Judgement:
    """What one file holds: accepted rows, bad rows, and a file-level problem if any."""

    rows_in_file: int = 0
    accepted: pd.DataFrame = field(default_factory=pd.DataFrame)
    errors: list[RowError] = field(default_factory=list)
    duplicates: int = 0
    file_problem: str | None = None


def normalise(text: str) -> str:
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()


def text_hash(text: str) -> str:
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()


def split_of(text_digest: str) -> str:
    bucket = int(text_digest[:8], 16) % 100
    return next(name for edge, name in SPLIT_EDGES if bucket < edge)


def file_checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_table(path: Path) -> tuple[pd.DataFrame | None, list[RowError], str | None]:
    """The file as a frame of strings, JSONL lines that do not parse, and a file-level problem."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        return None, [], f"unsupported file type '{path.suffix}': expected one of {sorted(FORMATS)}"
    try:
        if kind == "csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
            return frame, [], None
        if kind == "parquet":
            return pd.read_parquet(path).astype(object).where(lambda f: f.notna(), ""), [], None
        return _read_jsonl(path)
    except UnicodeDecodeError as exc:
        return None, [], f"not UTF-8 text (byte {exc.start}): re-encode the file as UTF-8"
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError) as exc:
        return None, [], f"cannot read as {kind}: {str(exc).strip().splitlines()[0]}"


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, list[RowError], str | None]:
    records, errors = [], []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(RowError(number, "(line)", line[:80], f"a JSON object ({exc.msg})"))
                continue
            if not isinstance(record, dict):
                errors.append(RowError(number, "(line)", line[:80], "a JSON object"))
                continue
            records.append(dict(record, __row__=number))
    # dtype=object: an int id next to a missing one must stay "7", not become the float 7.0.
    frame = pd.DataFrame(records, dtype=object) if records else pd.DataFrame(columns=["__row__"])
    return frame, errors, None


def judge(path: Path, labels: list[str], aliases: dict[str, str], max_text_chars: int,
          known_hashes: set[str] | None = None) -> Judgement:
    """Validate every row of `path`; `known_hashes` are rows already in the ledger (dropped as duplicates)."""
    frame, errors, problem = read_table(path)
    if problem is not None:
        return Judgement(file_problem=problem)
    assert frame is not None
    row_numbers = frame.pop("__row__").tolist() if "__row__" in frame else list(range(1, len(frame) + 1))
    judgement = Judgement(rows_in_file=len(frame) + len(errors), errors=errors)
    missing = [col for col in REQUIRED if col not in frame.columns]
    if missing:
        judgement.file_problem = f"missing column(s) {missing}: found {list(frame.columns)}; required {list(REQUIRED)}"
        return judgement
    if judgement.rows_in_file == 0:
        judgement.file_problem = "the file has no rows"
        return judgement
    lookup = {label.lower(): label for label in labels}
    lookup.update({alias.strip().lower(): target for alias, target in aliases.items()})
    allowed = f"one of {labels}" + (f" or an alias {sorted(aliases)}" if aliases else "")

    kept, seen = [], set(known_hashes or ())
    for number, record in zip(row_numbers, frame.to_dict("records")):
        text, raw_label = record.get("text"), record.get("label")
        text = "" if text is None or (isinstance(text, float) and pd.isna(text)) else str(text)
        if not text.strip():
            judgement.errors.append(RowError(number, "text", text, "non-empty text"))
            continue
        if len(text) > max_text_chars:
            judgement.errors.append(RowError(number, "text", text[:80] + "…", f"at most {max_text_chars} characters"))
            continue
        label = lookup.get(str(raw_label).strip().lower()) if raw_label is not None else None
        if label is None:
            judgement.errors.append(RowError(number, "label", str(raw_label), allowed))
            continue
        digest = text_hash(text)
        row_hash = hashlib.sha256(f"{digest}\x1f{label}".encode()).hexdigest()
        if row_hash in seen:
            judgement.duplicates += 1
            continue
        seen.add(row_hash)
        kept.append({"row_hash": row_hash, "text": text, "label": label, "split": split_of(digest),
                     **{col: _optional(record.get(col)) for col in OPTIONAL}})
    judgement.accepted = pd.DataFrame(kept, columns=["row_hash", "text", "label", "split", *OPTIONAL])
    judgement.errors.sort(key=lambda error: error.row)
    return judgement


def _optional(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value == "":
        return None
    return str(value)
