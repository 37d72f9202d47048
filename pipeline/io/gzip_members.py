"""Gzip member handling for record-per-member archives (WARC, ARC, WET as Common Crawl writes them).

Common Crawl compresses every record as its own gzip member, so a reader can start at any member boundary. That is
what lets us split one 1 GB WARC into byte-range units that several workers read at once, and what lets a reader
skip over a damaged member and carry on with the next record. This module knows only gzip, not WARC.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Callable

GZIP_MAGIC = b"\x1f\x8b\x08"
_READ_CHUNK = 1 << 16
_STREAM_CHUNK = 1 << 13  # small input steps, so damage loses little of the data decompressed before it
_PROBE_OUTPUT_BYTES = 64


@dataclass(frozen=True)
class Member:
    """One decompressed gzip member: where it starts, how long it is on disk, and its (possibly capped) content."""

    offset: int
    compressed_length: int
    content: bytes
    uncompressed_length: int
    capped: bool  # content holds only the first `cap` bytes of the member

    @property
    def end(self) -> int:
        return self.offset + self.compressed_length


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

    The whole member is always decompressed (to find where it ends), but content past `cap` is discarded, so a
    500 MB video record costs time, not memory.
    """
    fh.seek(offset)
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    kept: list[bytes] = []
    kept_bytes = 0
    total_out = 0
    consumed = 0
    while not inflater.eof:
        chunk = fh.read(_READ_CHUNK)
        if not chunk:
            raise DamagedMember(offset, "file ends inside the member (truncated)")
        try:
            out = inflater.decompress(chunk)
        except zlib.error as exc:
            raise DamagedMember(offset, f"bad compressed data ({exc})") from None
        total_out += len(out)
        if kept_bytes < cap:
            piece = out[: cap - kept_bytes]
            kept.append(piece)
            kept_bytes += len(piece)
        consumed += len(chunk) - len(inflater.unused_data)
    return Member(
        offset=offset,
        compressed_length=consumed,
        content=b"".join(kept),
        uncompressed_length=total_out,
        capped=total_out > kept_bytes,
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
    Seeking backwards decompresses again from the start: readers seek only to resynchronise after a bad record.
    """

    def __init__(self, fh: BinaryIO):
        super().__init__()
        self._fh = fh
        self._rewind()

    def _rewind(self) -> None:
        self._fh.seek(0)
        self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self._member_start = 0
        self._compressed_position = 0
        self._pending = b""
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
        if whence != io.SEEK_SET:
            raise io.UnsupportedOperation("only absolute seeks")
        if offset < self._position:
            self._rewind()
        while self._position < offset and self.read(min(offset - self._position, 1 << 20)):
            pass
        return self._position

    def read(self, size: int = -1) -> bytes:
        while not self._ended and (size < 0 or len(self._pending) < size):
            self._inflate_more()
        if size < 0:
            size = len(self._pending)
        out, self._pending = self._pending[:size], self._pending[size:]
        self._position += len(out)
        return out

    def readline(self, size: int = -1) -> bytes:
        while not self._ended and b"\n" not in self._pending:
            self._inflate_more()
        cut = self._pending.find(b"\n") + 1 or len(self._pending)
        return self.read(cut if size < 0 else min(cut, size))

    def _inflate_more(self) -> None:
        chunk = self._fh.read(_STREAM_CHUNK)
        if not chunk:
            if not self._inflater.eof and (self._compressed_position > self._member_start):
                self.damage = DamagedMember(self._member_start, "file ends inside the member (truncated)")
            self._ended = True
            return
        data = chunk
        while data:
            try:
                self._pending += self._inflater.decompress(data)
            except zlib.error as exc:
                self.damage = DamagedMember(self._member_start, f"bad compressed data ({exc})")
                self._ended = True
                return
            used = len(data) - len(self._inflater.unused_data)
            self._compressed_position += used
            if not self._inflater.eof:
                return
            data = self._inflater.unused_data
            self._member_start = self._compressed_position
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
            if data and not data.startswith(GZIP_MAGIC[:2]):
                self.damage = DamagedMember(self._member_start, "bytes after a member are not gzip")
                self._ended = True
                return
