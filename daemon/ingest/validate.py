"""Read one labeled file and judge every row: pure, no filesystem writes, no state.

Each accepted row gets a stable split from a hash of its normalised text (train 80 / val 10 /
test 10), so the same sentence lands in the same split whichever batch brings it, and no text can
leak from train into a test set.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # pandas loads with the first file read: `cltool status` imports this module without it
    import pandas as pd


REQUIRED = ("text", "label")
OPTIONAL = ("id", "published_at", "source")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
COMPRESSED = {".gz", ".zip", ".bz2", ".xz", ".zst", ".7z", ".tgz"}
SPLIT_EDGES = ((80, "train"), (90, "val"), (100, "test"))
# An accepted row: what the state store keeps, and the row's number in its file (for reasons only).
ACCEPTED_COLUMNS = ["row_hash", "text", "label", "split", *OPTIONAL, "file_row"]
CHUNK_ROWS = 50_000  # rows read at a time
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
    accepted: pd.DataFrame = field(default_factory=lambda: _pandas().DataFrame())
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


class FileProblem(Exception):
    """A file that cannot be read as a table (raised while its chunks are read, even after the first)."""


def read_chunks(path: Path) -> Iterator[tuple[pd.DataFrame, list[RowError]]]:
    """The file as frames of at most CHUNK_ROWS rows (so a large file is read in bounded memory), each with
    the JSONL lines of its span that do not parse; a JSONL frame carries each row's line in `__row__`.
    At least one frame (maybe empty), so its columns can be checked. Raises FileProblem."""
    pd = _pandas()
    suffix = path.suffix.lower()
    kind = FORMATS.get(suffix)
    if kind is None:
        hint = ": decompress it first" if suffix in COMPRESSED else ""
        raise FileProblem(f"unsupported file type '{path.suffix}'{hint}: expected one of {sorted(FORMATS)}")
    if kind != "parquet":
        with path.open("rb") as handle:
            head = handle.read(8)
        what = next((name for magic, name in _MAGIC.items() if head.startswith(magic)), None)
        if what is not None:
            raise FileProblem(f"the file is {what}, not UTF-8 {kind}: convert it first")
    try:
        if kind == "csv":
            # utf-8-sig: a byte-order mark (Excel writes one) is not part of the first column's name.
            options = {"dtype": str, "keep_default_na": False, "encoding": "utf-8-sig"}
            any_rows = False
            with pd.read_csv(path, chunksize=CHUNK_ROWS, **options) as reader:
                for frame in reader:
                    any_rows = True
                    yield frame, []
            if not any_rows:  # a header alone: its columns, no rows
                yield pd.read_csv(path, nrows=0, **options), []
        elif kind == "parquet":
            import pyarrow.parquet as pq

            table = pq.ParquetFile(path)
            yielded = False
            for chunk in table.iter_batches(batch_size=CHUNK_ROWS):
                yielded = True
                yield chunk.to_pandas().astype(object).where(lambda f: f.notna(), ""), []
            if not yielded:
                yield table.schema_arrow.empty_table().to_pandas(), []
        else:
            yield from _read_jsonl(path)
    except UnicodeDecodeError as exc:
        raise FileProblem(f"not UTF-8 text (byte {exc.start}): re-encode the file as UTF-8") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError) as exc:
        raise FileProblem(f"cannot read as {kind}: {str(exc).strip().splitlines()[0]}") from None


def _read_jsonl(path: Path) -> Iterator[tuple[pd.DataFrame, list[RowError]]]:
    records, errors = [], []

    def frame() -> pd.DataFrame:
        pd = _pandas()
        # dtype=object: an int id next to a missing one must stay "7", not become the float 7.0.
        return pd.DataFrame(records, dtype=object) if records else pd.DataFrame(columns=["__row__"])

    yielded = False
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
            if len(records) == CHUNK_ROWS:
                yield frame(), errors
                records, errors, yielded = [], [], True
    if records or errors or not yielded:
        yield frame(), errors


def judge(path: Path, labels: list[str], aliases: dict[str, str], max_text_chars: int,
          known_hashes: set[str] | None = None, conflicts: str = "reject") -> Judgement:
    """Validate every row of `path`, a chunk at a time; `known_hashes` are rows already in the ledger (dropped
    as duplicates). `conflicts` ("reject" | "allow"): whether the same text with two labels in the file
    makes those rows bad."""
    judgement = Judgement()
    rows = _Accepted(labels, aliases, max_text_chars, known_hashes, judgement)
    offset = 0  # CSV and Parquet rows are numbered by position (the header excluded)
    try:
        for index, (frame, errors) in enumerate(read_chunks(path)):
            numbers = (frame.pop("__row__").tolist() if "__row__" in frame else
                       list(range(offset + 1, offset + len(frame) + 1)))
            offset += len(frame)
            judgement.rows_in_file += len(frame) + len(errors)
            judgement.errors.extend(errors)
            if index == 0:
                missing = [col for col in REQUIRED if col not in frame.columns]
                if missing:
                    judgement.file_problem = (f"missing column(s) {missing}: found {list(frame.columns)}; required "
                                              f"{list(REQUIRED)}{_delimiter_hint(frame.columns)}")
                    return judgement
            rows.add(frame, numbers)
    except FileProblem as exc:
        return Judgement(file_problem=str(exc))
    if judgement.rows_in_file == 0:
        judgement.file_problem = "the file has no rows"
        return judgement
    judgement.accepted = rows.frame(conflicts == "reject")
    judgement.errors.sort(key=lambda error: error.row)
    return judgement


class _Accepted:
    """The accepted rows of one file, as column lists (not a dict per row: a file of a million rows stays a
    few hundred MB, bench/ingest_memory.py), with what duplicates and conflicts need across chunks."""

    def __init__(self, labels: list[str], aliases: dict[str, str], max_text_chars: int,
                 known_hashes: set[str] | None, judgement: Judgement) -> None:
        self.lookup = {label.lower(): label for label in labels}
        self.lookup.update({alias.strip().lower(): target for alias, target in aliases.items()})
        self.allowed = f"one of {labels}" + (f" or an alias {sorted(aliases)}" if aliases else "")
        self.max_text_chars, self.judgement = max_text_chars, judgement
        self.kept: dict[str, list] = {name: [] for name in ACCEPTED_COLUMNS}
        self.digests: list[str] = []
        self.seen = set(known_hashes or ())
        self.first_label: dict[str, str] = {}  # text digest -> the first label the file gives it
        self.conflicted: set[str] = set()  # digests the file labels in two ways

    def add(self, frame: pd.DataFrame, row_numbers: list[int]) -> None:
        judgement, kept = self.judgement, self.kept
        columns = list(frame.columns)
        for number, values in zip(row_numbers, frame.itertuples(index=False, name=None)):
            record = dict(zip(columns, values))
            problem = _row_problem(record, self.max_text_chars)
            if problem is not None:
                judgement.errors.append(RowError(number, *problem))
                continue
            text, raw_label = record.get("text") or "", record.get("label")
            label = self.lookup.get(str(raw_label).strip().lower()) if raw_label is not None else None
            if label is None:
                judgement.errors.append(RowError(number, "label", str(raw_label), self.allowed))
                continue
            digest = text_hash(text)
            row_hash = label_hash(digest, label)
            if row_hash in self.seen:
                judgement.duplicates += 1
                continue
            self.seen.add(row_hash)
            if self.first_label.setdefault(digest, label) != label:
                self.conflicted.add(digest)
            self.digests.append(digest)
            for name, value in (("row_hash", row_hash), ("text", text), ("label", label), ("split", split_of(digest)),
                                *((col, _optional(record.get(col))) for col in OPTIONAL), ("file_row", number)):
                kept[name].append(value)

    def frame(self, reject_conflicts: bool) -> pd.DataFrame:
        accepted = _pandas().DataFrame(self.kept, columns=ACCEPTED_COLUMNS)
        if reject_conflicts and self.conflicted:
            accepted = _drop_conflicts(accepted, self.digests, self.conflicted, self.judgement)
        return accepted


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


def _drop_conflicts(accepted: pd.DataFrame, digests: list[str], conflicted: set[str],
                    judgement: Judgement) -> pd.DataFrame:
    """Every row of a text that the file labels in two ways becomes a bad row, naming the other row."""
    bad = [i for i, digest in enumerate(digests) if digest in conflicted]
    first_row: dict[str, dict[str, int]] = {}  # digest -> {label: its first row}, for the conflicted only
    for i in bad:
        first_row.setdefault(digests[i], {}).setdefault(accepted.at[i, "label"], int(accepted.at[i, "file_row"]))
    for i in bad:
        label = accepted.at[i, "label"]
        other, row = next((o, r) for o, r in first_row[digests[i]].items() if o != label)
        judgement.errors.append(RowError(int(accepted.at[i, "file_row"]), "label", label,
                                         conflict_expected(other, f"row {row}")))
    return accepted.drop(index=bad).reset_index(drop=True)


def _row_problem(record: dict[str, Any], max_text_chars: int) -> tuple[str, str, str] | None:
    """(column, value, expected) of the first thing wrong with a row's text and column types, else None."""
    text = record.get("text")
    if text is None or (isinstance(text, float) and math.isnan(text)):
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
    import numpy as np

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
    import numpy as np

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


def _pandas():  # noqa: ANN202 (the pandas module)
    import pandas

    return pandas


def _optional(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    if hasattr(value, "isoformat"):  # a Parquet timestamp
        return value.isoformat()
    return str(value)
