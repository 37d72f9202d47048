"""Read WARC, ARC (incl. the old WARC/0.17) and WET files, one row per record, nothing lost, in bounded time and memory.

Files come in three layouts, found by `probe_layout`:
- `gzip_members`: one gzip member per record (Common Crawl, wget, Heritrix). Offsets are compressed byte offsets
  (the ones the CC index uses), the file can be split into byte ranges read by different workers, and a damaged
  member costs only its own record: the reader finds the next member and goes on.
- `gzip_stream`: the file is gzip but members do not align with records (one gzip over the whole file, or records
  cut across members). Read as one decompressed stream; offsets are uncompressed; one unit per file.
- `plain`: uncompressed. Offsets are byte offsets.

Records are framed by pipeline/io/record_framing.py, not by warcio: a bounded header block, then the block its
Content-Length (ARC: its length field) declares, of which at most the payload cap is kept, then a line break. Only
the framed bytes of one record are handed to warcio, so no endless line or lying length can make a read unbounded.

Every record becomes a row: HTML responses carry their payload for extraction, WET conversions carry text, and
everything else carries a `drop_reason` (record type, HTTP status, content type, size). A record cut short (by the
end of the file, or by the crawler: WARC-Truncated) keeps what was read and is flagged `truncated`, as Common Crawl's
own 1 MiB cut pages are. Bytes that do not frame become a row with `error`, at the offset where they are:
- `not_a_warc`: the file does not begin with a record; the only row of the file.
- `not_a_record`: bytes where a record header should begin; reading goes on at the next line that begins one.
- `bad_header`, `oversized_header`: a header line that is not a field, a header block over the limit.
- `bad_content_length`: the block is not followed by a line break: the declared length is too short, or too long
  and holds the start of the next record; reading goes on at that next record.
- `damaged_gzip`: compressed data that cannot be inflated.
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
from pipeline.io.record_framing import MAX_HEADER_BYTES, SCAN_CHUNK, Frame, frames, looks_like_record_start
from pipeline.schema import empty_row

Layout = Literal["gzip_members", "gzip_stream", "plain"]

# warcio logs a warning for every URL with spaces (common on the real web); we keep the URL and stay quiet.
logging.getLogger("warcio.recordloader").setLevel(logging.ERROR)

# What may fail while parsing a framed record; anything else is a bug and should surface. (AttributeError: warcio
# on an HTTP record without WARC-Target-URI.)
_PARSE_ERRORS = (
    ArchiveLoadFailed, EOFError, ValueError, IndexError, KeyError, zlib.error, OSError, UnicodeError, AttributeError
)
_HTML_SNIFF = re.compile(rb"<!doctype html|<html[\s>]|<head[\s>]|<body[\s>]", re.IGNORECASE)
_HEADER_ALLOWANCE = 1 << 16  # room for WARC + HTTP headers on top of the payload cap


@dataclass(frozen=True)
class ReadOptions:
    """What the reader keeps for extraction."""

    html_content_types: tuple[str, ...] = ("text/html", "application/xhtml+xml")
    max_payload_bytes: int = 5 * 1024 * 1024


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
    found = list(frames(io.BytesIO(content), keep=len(content)))
    return len(found) == 1 and found[0].error is None and not found[0].cut_short


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


def _keep_bytes(options: ReadOptions) -> int:
    """How much of a record's block is kept: enough to tell a payload over the limit from one under it."""
    return options.max_payload_bytes + _HEADER_ALLOWANCE


def _read_members(
    fh: BinaryIO, source: str, start: int, end: int, options: ReadOptions, first_member: int | None, span: MemberSpan
) -> Iterator[dict]:
    """A member given up as a bomb is followed by scanning for the next member; any other by its exact end."""
    cap = _keep_bytes(options)
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
        if member.whole:
            position = span.next = member.end
        else:
            span.next = None
            position = next_member_start(fh, member.end, end, looks_like_record_start)


def _rows_of_member(member, source: str, options: ReadOptions) -> Iterator[dict]:
    """A member normally holds one record. In the rare member holding several, the later ones get the member's
    offset plus their index, so that ids stay unique; they cannot be reached by seeking anyway."""
    for index, frame in enumerate(frames(io.BytesIO(member.content), _keep_bytes(options), capped=member.capped)):
        yield _row_of_frame(frame, source, member.offset + index, options)


def _read_stream(fh: BinaryIO, source: str, layout: Layout, options: ReadOptions) -> Iterator[dict]:
    """Sequential reading of a whole file; a file that does not begin with a record is refused as a whole."""
    fh.seek(0)
    keep = _keep_bytes(options)
    stream: BinaryIO = fh
    if layout == "gzip_stream":
        stream = ConcatenatedGzipReader(fh, lookbehind=keep + MAX_HEADER_BYTES + 2 * SCAN_CHUNK)
    for index, frame in enumerate(frames(stream, keep)):
        if index == 0 and frame.error == "not_a_record":
            yield _error_row(source, 0, "not_a_warc", f"the file does not begin with a record: {frame.detail}")
            return
        yield _row_of_frame(frame, source, frame.offset, options)
    damage = getattr(stream, "damage", None)
    if damage is not None:
        yield _error_row(
            source,
            stream.tell(),  # the end of what could be decompressed
            "damaged_gzip",
            f"{damage.reason} at compressed byte {damage.offset}; the data after it is lost",
        )


# ---------------------------------------------------------------------------------------------------------- rows


def _row_of_frame(frame: Frame, source: str, offset: int, options: ReadOptions) -> dict:
    if frame.error:
        return _error_row(source, offset, frame.error, frame.detail)
    try:
        iterator = ArchiveIterator(io.BytesIO(frame.data), block_size=max(len(frame.data), 1))
        return _row_of_record(next(iterator), source, offset, options, frame.cut_short)
    except (StopIteration, *_PARSE_ERRORS) as exc:
        return _error_row(source, offset, _error_name(exc), _first_line(exc))


def _row_of_record(record: ArcWarcRecord, source: str, offset: int, options: ReadOptions, cut_short: bool) -> dict:
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
    return "too_large" if declared > _keep_bytes(options) else None


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
