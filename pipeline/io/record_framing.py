"""Cut WARC and ARC records out of a byte stream, in bounded time and memory, whatever the bytes are.

A record is a header block of at most MAX_HEADER_BYTES (read with bounded line reads), then the block its
Content-Length (ARC: its length field) declares, of which at most `keep` bytes are held and the rest read past,
then a line break. Bytes that do not frame become a Frame with an error (see archive_reader for the names), and
reading goes on at the next line that begins a record, found by a forward scan: never a rewind to the start.
Only the framed bytes of one record are handed to warcio, so no endless line or lying length can make a read
unbounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import BinaryIO, Iterator

_WARC_VERSION_LINE = re.compile(rb"WARC/\d+\.\d+\r?\n")
_ARC_DATE = re.compile(rb"\d{12,18}")
_ARC_LENGTH = re.compile(rb"-?\w+")
# A line break followed by what may begin a record, confirmed by looks_like_record_start. Linear: no backtracking.
_RECORD_LINE = re.compile(rb"\n(?=WARC/\d|\S+ \S+ \d{12,18} \S+ \S+\r?\n)")
_CONTENT_LENGTH = re.compile(rb"(?im)^content-length[ \t]*:[ \t]*(\d{1,18})[ \t]*\r?$")
MAX_HEADER_BYTES = 1 << 18  # a longer WARC header block is damage
_MAX_ARC_LINE = 1 << 13
SCAN_CHUNK = 1 << 16


def looks_like_record_start(data: bytes) -> bool:
    """Whether bytes begin a WARC record (a version line) or an ARC record (URL, IP, date, type, length)."""
    if data.startswith(b"WARC/"):
        return bool(_WARC_VERSION_LINE.match(data))
    line_end = data.find(b"\n", 0, _MAX_ARC_LINE)
    if line_end < 0:
        return False
    fields = data[:line_end].rstrip(b"\r").rsplit(b" ", 4)  # the URL may hold spaces, the other fields do not
    return (
        len(fields) == 5
        and fields[0][:1] not in (b"", b" ", b"\t")
        and bool(_ARC_DATE.fullmatch(fields[2]))
        and bool(_ARC_LENGTH.fullmatch(fields[4]))
    )


@dataclass(frozen=True)
class Frame:
    """One record cut out of a stream: its header and kept block bytes, or why no record could be cut there."""

    offset: int
    data: bytes = b""
    cut_short: bool = False  # the stream ended inside the record
    error: str | None = None
    detail: str = ""


def frames(stream: BinaryIO, keep: int, capped: bool = False) -> Iterator[Frame]:
    """The records of a decompressed stream, from its current position on, as frames.

    At most `keep` bytes of a block are kept; the rest is read past. `capped`: the stream is a member cut at its
    cap, so running out of bytes inside a record is the cap, not truncation. The stream is read forwards; it is
    sought back at most one header, one kept block or one scan chunk.
    """
    while (start := _skip_blank(stream)) is not None:
        header, problem = _read_header(stream)
        if problem == "cut_short":
            yield Frame(start, header, cut_short=not capped)
            return
        if problem:
            yield Frame(start, error=problem, detail=f"{_HEADER_PROBLEMS[problem]}: {header[:60]!r}")
            if _scan_to_record(stream, start) is None:
                return
            continue
        declared = _declared_length(header)
        block_start = stream.tell()
        block = stream.read(min(declared, keep))
        read_past = _skip(stream, declared - len(block))
        ended_inside = len(block) + read_past < declared
        if ended_inside and capped or not ended_inside and _followed_by_line_break(stream):
            yield Frame(start, header + block)
            continue
        inner = _record_start_in(block) if read_past == 0 else None  # only a block still held can be searched
        if inner is None and ended_inside:
            yield Frame(start, header + block, cut_short=True)
            continue
        if inner is not None:
            stream.seek(block_start + inner)
            why = f"runs {declared - inner} bytes into the next record, at byte {block_start + inner}"
        else:
            block_end = stream.tell()
            resumed = _scan_to_record(stream, block_end)
            why = "is not followed by a line break; " + (
                "no record follows" if resumed is None else f"the next record begins {resumed - block_end} bytes later"
            )
        yield Frame(start, error="bad_content_length", detail=f"Content-Length {declared} {why}")


_HEADER_PROBLEMS = {
    "not_a_record": "bytes that do not begin a WARC or ARC record",
    "bad_header": "a WARC header line that is not a field",
    "oversized_header": f"a WARC header block over {MAX_HEADER_BYTES} bytes",
}


def _skip_blank(stream: BinaryIO) -> int | None:
    """Read past white space; the offset of the next other byte, or None at the end of the stream."""
    step = 256
    while True:
        position = stream.tell()
        data = stream.read(step)
        if not data:
            return None
        rest = data.lstrip()
        if rest:
            start = position + len(data) - len(rest)
            stream.seek(start)
            return start
        step = min(2 * step, SCAN_CHUNK)


def _read_header(stream: BinaryIO) -> tuple[bytes, str | None]:
    """The header block at the stream's position, leaving the stream right after it, and what is wrong with it
    (None, or a key of _HEADER_PROBLEMS, or "cut_short": the stream ends inside it)."""
    first = stream.readline(MAX_HEADER_BYTES)
    if not looks_like_record_start(first):
        return first, "not_a_record"
    lines = [first]
    if first.startswith(b"filedesc://"):  # the ARC file header: two more lines, counted in its length
        lines += [stream.readline(_MAX_ARC_LINE), stream.readline(_MAX_ARC_LINE)]
    elif first.startswith(b"WARC/"):
        size = len(first)
        while True:
            line = stream.readline(MAX_HEADER_BYTES + 1 - size)
            lines.append(line)
            size += len(line)
            if size > MAX_HEADER_BYTES:
                return b"".join(lines), "oversized_header"
            if not line.endswith(b"\n"):
                return b"".join(lines), "cut_short"
            if not line.strip():
                break
            if b":" not in line and not line.startswith((b" ", b"\t")):
                return b"".join(lines), "bad_header"
    header = b"".join(lines)
    return header, None if header.endswith(b"\n") else "cut_short"


def _declared_length(header: bytes) -> int:
    """The block length a header declares (WARC Content-Length, ARC length field); 0 when missing or invalid, as
    warcio reads it."""
    if header.startswith(b"WARC/"):
        found = _CONTENT_LENGTH.search(header)
        return int(found.group(1)) if found else 0
    first, _, extra_lines = header.partition(b"\n")
    length = first.split()[-1]
    return max(0, int(length) - len(extra_lines)) if length.isdigit() and len(length) <= 18 else 0


def _skip(stream: BinaryIO, count: int) -> int:
    """Read past up to `count` bytes without holding them; how many there were."""
    skipped = 0
    while skipped < count:
        piece = stream.read(min(SCAN_CHUNK, count - skipped))
        if not piece:
            break
        skipped += len(piece)
    return skipped


def _followed_by_line_break(stream: BinaryIO) -> bool:
    """Whether a block ends where it should: at a line break (or at the end of the stream)."""
    position = stream.tell()
    after = stream.read(2)
    stream.seek(position)
    return after in (b"", b"\r") or after.startswith(b"\n") or after == b"\r\n"


def _record_start_in(data: bytes) -> int | None:
    """Offset of the first line inside `data` (not at 0) that begins a record, or None."""
    for candidate in _RECORD_LINE.finditer(data):
        line_start = candidate.end()
        if looks_like_record_start(data[line_start : line_start + _MAX_ARC_LINE]):
            return line_start
    return None


def _scan_to_record(stream: BinaryIO, start: int) -> int | None:
    """Offset of the first line after `start` that begins a record, the stream left there; None at the end."""
    position = start
    while True:
        stream.seek(position)
        data = stream.read(SCAN_CHUNK)
        found = _record_start_in(data)
        if found is not None:
            stream.seek(position + found)
            return position + found
        if len(data) < SCAN_CHUNK:
            return None
        position += len(data) - _MAX_ARC_LINE  # look again at the tail, where a header line may have been cut
