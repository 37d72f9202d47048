"""Read corpora that already hold text (JSONL, JSONL.gz, Parquet), to re-process them with later stages.

Rows get the same lineage columns as WARC records. A line that is not valid JSON, or lacks a string text field,
becomes an error row at its byte offset; the rest of the file is read on. The per-record limit of the archives
(`max_payload_bytes`) holds here too: a text over it is dropped as `too_large`, and a JSONL line too long to hold
such a text is read past in chunks, never held whole. A file that is not Parquet is one `not_parquet` error row.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.io.lineage import doc_id, host_and_domain, parse_capture_date
from pipeline.schema import empty_row

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_FIELD_ALLOWANCE = 1 << 16  # room for the id, URL, date and JSON syntax around a text on its line
_LINE_CHUNK = 1 << 20


@dataclass(frozen=True)
class TextFields:
    """Which fields of an input record hold the text and the lineage we keep."""

    text: str = "text"
    id: str | None = "id"
    url: str | None = "url"
    date: str | None = "date"


def read_jsonl(
    fh: BinaryIO,
    source: str,
    compressed: bool,
    start: int,
    end: int | None,
    fields: TextFields,
    max_payload_bytes: int,
) -> Iterator[dict]:
    """Rows for the lines that begin in [start, end) (byte offsets of the uncompressed stream; None: to the end)."""
    stream: BinaryIO = gzip.GzipFile(fileobj=fh, mode="rb") if compressed else fh
    position = start
    try:
        if start:
            stream.seek(start - 1)
            position = start - 1 + _read_line(stream, 0)[1]  # the line in progress belongs to the previous unit
        while end is None or position < end:
            line, length = _read_line(stream, max_payload_bytes + _FIELD_ALLOWANCE)
            if not length:
                return
            if line is None:
                yield _too_large(_lineage_row({}, source, position, fields), length)
            elif line.strip():
                yield _row_of_line(line, source, position, fields, max_payload_bytes)
            position += length
    except (OSError, EOFError, zlib.error) as exc:  # damaged gzip: keep what came before, count the rest as one error
        yield _failed(source, position, "damaged_gzip", " ".join(str(exc).split()))


def _read_line(stream: BinaryIO, limit: int) -> tuple[bytes | None, int]:
    """The next line, or None when it is longer than `limit`; and its length (0 at the end of the stream).

    The line is read in chunks: one over the limit is read past without being held.
    """
    kept: list[bytes] | None = []
    length = 0
    while True:
        piece = stream.readline(_LINE_CHUNK)
        length += len(piece)
        if length > limit:
            kept = None
        elif kept is not None:
            kept.append(piece)
        if not piece or piece.endswith(b"\n"):
            return (b"".join(kept) if kept is not None else None), length


def _row_of_line(line: bytes, source: str, offset: int, fields: TextFields, max_payload_bytes: int) -> dict:
    try:
        record = json.loads(line)
    except ValueError as exc:
        return _failed(source, offset, "invalid_json", str(exc))
    if not isinstance(record, dict):
        return _failed(source, offset, "invalid_json", "a line is not a JSON object")
    return _row_of_record(record, source, offset, fields, max_payload_bytes)


def _row_of_record(record: dict, source: str, offset: int, fields: TextFields, max_payload_bytes: int) -> dict:
    text = record.get(fields.text)
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        what = "missing" if text is None else f"a {type(text).__name__}, not a string"
        return _failed(source, offset, "missing_text", f"field {fields.text!r} is {what}")
    row = _lineage_row(record, source, offset, fields)
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > max_payload_bytes:
        return _too_large(row, size)
    row.update(payload_bytes=size, truncated=False, text=valid_unicode(text))
    return row


def _lineage_row(record: dict, source: str, offset: int, fields: TextFields) -> dict:
    """A row with the record's id (or one made from its position), URL, host, domain and date."""
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
    )
    return row


def _too_large(row: dict, size: int) -> dict:
    row.update(payload_bytes=size, truncated=False, drop_reason="too_large")
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


PARQUET_BATCH_ROWS = 64


def read_parquet(
    fh: BinaryIO, source: str, start: int, end: int, fields: TextFields, max_payload_bytes: int
) -> Iterator[dict]:
    """Rows of the row groups [start, end); the offset of a row is its index in the file."""
    try:
        parquet = pq.ParquetFile(fh)
    except (pa.ArrowException, OSError) as exc:  # not Parquet, cut short, or a footer that does not decode
        yield _failed(source, 0, "not_parquet", " ".join(str(exc).split()))
        return
    wanted = [name for name in (fields.text, fields.id, fields.url, fields.date) if name]
    present = [name for name in wanted if name in parquet.schema_arrow.names]
    first_row = sum(parquet.metadata.row_group(g).num_rows for g in range(start))
    groups = list(range(start, min(end, parquet.num_row_groups)))
    # In batches, not whole row groups: a row group can hold gigabytes of text, a batch only a few records' worth
    # (a single cell is still read whole: Parquet cannot skip part of a page).
    for batch in (parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=groups, columns=present,
                                       use_threads=False) if groups else []):
        table = pa.Table.from_batches([batch])
        oversized = _oversized_texts(table, fields.text, max_payload_bytes)
        if oversized:  # the oversized cells are never copied nor turned into Python strings
            fitting = [index for index in range(table.num_rows) if index not in oversized]
            texts = table.column(fields.text).take(pa.array(fitting, pa.int64())).to_pylist()
            records = table.drop_columns([fields.text]).to_pylist()
            for index, text in zip(fitting, texts):
                records[index][fields.text] = text
        else:
            records = table.to_pylist()
        for index, record in enumerate(records):
            if index in oversized:
                yield _too_large(_lineage_row(record, source, first_row + index, fields), oversized[index])
            else:
                yield _row_of_record(record, source, first_row + index, fields, max_payload_bytes)
        first_row += table.num_rows


def _oversized_texts(table: pa.Table, name: str, max_payload_bytes: int) -> dict[int, int]:
    """Row index -> UTF-8 size of each text cell over the limit, measured in Arrow without converting the cells."""
    if name not in table.column_names:
        return {}
    column = table.column(name)
    if not any(check(column.type) for check in (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary,
                                                 pa.types.is_large_binary)):
        return {}
    sizes = pc.binary_length(column).to_pylist()
    return {index: size for index, size in enumerate(sizes) if size is not None and size > max_payload_bytes}


def parquet_row_group_sizes(fh: BinaryIO) -> list[int]:
    """Compressed bytes of each row group, used to cut a Parquet file into units; none for a file that is not
    Parquet (its one unit then reads as a not_parquet row)."""
    try:
        metadata = pq.ParquetFile(fh).metadata
    except (pa.ArrowException, OSError):
        return []
    return [metadata.row_group(g).total_byte_size for g in range(metadata.num_row_groups)]


def _failed(source: str, offset: int, error: str, detail: str) -> dict:
    row = empty_row()
    row.update(id=doc_id(source, offset), source=source, offset=offset, error=error, error_detail=detail[:300])
    return row
