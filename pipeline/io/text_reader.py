"""Read corpora that already hold text (JSONL, JSONL.gz, Parquet), to re-process them with later stages.

Rows get the same lineage columns as WARC records. A line that is not valid JSON, or lacks a string text field,
becomes an error row at its byte offset; the rest of the file is read on.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import pyarrow.parquet as pq

from pipeline.io.lineage import doc_id, host_and_domain, parse_capture_date
from pipeline.schema import empty_row

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class TextFields:
    """Which fields of an input record hold the text and the lineage we keep."""

    text: str = "text"
    id: str | None = "id"
    url: str | None = "url"
    date: str | None = "date"


def read_jsonl(
    fh: BinaryIO, source: str, compressed: bool, start: int, end: int | None, fields: TextFields
) -> Iterator[dict]:
    """Rows for the lines that begin in [start, end) (byte offsets of the uncompressed stream; None: to the end)."""
    stream: BinaryIO = gzip.GzipFile(fileobj=fh, mode="rb") if compressed else fh
    position = start
    if start:
        stream.seek(start - 1)
        position = start - 1 + len(stream.readline())  # the line in progress belongs to the previous unit
    try:
        while end is None or position < end:
            line = stream.readline()
            if not line:
                return
            if line.strip():
                yield _row_of_line(line, source, position, fields)
            position += len(line)
    except (OSError, EOFError, zlib.error) as exc:  # damaged gzip: keep what came before, count the rest as one error
        yield _failed(source, position, "damaged_gzip", " ".join(str(exc).split()))


def _row_of_line(line: bytes, source: str, offset: int, fields: TextFields) -> dict:
    try:
        record = json.loads(line)
    except ValueError as exc:
        return _failed(source, offset, "invalid_json", str(exc))
    if not isinstance(record, dict):
        return _failed(source, offset, "invalid_json", "a line is not a JSON object")
    return _row_of_record(record, source, offset, fields)


def _row_of_record(record: dict, source: str, offset: int, fields: TextFields) -> dict:
    text = record.get(fields.text)
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        what = "missing" if text is None else f"a {type(text).__name__}, not a string"
        return _failed(source, offset, "missing_text", f"field {fields.text!r} is {what}")
    url = _string_field(record, fields.url)
    host, domain = host_and_domain(url)
    row = empty_row()
    row.update(
        id=_string_field(record, fields.id) or doc_id(source, offset),
        url=url,
        host=host,
        domain=domain,
        source=source,
        offset=offset,
        date=parse_capture_date(_string_field(record, fields.date)),
        payload_bytes=len(text.encode("utf-8", errors="surrogatepass")),
        truncated=False,
        text=valid_unicode(text),
    )
    return row


def _string_field(record: dict, name: str | None) -> str | None:
    value = record.get(name) if name else None
    if value is None:
        return None
    return valid_unicode(value if isinstance(value, str) else str(value))


def valid_unicode(text: str) -> str:
    """The text with lone surrogates (JSON allows "\\udcff", UTF-8 and Arrow do not) replaced by U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub("\ufffd", text)


def read_parquet(fh: BinaryIO, source: str, start: int, end: int, fields: TextFields) -> Iterator[dict]:
    """Rows of the row groups [start, end); the offset of a row is its index in the file."""
    parquet = pq.ParquetFile(fh)
    wanted = [name for name in (fields.text, fields.id, fields.url, fields.date) if name]
    present = [name for name in wanted if name in parquet.schema_arrow.names]
    first_row = sum(parquet.metadata.row_group(g).num_rows for g in range(start))
    for group in range(start, min(end, parquet.num_row_groups)):
        table = parquet.read_row_group(group, columns=present)
        for index, record in enumerate(table.to_pylist()):
            yield _row_of_record(record, source, first_row + index, fields)
        first_row += table.num_rows


def parquet_row_group_sizes(fh: BinaryIO) -> list[int]:
    """Compressed bytes of each row group, used to cut a Parquet file into units."""
    metadata = pq.ParquetFile(fh).metadata
    return [metadata.row_group(g).total_byte_size for g in range(metadata.num_row_groups)]


def _failed(source: str, offset: int, error: str, detail: str) -> dict:
    row = empty_row()
    row.update(id=doc_id(source, offset), source=source, offset=offset, error=error, error_detail=detail[:300])
    return row
