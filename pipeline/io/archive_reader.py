"""Read WARC, ARC (incl. the old WARC/0.17) and WET files with warcio, one row per record, nothing lost.

Files come in three layouts, found by `probe_layout`:
- `gzip_members`: one gzip member per record (Common Crawl, wget, Heritrix). Offsets are compressed byte offsets
  (the ones the CC index uses), the file can be split into byte ranges read by different workers, and a damaged
  member costs only its own record: the reader finds the next member and goes on.
- `gzip_stream`: the file is gzip but members do not align with records (one gzip over the whole file, or records
  cut across members). Read as one decompressed stream; offsets are uncompressed; one unit per file.
- `plain`: uncompressed. Offsets are byte offsets; after a malformed record the reader scans for the next header.

Every record becomes a row: HTML responses carry their payload for extraction, WET conversions carry text, and
everything else carries a `drop_reason` (record type, HTTP status, content type, size). Unreadable data becomes a
row with `error` set, at the offset where it happened. A record cut short (by the end of the file, or by the
crawler: WARC-Truncated) keeps what was read and is flagged `truncated`, as Common Crawl's own 1 MiB cut pages are.
"""

from __future__ import annotations

import io
import logging
import re
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Literal

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.recordloader import ArcWarcRecord

from pipeline.io.gzip_members import (
    ConcatenatedGzipReader,
    DamagedMember,
    inflate_member,
    is_gzip,
    next_member_start,
)
from pipeline.io.lineage import doc_id, host_and_domain, parse_capture_date
from pipeline.schema import empty_row

Layout = Literal["gzip_members", "gzip_stream", "plain"]

# warcio logs a warning for every URL with spaces (common on the real web); we keep the URL and stay quiet.
logging.getLogger("warcio.recordloader").setLevel(logging.ERROR)

# What may fail while parsing a record out of bytes; anything else is a bug and should surface.
_PARSE_ERRORS = (ArchiveLoadFailed, EOFError, ValueError, IndexError, KeyError, zlib.error, OSError, UnicodeError)
_ARC_HEADER_LINE = re.compile(rb"^\S+ \S+ \d{12,18} \S+ -?\w+\r?\n")
_HTML_SNIFF = re.compile(rb"<!doctype html|<html[\s>]|<head[\s>]|<body[\s>]", re.IGNORECASE)
_HEADER_ALLOWANCE = 1 << 16  # room for WARC + HTTP headers on top of the payload cap


@dataclass(frozen=True)
class ReadOptions:
    """What the reader keeps for extraction."""

    html_content_types: tuple[str, ...] = ("text/html", "application/xhtml+xml")
    max_payload_bytes: int = 5 * 1024 * 1024


def looks_like_record_start(data: bytes) -> bool:
    """Whether bytes begin a WARC record (any version) or an ARC record line."""
    return data.startswith(b"WARC/") or bool(_ARC_HEADER_LINE.match(data))


def probe_layout(fh: BinaryIO) -> Layout:
    """Find how records sit in the file, reading only its first two gzip members."""
    if not is_gzip(fh):
        return "plain"
    offset = 0
    for _ in range(2):
        try:
            member = inflate_member(fh, offset, cap=1 << 24)
        except DamagedMember:
            return "gzip_stream"
        if member.capped or not _holds_one_record(member.content):
            return "gzip_stream"
        offset = member.end
        fh.seek(offset)
        if not fh.read(1):
            break
    fh.seek(0)
    return "gzip_members"


def _holds_one_record(content: bytes) -> bool:
    """True when decompressed member content is exactly one complete WARC/ARC record."""
    if not looks_like_record_start(content):
        return False
    iterator = ArchiveIterator(io.BytesIO(content))
    try:
        record = next(iterator)
        _drain(record)
        complete = getattr(record.raw_stream, "limit", 0) == 0
        iterator.read_to_end()
        rest = content[iterator.offset :]
    except (StopIteration, *_PARSE_ERRORS):
        return False
    return complete and not rest.strip()


@dataclass
class MemberSpan:
    """Where a unit's reading of a record-per-member file began, and where the record after its last one starts.

    A unit that does not start at 0 finds its first record by scanning for a gzip member; a member stored verbatim
    inside another record's payload (a crawled .warc.gz) can fool the scan. The previous unit reads sequentially
    past its end and so knows the true next record: comparing the two (`pipeline.plan.boundary_fixes`) catches the
    rare wrong start exactly, and the unit is read again from the proven offset.
    """

    first: int | None = None  # offset of the first member read; None when no record starts in the range
    next: int | None = None  # offset right after the last member read; None when unknown (damage, end of file)


SCAN = None  # `first_member` value: find the first member by scanning from `start`
NO_MEMBER = -1  # `first_member` value: proven that no record starts in the range


def read_archive(
    fh: BinaryIO,
    source: str,
    layout: Layout,
    start: int,
    end: int,
    options: ReadOptions,
    first_member: int | None = SCAN,
    span: MemberSpan | None = None,
) -> Iterator[dict]:
    """Rows for the records whose first byte lies in [start, end) (a whole file for non-member layouts)."""
    if layout == "gzip_members":
        yield from _read_members(fh, source, start, end, options, first_member, span or MemberSpan())
    else:
        yield from _read_stream(fh, source, layout, options)


def _read_members(
    fh: BinaryIO, source: str, start: int, end: int, options: ReadOptions, first_member: int | None, span: MemberSpan
) -> Iterator[dict]:
    cap = options.max_payload_bytes + _HEADER_ALLOWANCE
    if first_member is not SCAN:
        position = None if first_member == NO_MEMBER else first_member
    else:
        position = start if start == 0 else next_member_start(fh, start, end, looks_like_record_start)
    span.first = position if position is not None and position < end else None
    while position is not None and position < end:
        try:
            member = inflate_member(fh, position, cap)
        except DamagedMember as damage:
            yield _error_row(source, position, "damaged_gzip", damage.reason)
            span.next = None
            position = next_member_start(fh, position + 1, end, looks_like_record_start)
            continue
        yield from _rows_of_member(member, source, options)
        position = span.next = member.end


def _rows_of_member(member, source: str, options: ReadOptions) -> Iterator[dict]:
    """A member normally holds one record. In the rare member holding several, the later ones get the member's
    offset plus their index, so that ids stay unique; they cannot be reached by seeking anyway."""
    iterator = ArchiveIterator(io.BytesIO(member.content))
    produced = 0
    try:
        for record in iterator:
            yield _row_of_record(record, source, member.offset + produced, options, content_capped=member.capped)
            produced += 1
    except _PARSE_ERRORS as exc:
        yield _error_row(source, member.offset + produced, _error_name(exc), _first_line(exc))


def _read_stream(fh: BinaryIO, source: str, layout: Layout, options: ReadOptions) -> Iterator[dict]:
    """Sequential reading; after a malformed record, scan for the next record header and go on."""
    stream: BinaryIO = ConcatenatedGzipReader(fh) if layout == "gzip_stream" else fh
    position: int | None = 0
    while position is not None:
        stream.seek(position)
        iterator = ArchiveIterator(stream)
        try:
            for record in iterator:
                yield _row_of_record(record, source, iterator.offset, options, content_capped=False)
            position = None
        except _PARSE_ERRORS as exc:
            yield _error_row(source, iterator.offset, _error_name(exc), _first_line(exc))
            position = _next_plain_record(stream, iterator.offset + 1)
    damage = getattr(stream, "damage", None)
    if damage is not None:
        yield _error_row(
            source,
            stream.seek(1 << 62),  # the end of what could be decompressed
            "damaged_gzip",
            f"{damage.reason} at compressed byte {damage.offset}; the data after it is lost",
        )


def _next_plain_record(fh: BinaryIO, start: int) -> int | None:
    """Offset of the next line that starts a record in an uncompressed file, or None."""
    fh.seek(start)
    offset = start
    for line in iter(fh.readline, b""):
        if looks_like_record_start(line):
            return offset
        offset += len(line)
    return None


def _row_of_record(
    record: ArcWarcRecord, source: str, offset: int, options: ReadOptions, content_capped: bool
) -> dict:
    """Classify one record into a row: an HTML payload to extract, a WET text, or a skip reason."""
    headers = record.rec_headers
    url = headers.get_header("WARC-Target-URI") or headers.get_header("uri")
    host, domain = host_and_domain(url)
    row = empty_row()
    row.update(
        id=doc_id(source, offset),
        url=url,
        host=host,
        domain=domain,
        source=source,
        offset=offset,
        date=parse_capture_date(headers.get_header("WARC-Date") or headers.get_header("archive-date")),
        record_id=headers.get_header("WARC-Record-ID"),
    )
    row["drop_reason"] = _skip_reason(record, options)
    if row["drop_reason"] == "too_large":
        row["payload_bytes"] = record.length  # the WARC block length: the payload was never read
    if row["drop_reason"] is None:
        payload = record.content_stream().read(options.max_payload_bytes + 1)
        row["payload_bytes"] = len(payload)
        if len(payload) > options.max_payload_bytes:
            row["drop_reason"] = "too_large"
        elif record.rec_type == "conversion":
            row["text"] = payload.decode("utf-8", errors="replace")
        elif _declared_html(record, options) is None and not _HTML_SNIFF.search(payload[:2048]):
            row["drop_reason"] = "not_html"
        else:
            row["html"] = payload
            row["charset"] = _declared_charset(record)
    _drain(record)
    cut_short = not content_capped and getattr(record.raw_stream, "limit", 0) > 0
    row["truncated"] = cut_short or headers.get_header("WARC-Truncated") is not None
    return row


def _skip_reason(record: ArcWarcRecord, options: ReadOptions) -> str | None:
    """Why a record is not a document to extract, checked from headers only (cheapest first); None to keep."""
    kind = record.rec_type
    if kind == "conversion":
        return _size_reason(record, options)
    if kind != "response":
        return f"record_type:{kind}"
    if record.http_headers is None:
        return "not_http"
    status = record.http_headers.get_statuscode()
    if status != "200":
        return f"http_status:{status or 'invalid'}"
    if _declared_html(record, options) is False:
        return "not_html"
    return _size_reason(record, options)


def _size_reason(record: ArcWarcRecord, options: ReadOptions) -> str | None:
    declared = record.length or 0
    return "too_large" if declared > options.max_payload_bytes + _HEADER_ALLOWANCE else None


def _mime(value: str | None) -> str | None:
    return value.split(";", 1)[0].strip().lower() if value else None


def _declared_html(record: ArcWarcRecord, options: ReadOptions) -> bool | None:
    """Whether the headers say HTML: HTTP Content-Type, then Common Crawl's identified type; None if neither says."""
    mime = _mime(record.http_headers.get_header("Content-Type")) or _mime(
        record.rec_headers.get_header("WARC-Identified-Payload-Type")
    )
    return None if mime is None else mime in options.html_content_types


def _declared_charset(record: ArcWarcRecord) -> str | None:
    content_type = record.http_headers.get_header("Content-Type") or ""
    match = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", content_type, re.IGNORECASE)
    return match.group(1).lower() if match else None


def _drain(record: ArcWarcRecord) -> None:
    while record.raw_stream.read(1 << 16):
        pass


def _error_row(source: str, offset: int, error: str, detail: str) -> dict:
    row = empty_row()
    row.update(id=doc_id(source, offset), source=source, offset=offset, error=error, error_detail=detail)
    return row


def _error_name(exc: BaseException) -> str:
    """A stable, countable error name: the exception type in snake case."""
    name = type(exc).__name__
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__
