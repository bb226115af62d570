"""Reading input files without losing a row: every row that cannot be read is kept as a
rejection with the reason (bad encoding, ragged CSV row, broken JSON), never skipped.

CSV goes through Python's csv module on purpose: it reports ragged rows and undecodable bytes
row by row, where a vectorised reader would fail the whole file or repair it silently.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from keelwork.errors import KeelworkError, Violation

FORMATS = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_SURROGATE = re.compile("[\udc80-\udcff]")
_PARQUET_MAGIC = b"PAR1"


class InputError(KeelworkError):
    """The file as a whole cannot be read: empty, not its format, no header."""

    code = "batch.input"
    status = 400


@dataclass(slots=True)
class Table:
    """What a file held: readable rows (a frame or records) and the rows that could not be read."""

    fmt: str
    n_rows: int
    frame: pl.DataFrame | None = None
    records: list[Any] | None = None
    text_cells: bool = False
    unreadable: dict[int, list[Violation]] = field(default_factory=dict)
    raw: dict[int, str] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)


def detect_format(path: Path, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in set(FORMATS.values()):
            raise InputError(f"unknown format {fmt!r}; use csv, jsonl or parquet")
        return fmt
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise InputError(
            f"{path}: cannot tell the format from {path.suffix!r}; name it .csv, .jsonl or "
            ".parquet, or pass --format"
        )
    return found


def read_table(path: Path, fmt: str | None = None) -> Table:
    """Read ``path``; whole-file problems raise InputError, row problems are kept per row."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    kind = detect_format(path, fmt)
    with path.open("rb") as f:
        head = f.read(4)
    if not head:
        raise InputError(f"{path}: the file is empty")
    if kind == "parquet":
        return _read_parquet(path, head)
    if head == _PARQUET_MAGIC:
        raise InputError(f"{path}: this is a Parquet file, not {kind.upper()}; rename it .parquet")
    data = path.read_bytes()
    if b"\x00" in data[:8192] and kind == "csv":
        raise InputError(f"{path}: binary content (NUL bytes), not CSV text")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return _read_csv(path, data) if kind == "csv" else _read_jsonl(data)


def _read_parquet(path: Path, head: bytes) -> Table:
    if head != _PARQUET_MAGIC:
        raise InputError(
            f"{path}: not a Parquet file (it starts with {head!r}, not b'PAR1'); check the "
            "extension"
        )
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:
        raise InputError(f"{path}: unreadable Parquet: {exc}") from None
    return Table("parquet", frame.height, frame=frame, columns=frame.columns)


def _read_csv(path: Path, data: bytes) -> Table:
    text = data.decode("utf-8", errors="surrogateescape")
    if not text.strip():
        raise InputError(f"{path}: the file is empty")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # 50 MB cells are data, not errors
    reader = csv.reader(io.StringIO(text, newline=""), strict=False)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise InputError(f"{path}: unreadable CSV header: {exc}") from None
    header = [h.strip() for h in header]
    if not any(header):
        raise InputError(f"{path}: the first line must be a header naming the columns")
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise InputError(f"{path}: duplicate column names in the header: {dupes}")
    if any(_SURROGATE.search(h) for h in header):
        raise InputError(f"{path}: the header is not UTF-8")
    suspicious = _SURROGATE.search(text) is not None
    cols: list[list[str | None]] = [[] for _ in header]
    table = Table("csv", 0, text_cells=True, columns=header)
    i = -1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            i += 1
            _unreadable(table, i, "csv", str(exc), "")
            _pad(cols)
            continue
        if not row:  # a blank line is not a row
            continue
        i += 1
        if len(row) != len(header):
            _unreadable(
                table, i, "ragged", f"{len(row)} cells; the header has {len(header)}", ",".join(row)
            )
            _pad(cols)
            continue
        if suspicious and any(_SURROGATE.search(c) for c in row):
            bad_col = next(j for j, c in enumerate(row) if _SURROGATE.search(c))
            _unreadable(
                table,
                i,
                "utf-8",
                f"column {header[bad_col]!r} holds bytes that are not UTF-8",
                ",".join(row),
            )
            _pad(cols)
            continue
        for col, cell in zip(cols, row, strict=True):
            col.append(cell if cell != "" else None)
    table.n_rows = i + 1
    table.frame = pl.DataFrame(
        {h: pl.Series(h, c, dtype=pl.String) for h, c in zip(header, cols, strict=True)}
    )
    return table


def _pad(cols: list[list[str | None]]) -> None:
    for col in cols:
        col.append(None)


def _unreadable(table: Table, i: int, rule: str, message: str, raw: str) -> None:
    table.unreadable[i] = [Violation("$", rule, None, message)]
    # undecodable bytes are kept visible as \xNN, exactly as they were in the file
    table.raw[i] = raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")[
        :65536
    ]


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _read_jsonl(data: bytes) -> Table:
    table = Table("jsonl", 0)
    records: list[Any] = []
    i = -1
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        i += 1
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            _unreadable(
                table,
                i,
                "utf-8",
                f"byte 0x{line[exc.start]:02x} at offset {exc.start} is not UTF-8",
                line.decode("utf-8", "backslashreplace"),
            )
            records.append(None)
            continue
        try:
            value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
        except _DuplicateKey as exc:
            _unreadable(table, i, "duplicate_key", f"key {exc} appears twice", text)
            records.append(None)
            continue
        except RecursionError:
            _unreadable(table, i, "json_depth", "nested too deeply", text[:1000])
            records.append(None)
            continue
        except ValueError as exc:
            _unreadable(table, i, "json", str(exc)[:200], text)
            records.append(None)
            continue
        records.append(value)
    if i < 0:
        raise InputError("the file holds no rows")
    table.n_rows = i + 1
    table.records = records
    keys: dict[str, None] = {}
    for r in records:
        if isinstance(r, dict):
            keys.update(dict.fromkeys(r))
    table.columns = list(keys)
    return table
