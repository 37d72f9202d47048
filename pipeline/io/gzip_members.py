"""Gzip member handling for record-per-member archives (WARC, ARC, WET as Common Crawl writes them).

Common Crawl compresses every record as its own gzip member, so a reader can start at any member boundary. That is
what lets us split one 1 GB WARC into byte-range units that several workers read at once, and what lets a reader
skip over a damaged member and carry on with the next record. This module knows only gzip, not WARC.

Inflation always goes in bounded steps: deflate expands up to about 1,000 times, so one compressed read could
otherwise become a gigabyte (a gzip bomb).
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Callable

GZIP_MAGIC = b"\x1f\x8b\x08"
_READ_CHUNK = 1 << 16
_STREAM_CHUNK = 1 << 13  # small input steps, so damage loses little of the data decompressed before it
_INFLATE_STEP = 1 << 20  # the most one decompress call may return
_BOMB_RATIO = 100  # a member expanding more than this past the cap is a bomb (deflate allows about 1,000)
_PROBE_OUTPUT_BYTES = 64


@dataclass(frozen=True)
class Member:
    """One gzip member: where it starts and ends on disk, and its (possibly capped) content.

    A member given up as a bomb (`whole` False) was not inflated to its end, so its end is unknown: `end` is then
    where inflation stopped, and the next member has to be found by scanning from there.
    """

    offset: int
    end: int
    content: bytes
    capped: bool  # content holds only the first `cap` bytes of the member
    whole: bool  # inflated to its end: `end` is exact


class DamagedMember(Exception):
    """A gzip member that cannot be decompressed (bad data, or the file ends inside it)."""

    def __init__(self, offset: int, reason: str):
        super().__init__(f"damaged gzip member at byte {offset}: {reason}")
        self.offset = offset
        self.reason = reason


def is_gzip(fh: BinaryIO) -> bool:
    """True when the file starts with a gzip header; leaves the position at 0."""
    fh.seek(0)
    head = fh.read(3)
    fh.seek(0)
    return head == GZIP_MAGIC


def inflate_member(fh: BinaryIO, offset: int, cap: int) -> Member:
    """Decompress the member starting at `offset`, keeping at most `cap` bytes of its content.

    Past the cap a member is inflated only to find where it ends, and only while it expands less than _BOMB_RATIO
    times: a 500 MB video costs its size in time, not memory; a bomb is given up soon after the cap.
    """
    fh.seek(offset)
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    kept: list[bytes] = []
    kept_bytes = 0
    inflated = 0
    consumed = 0
    pending = b""
    while not inflater.eof and not (inflated > cap and inflated > _BOMB_RATIO * consumed):
        data = pending or fh.read(_READ_CHUNK)
        if not data:
            raise DamagedMember(offset, "file ends inside the member (truncated)")
        try:
            out = inflater.decompress(data, _INFLATE_STEP)
        except zlib.error as exc:
            raise DamagedMember(offset, f"bad compressed data ({exc})") from None
        # At the member's end the rest of `data` is in unused_data (and, when the output step was reached on the
        # same call, in unconsumed_tail as well): count it once.
        pending = b"" if inflater.eof else inflater.unconsumed_tail
        consumed += len(data) - len(inflater.unused_data if inflater.eof else pending)
        inflated += len(out)
        if kept_bytes < cap:
            kept.append(out[: cap - kept_bytes])
            kept_bytes += len(kept[-1])
    return Member(
        offset=offset,
        end=offset + consumed,
        content=b"".join(kept),
        capped=inflated > kept_bytes,
        whole=inflater.eof,
    )


def _starts_a_member(fh: BinaryIO, offset: int, looks_like_record: Callable[[bytes], bool]) -> bool:
    """Whether a valid gzip member whose content begins like a record starts at `offset`."""
    fh.seek(offset)
    data = fh.read(4096)
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    try:
        out = inflater.decompress(data, _PROBE_OUTPUT_BYTES)
    except zlib.error:
        return False
    return looks_like_record(out)


def next_member_start(
    fh: BinaryIO, start: int, stop: int, looks_like_record: Callable[[bytes], bool]
) -> int | None:
    """First offset in [start, stop) where a gzip member holding a record begins, or None.

    Candidates are found by the gzip magic bytes and confirmed by decompressing the first bytes and checking that
    they begin a record, so compressed data that happens to contain the magic is not mistaken for a boundary.
    """
    position = start
    overlap = len(GZIP_MAGIC) - 1
    while position < stop:
        fh.seek(position)
        window = fh.read(min(_READ_CHUNK, stop - position + overlap))
        if not window:
            return None
        search_from = 0
        while True:
            hit = window.find(GZIP_MAGIC, search_from)
            if hit < 0 or position + hit >= stop:
                break
            if _starts_a_member(fh, position + hit, looks_like_record):
                return position + hit
            search_from = hit + 1
        if len(window) <= overlap:
            return None
        position += len(window) - overlap
    return None


class ConcatenatedGzipReader(io.RawIOBase):
    """Reads all gzip members of a file as one decompressed stream, and survives damage.

    Unlike `gzip.GzipFile`, which raises on a truncated or corrupt stream and loses the data it had buffered, this
    returns every byte that could be decompressed and then ends; `damage` says where and why it stopped early.

    It reads forwards only, in bounded steps, keeping the last `lookbehind` bytes it returned: a reader may seek back
    that far (to re-read a record header or to resynchronise after damage) at no cost, and never further, so no
    seek ever decompresses the file again from its start.
    """

    def __init__(self, fh: BinaryIO, lookbehind: int = 0):
        super().__init__()
        self._fh = fh
        self._lookbehind = lookbehind
        self._fh.seek(0)
        self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self._unconsumed = b""  # compressed input the inflater has not taken yet
        self._member_start = 0
        self._compressed_position = 0
        self._buffer = bytearray()  # decompressed bytes from _buffer_start on
        self._buffer_start = 0
        self._position = 0
        self._ended = False
        self.damage: DamagedMember | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Go to an absolute offset: back at most `lookbehind` bytes, or forwards (stopping at the end)."""
        if whence != io.SEEK_SET:
            raise io.UnsupportedOperation("only absolute seeks")
        if offset < self._buffer_start:
            raise io.UnsupportedOperation(f"cannot seek back to {offset}: only {self._lookbehind} bytes are kept")
        while True:
            self._position = min(offset, self._buffer_start + len(self._buffer))
            if self._position == offset or self._ended:
                return self._position
            self._inflate_more()

    def read(self, size: int = -1) -> bytes:
        while not self._ended and (size < 0 or self._buffer_start + len(self._buffer) - self._position < size):
            self._inflate_more()
        start = self._position - self._buffer_start
        out = bytes(self._buffer[start:] if size < 0 else self._buffer[start : start + size])
        self._position += len(out)
        return out

    def readline(self, size: int = -1) -> bytes:
        """One line, or its first `size` bytes; each decompressed byte is searched once, however long the line."""
        searched = self._position
        while True:
            start = self._position - self._buffer_start
            stop = len(self._buffer) if size < 0 else min(len(self._buffer), start + size)
            newline = self._buffer.find(b"\n", searched - self._buffer_start, stop)
            if newline >= 0 or stop - start == size or self._ended:
                out = bytes(self._buffer[start : newline + 1 if newline >= 0 else stop])
                self._position += len(out)
                return out
            searched = self._buffer_start + stop
            self._inflate_more()

    def _inflate_more(self) -> None:
        """Decompress one bounded step, and drop what lies further back than `lookbehind`."""
        self._forget_old_bytes()
        data = self._unconsumed or self._fh.read(_STREAM_CHUNK)
        if not data:
            if not self._inflater.eof and self._compressed_position > self._member_start:
                self.damage = DamagedMember(self._member_start, "file ends inside the member (truncated)")
            self._ended = True
            return
        try:
            self._buffer += self._inflater.decompress(data, _INFLATE_STEP)
        except zlib.error as exc:
            self.damage = DamagedMember(self._member_start, f"bad compressed data ({exc})")
            self._ended = True
            return
        # As in inflate_member: at a member's end the rest of `data` is in unused_data (and maybe unconsumed_tail).
        after_member = self._inflater.unused_data
        self._unconsumed = b"" if self._inflater.eof else self._inflater.unconsumed_tail
        self._compressed_position += len(data) - len(after_member if self._inflater.eof else self._unconsumed)
        if self._inflater.eof:
            self._member_start = self._compressed_position
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
            self._unconsumed = after_member
            if after_member and not after_member.startswith(GZIP_MAGIC[:2]):
                self.damage = DamagedMember(self._member_start, "bytes after a member are not gzip")
                self._ended = True

    def _forget_old_bytes(self) -> None:
        """Drop the bytes before position - lookbehind once they are many, so the cost per byte stays constant."""
        old = self._position - self._lookbehind - self._buffer_start
        if old > max(self._lookbehind, _INFLATE_STEP):
            del self._buffer[:old]
            self._buffer_start += old
