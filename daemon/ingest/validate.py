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

import numpy as np
import pandas as pd

REQUIRED = ("text", "label")
OPTIONAL = ("id", "published_at", "source")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
COMPRESSED = {".gz", ".zip", ".bz2", ".xz", ".zst", ".7z", ".tgz"}
SPLIT_EDGES = ((80, "train"), (90, "val"), (100, "test"))
# An accepted row: what the state store keeps, and the row's number in its file (for reasons only).
ACCEPTED_COLUMNS = ["row_hash", "text", "label", "split", *OPTIONAL, "file_row"]
_SPACE = re.compile(r"\s+")
# C0 control characters but the whitespace ones (tab, newlines, vertical tab, form feed: they normalise to
# a space): NUL, which PostgreSQL cannot store in text, and escapes that would reach a terminal. C1
# characters (U+0080-U+009F) are let through: they are what mojibake is made of ("â€\x9d" for a
# quote mark), and real tweets carry it (28 of the Twitter set's 9,543 rows). Also lone surrogates (a
# JSON "\ud800" decodes to one; it cannot be stored as UTF-8).
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# The first bytes of files that are not UTF-8 text, whatever their name says.
_MAGIC = {b"\x1f\x8b": "gzip-compressed", b"PK\x03\x04": "a zip archive", b"BZh": "bzip2-compressed",
          b"\xfd7zXZ": "xz-compressed", b"\x28\xb5\x2f\xfd": "zstd-compressed",
          b"\xff\xfe": "UTF-16 text", b"\xfe\xff": "UTF-16 text"}


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
    suffix = path.suffix.lower()
    kind = FORMATS.get(suffix)
    if kind is None:
        hint = ": decompress it first" if suffix in COMPRESSED else ""
        return None, [], f"unsupported file type '{path.suffix}'{hint}: expected one of {sorted(FORMATS)}"
    if kind != "parquet":
        with path.open("rb") as handle:
            head = handle.read(8)
        what = next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)
        if what is not None:
            return None, [], f"the file is {what}, not UTF-8 {kind}: convert it first"
    try:
        if kind == "csv":
            # utf-8-sig: a byte-order mark (Excel writes one) is not part of the first column's name.
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
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
    with path.open(encoding="utf-8-sig") as handle:
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
          known_hashes: set[str] | None = None, conflicts: str = "reject") -> Judgement:
    """Validate every row of `path`; `known_hashes` are rows already in the ledger (dropped as duplicates).
    `conflicts` ("reject" | "allow"): whether the same text with two labels in the file makes those rows bad."""
    frame, errors, problem = read_table(path)
    if problem is not None:
        return Judgement(file_problem=problem)
    assert frame is not None
    row_numbers = frame.pop("__row__").tolist() if "__row__" in frame else list(range(1, len(frame) + 1))
    judgement = Judgement(rows_in_file=len(frame) + len(errors), errors=errors)
    missing = [col for col in REQUIRED if col not in frame.columns]
    if missing:
        judgement.file_problem = (f"missing column(s) {missing}: found {list(frame.columns)}; required "
                                  f"{list(REQUIRED)}{_delimiter_hint(frame.columns)}")
        return judgement
    if judgement.rows_in_file == 0:
        judgement.file_problem = "the file has no rows"
        return judgement
    lookup = {label.lower(): label for label in labels}
    lookup.update({alias.strip().lower(): target for alias, target in aliases.items()})
    allowed = f"one of {labels}" + (f" or an alias {sorted(aliases)}" if aliases else "")

    kept, seen, numbers = [], set(known_hashes or ()), []
    labels_of: dict[str, dict[str, int]] = {}  # text digest -> {label: first row with it}
    for number, record in zip(row_numbers, frame.to_dict("records")):
        problem = _row_problem(record, max_text_chars)
        if problem is not None:
            judgement.errors.append(RowError(number, *problem))
            continue
        text, raw_label = record.get("text") or "", record.get("label")
        label = lookup.get(str(raw_label).strip().lower()) if raw_label is not None else None
        if label is None:
            judgement.errors.append(RowError(number, "label", str(raw_label), allowed))
            continue
        digest = text_hash(text)
        row_hash = label_hash(digest, label)
        if row_hash in seen:
            judgement.duplicates += 1
            continue
        seen.add(row_hash)
        labels_of.setdefault(digest, {}).setdefault(label, number)
        numbers.append(number)
        kept.append({"row_hash": row_hash, "text": text, "label": label, "split": split_of(digest),
                     **{col: _optional(record.get(col)) for col in OPTIONAL}, "file_row": number})
    if conflicts == "reject":
        kept = _drop_conflicts(kept, numbers, labels_of, judgement)
    judgement.accepted = pd.DataFrame(kept, columns=ACCEPTED_COLUMNS)
    judgement.errors.sort(key=lambda error: error.row)
    return judgement


def label_hash(text_digest: str, label: str) -> str:
    """A row's identity: its normalised text and its label."""
    return hashlib.sha256(f"{text_digest}\x1f{label}".encode()).hexdigest()


def other_labels(text: str, label: str, labels: list[str]) -> dict[str, str]:
    """{row hash: label} of the same text under each other label: a recorded one is a conflict."""
    digest = text_hash(text)
    return {label_hash(digest, other): other for other in labels if other != label}


def conflict_expected(other_label: str, where: str) -> str:
    return (f"one label per text: {where} has the same text labelled '{other_label}' "
            f"(inbox.conflicting_labels = reject)")


def _drop_conflicts(kept: list[dict], numbers: list[int], labels_of: dict[str, dict[str, int]],
                    judgement: Judgement) -> list[dict]:
    """Every row of a text that the file labels in two ways becomes a bad row, naming the other row."""
    clean = []
    for number, row in zip(numbers, kept):
        seen_as = labels_of[text_hash(row["text"])]
        others = {label: first for label, first in seen_as.items() if label != row["label"]}
        if not others:
            clean.append(row)
            continue
        label, first = next(iter(others.items()))
        judgement.errors.append(RowError(number, "label", row["label"], conflict_expected(label, f"row {first}")))
    return clean


def _row_problem(record: dict[str, Any], max_text_chars: int) -> tuple[str, str, str] | None:
    """(column, value, expected) of the first thing wrong with a row's text and column types, else None."""
    text = record.get("text")
    if text is None or (isinstance(text, float) and pd.isna(text)):
        text = ""
    if not isinstance(text, str):
        return "text", _shown(text), f"a string, not {_kind(text)}"
    if not text.strip():
        return "text", text, "non-empty text"
    if len(text) > max_text_chars:
        return "text", text[:80] + "…", f"at most {max_text_chars} characters"
    for pattern, what in ((_CONTROL, "control character"), (_SURROGATE, "lone surrogate")):
        found = pattern.search(text)
        if found:
            return ("text", _shown(text), f"text without control characters or lone surrogates "
                                          f"(a {what} U+{ord(found.group()):04X} at character {found.start() + 1})")
    label = record.get("label")
    if label is not None and not isinstance(label, (str, int)) or isinstance(label, (bool, np.bool_)):
        return "label", _shown(label), f"a string, not {_kind(label)}"
    for column in OPTIONAL:
        value = record.get(column)
        if isinstance(value, (dict, list, tuple, bool, np.ndarray, np.bool_)):
            return column, _shown(value), f"a string or a number, not {_kind(value)}"
        if isinstance(value, str) and (_CONTROL.search(value) or _SURROGATE.search(value)):
            return column, _shown(value), "a value without control characters or lone surrogates"
    return None


def _kind(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "a list"
    if isinstance(value, (int, float, np.number)):
        return "a number"
    return f"a {type(value).__name__}"


def _shown(value: Any) -> str:
    """A bad value as the reason file shows it: printable, at most 80 characters."""
    text = json.dumps(value, ensure_ascii=True, default=str) if not isinstance(value, str) else value
    text = text.encode("unicode_escape").decode("ascii") if _CONTROL.search(text) or _SURROGATE.search(text) else text
    return text if len(text) <= 80 else text[:80] + "…"


def _delimiter_hint(columns) -> str:
    header = ",".join(str(c) for c in columns)
    for delimiter, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
        if delimiter in header and "text" in header.lower():
            return f" (the header looks {name}-separated: cltool reads comma-separated CSV)"
    return ""


def _optional(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value == "":
        return None
    if hasattr(value, "isoformat"):  # a Parquet timestamp
        return value.isoformat()
    return str(value)
