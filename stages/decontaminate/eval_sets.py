"""Evaluation items read from their files: one item per JSON line, CSV record or Parquet row, its text the
configured fields joined by line breaks.

A file is a local path or a URI (http(s)://, s3://, gs://, file://), opened as the run's input files are
(`pipeline.io.ranged.open_input`); JSON lines and CSV may be gzip-compressed (told by gzip's first bytes, whatever
the name). The format is the name's, a `.gz` aside: `.jsonl`, `.ndjson` or `.json` (JSON lines, as the run's
readers take them), `.csv` (a header row names the fields) or `.parquet`. A field's value is a string, a number or
a list of them (a multiple-choice item's options), one line each.

Every problem is an `EvalFileError` naming the file and the line (the row, in Parquet): a line that is not a JSON
object, a field the item lacks or holds null, an item whose text is empty, a file that cannot be read.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from typing import BinaryIO, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io.gzip_members import is_gzip
from pipeline.io.ranged import open_input
from pipeline.io.units import COMPRESSIONS, format_by_name

_FORMATS = "JSON lines (.jsonl, .ndjson, .json), CSV (.csv) or Parquet (.parquet), optionally .gz"


class EvalFileError(Exception):
    """An evaluation file that cannot be used, with the place of the problem: `where` is "line 12", "row 3" or ""."""

    def __init__(self, location: str, where: str, message: str):
        super().__init__(f"{location}{', ' + where if where else ''}: {message}")


def read_items(location: str, fields: Sequence[str]) -> Iterator[str]:
    """The text of each item of an evaluation file, in file order."""
    kind = file_format(location)
    try:
        with open_input(location) as raw:
            for where, record in _records(raw, kind, location, fields):
                yield item_text(record, fields, location, where)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error, pa.ArrowException) as exc:
        raise EvalFileError(location, "", f"cannot be read: {' '.join(str(exc).split())}") from None


def file_format(location: str) -> str:
    """"jsonl", "csv" or "parquet", by the file's name."""
    name = location.split("?", 1)[0].lower()
    for compression in COMPRESSIONS:
        name = name.removesuffix(compression)
    if name.endswith(".csv"):
        return "csv"
    kind = format_by_name(name)
    if kind not in ("jsonl", "parquet"):
        raise EvalFileError(location, "", f"not a format evaluation items are read from: {_FORMATS}")
    return kind


def item_text(record: dict, fields: Sequence[str], location: str, where: str) -> str:
    """The item's fields, one after the other on lines of their own."""
    parts = []
    for field in fields:
        value = record.get(field)
        if value is None:
            state = "null" if field in record else "missing"
            raise EvalFileError(location, where, f"field {field!r} is {state} (the item has: {', '.join(record)})")
        parts.append(_as_text(value, field, location, where))
    text = "\n".join(parts)
    if not text.strip():
        raise EvalFileError(location, where, f"empty item: {', '.join(fields)} hold no text")
    return text


def _as_text(value: object, field: str, location: str, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "\n".join(_as_text(member, field, location, where) for member in value if member is not None)
    raise EvalFileError(location, where, f"field {field!r} holds a {type(value).__name__}, not text")


def _records(raw: BinaryIO, kind: str, location: str, fields: Sequence[str]) -> Iterator[tuple[str, dict]]:
    """(where, record) of each item of an open file."""
    if kind == "parquet":
        yield from _parquet_records(raw, location, fields)
        return
    if isinstance(raw, io.RawIOBase):  # an HTTP range reader: buffered, so that lines are not read byte by byte
        raw = io.BufferedReader(raw, 1 << 20)
    stream = gzip.GzipFile(fileobj=raw, mode="rb") if is_gzip(raw) else raw
    lines = (line.decode("utf-8") for line in iter(stream.readline, b""))
    yield from (_jsonl_records(lines, location) if kind == "jsonl" else _csv_records(lines, location, fields))


def _jsonl_records(lines: Iterator[str], location: str) -> Iterator[tuple[str, dict]]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise EvalFileError(location, f"line {number}", f"not JSON: {exc}") from None
        if not isinstance(record, dict):
            raise EvalFileError(location, f"line {number}", "not a JSON object")
        yield f"line {number}", record


def _csv_records(lines: Iterator[str], location: str, fields: Sequence[str]) -> Iterator[tuple[str, dict]]:
    reader = csv.DictReader(lines)
    columns = reader.fieldnames or []
    missing = [field for field in fields if field not in columns]
    if missing:
        raise EvalFileError(location, "line 1", f"no column {missing[0]!r} in the header (its columns: "
                            f"{', '.join(columns)})")
    for record in reader:  # a short row's missing fields hold None; line_num is the record's last line
        yield f"line {reader.line_num}", {name: value for name, value in record.items()
                                          if name is not None and value is not None}


def _parquet_records(raw: BinaryIO, location: str, fields: Sequence[str]) -> Iterator[tuple[str, dict]]:
    parquet = pq.ParquetFile(raw)
    columns = parquet.schema_arrow.names
    missing = [field for field in fields if field not in columns]
    if missing:
        raise EvalFileError(location, "", f"no column {missing[0]!r} (its columns: {', '.join(columns)})")
    row = 0
    for batch in parquet.iter_batches(columns=list(dict.fromkeys(fields)), use_threads=False):
        for record in batch.to_pylist():
            row += 1
            yield f"row {row}", record
