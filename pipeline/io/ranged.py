"""Input files read where they are: local paths, http(s):// URLs by HTTP range requests, s3:// and gs:// objects by
pyarrow's range reads. Nothing is copied first, so the driver plans from sizes and first bytes, and the worker that
runs a unit reads that unit's byte range itself.

`open_input` gives a seekable binary file. Over HTTP it fetches blocks: a small first one (so that probing a file's
layout costs kilobytes), then larger ones for sequential reading. Network failures (refused or reset connections,
timeouts, a body cut short, HTTP 5xx, 408 and 429) are retried a bounded number of times with exponential backoff and
jitter, or after the server's Retry-After; a retry asks only for the bytes not yet received. Other answers (404, 403)
fail at once. Either way the error names the URI, the byte range and the HTTP status. Every request carries
`X-Ccpipeline-Reader: <host>:<pid>` (with ` node=<Ray node id>` in a Ray worker), saying which process read.

Object stores go through pyarrow's filesystems (their own retries), with the URI's query as filesystem options, as
in pipeline/io/storage.py.
"""

from __future__ import annotations

import email.utils
import http.client
import io
import os
import random
import socket
import time
import urllib.error
import urllib.request
from typing import BinaryIO, Callable, TypeVar

from pipeline.io.storage import storage_path

READER_HEADER = "X-Ccpipeline-Reader"
NODE_VARIABLE = "CCPIPELINE_RAY_NODE"  # set by the runner in its Ray workers: the node's id, for READER_HEADER
HTTP_SCHEMES = ("http://", "https://")
STORE_SCHEMES = ("s3://", "gs://", "gcs://")
TRIES = 5
BACKOFF_S = 0.5
MAX_WAIT_S = 60.0  # no backoff or Retry-After waits longer
TIMEOUT_S = 60
FIRST_BLOCK = 64 << 10
BLOCK = 4 << 20
_RETRIED_STATUS = (408, 429)

T = TypeVar("T")


class RemoteReadError(OSError):
    """A remote read that failed: at once for an answer such as 404, or once its tries ran out."""


def is_remote(location: str) -> bool:
    return location.startswith(HTTP_SCHEMES + STORE_SCHEMES)


def local_path(location: str) -> str:
    """The local path of a path or file:// URI."""
    return location[len("file://"):] if location.startswith("file://") else location


def plain_location(location: str) -> str:
    """The location without a URI's query (filesystem options such as endpoint_override): what output rows name."""
    return location.split("?", 1)[0] if is_remote(location) else location


def open_input(location: str) -> BinaryIO:
    """A seekable binary file over a local path, an http(s):// URL or an s3:// gs:// object."""
    if location.startswith(HTTP_SCHEMES):
        return HttpRangeFile(location)
    if location.startswith(STORE_SCHEMES):
        path = storage_path(location)
        return path.filesystem.open_input_file(path.path)
    return open(local_path(location), "rb")


def input_size(location: str, tries: int = TRIES) -> int:
    return input_fingerprint(location, tries)["bytes"]


def input_fingerprint(location: str, tries: int = TRIES) -> dict:
    """{"bytes", "mtime_ns"}: a file's size and modification time (an HTTP resource's Last-Modified; 0 when the
    server gives none). Raises FileNotFoundError for a missing local file, RemoteReadError for a remote one."""
    if location.startswith(HTTP_SCHEMES):
        return _http_fingerprint(location, tries)
    if location.startswith(STORE_SCHEMES):
        path = storage_path(location)
        info = path.filesystem.get_file_info(path.path)
        if info.size is None:
            raise RemoteReadError(f"{plain_location(location)}: no such object")
        return {"bytes": info.size, "mtime_ns": info.mtime_ns or 0}
    status = os.stat(local_path(location))
    return {"bytes": status.st_size, "mtime_ns": status.st_mtime_ns}


class HttpRangeFile(io.RawIOBase):
    """A read-only, seekable file over an HTTP(S) URL, read by range requests. The size is learnt from the first
    answer's Content-Range (or a HEAD request when seeking from the end)."""

    def __init__(self, url: str, tries: int = TRIES):
        super().__init__()
        self.url = url
        self.tries = tries
        self._size: int | None = None
        self._position = 0
        self._block_start = 0
        self._block = b""
        self._next_block = FIRST_BLOCK

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    @property
    def size(self) -> int:
        if self._size is None:
            self._size = input_size(self.url, self.tries)
        return self._size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position}.get(whence)
        if base is None:
            base = self.size
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        if not self._block_start <= self._position <= self._block_start + len(self._block):
            self._next_block = FIRST_BLOCK  # a jump: probing again, small reads first
        return self._position

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            offset = self._position - self._block_start
            if not 0 <= offset < len(self._block):
                if not self._load(self._position):
                    break
                offset = 0
            count = min(len(view) - filled, len(self._block) - offset)
            view[filled:filled + count] = self._block[offset:offset + count]
            filled += count
            self._position += count
        return filled

    def _load(self, start: int) -> bool:
        """Fetch the block from `start`; False at the end of the file."""
        if self._size is not None and start >= self._size:
            return False
        length = self._next_block
        self._next_block = min(BLOCK, self._next_block * 4)
        self._block, total = read_range(self.url, start, start + length - 1, self.tries)
        self._block_start = start
        if total is not None:
            self._size = total
        return bool(self._block)


def read_range(url: str, first: int, last: int, tries: int = TRIES) -> tuple[bytes, int | None]:
    """(bytes first..last of `url`, fewer at the end of the file, none past it; the file's size when the server
    says it). A retry after a cut connection asks only for the bytes not yet received."""
    received = bytearray()
    total: list[int | None] = [None]

    def attempt() -> None:
        start = first + len(received)
        if start > last:
            return
        request = _request(url, headers={"Range": f"bytes={start}-{last}"})
        try:
            response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # past the end of the file
                total[0] = _total(exc.headers.get("Content-Range"))
                return
            raise
        with response:
            expected = last - start + 1
            if response.status == 206:
                answered = response.headers.get("Content-Range", "")
                total[0] = _total(answered)
                if not answered.startswith(f"bytes {start}-"):
                    raise ConnectionError(f"asked for byte {start}, the server answered {answered!r}")
                expected = min(expected, (total[0] or start + expected) - start)
            else:  # 200: the server ignores ranges; skip to the bytes wanted
                length = response.headers.get("Content-Length")
                total[0] = int(length) if length is not None else None
                _skip(response, start)
                expected = min(expected, (total[0] or start + expected) - start)
            while len(received) < last - first + 1 and (chunk := response.read(min(1 << 16, expected))):
                received.extend(chunk[: last - first + 1 - len(received)])
            got = first + len(received) - start
            if got < expected:
                raise ConnectionError(f"connection closed after {got} of {expected} bytes")

    with_retries(f"{url} bytes {first}-{last}", attempt, tries)
    return bytes(received), total[0]


def with_retries(what: str, attempt: Callable[[], T], tries: int = TRIES) -> T:
    """`attempt()`, tried again on network errors (up to `tries` times in all); a RemoteReadError naming `what`
    and the status or error when it cannot succeed."""
    for number in range(1, tries + 1):
        try:
            return attempt()
        except urllib.error.HTTPError as exc:
            retried = exc.code >= 500 or exc.code in _RETRIED_STATUS
            if not retried or number == tries:
                after = f" after {number} tries" if number > 1 else ""
                raise RemoteReadError(f"{what}: HTTP {exc.code}{after}") from None
            wait = retry_after_seconds(exc.headers.get("Retry-After"))
        except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout,
                http.client.HTTPException) as exc:
            if number == tries:
                reason = getattr(exc, "reason", None) or exc
                raise RemoteReadError(f"{what}: {type(exc).__name__}: {reason} after {number} tries") from None
            wait = None
        if wait is None:
            wait = min(MAX_WAIT_S, BACKOFF_S * 2 ** (number - 1)) * random.uniform(0.5, 1.0)
        time.sleep(wait)
    raise AssertionError("unreachable")


def reader_id() -> str:
    node = os.environ.get(NODE_VARIABLE)
    return f"{socket.gethostname()}:{os.getpid()}" + (f" node={node}" if node else "")


def _request(url: str, method: str = "GET", headers: dict | None = None) -> urllib.request.Request:
    return urllib.request.Request(url, method=method, headers={
        "User-Agent": "ccpipeline", READER_HEADER: reader_id(), **(headers or {})})


def _http_fingerprint(url: str, tries: int) -> dict:
    """Size and Last-Modified from a HEAD request, or from a one-byte range request when HEAD gives no length."""
    def head() -> dict:
        with urllib.request.urlopen(_request(url, "HEAD"), timeout=TIMEOUT_S) as response:
            return dict(response.headers.items())

    headers = with_retries(f"{url} HEAD", head, tries)
    length = headers.get("Content-Length")
    if length is None or headers.get("Content-Encoding"):
        _, total = read_range(url, 0, 0, tries)
        if total is None:
            raise RemoteReadError(f"{url}: the server says no size")
        length = total
    modified = headers.get("Last-Modified")
    try:
        mtime_ns = int(email.utils.parsedate_to_datetime(modified).timestamp() * 1e9) if modified else 0
    except (TypeError, ValueError):
        mtime_ns = 0
    return {"bytes": int(length), "mtime_ns": mtime_ns}


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (a number, or an HTTP date), at most MAX_WAIT_S; None when absent."""
    if not value:
        return None
    if value.strip().isdigit():
        return min(MAX_WAIT_S, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, min(MAX_WAIT_S, when - time.time()))


def _total(content_range: str | None) -> int | None:
    """The total length in 'bytes a-b/total' or 'bytes */total' (None when unknown)."""
    if not content_range or "/" not in content_range:
        return None
    total = content_range.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _skip(response, count: int) -> None:
    while count > 0:
        chunk = response.read(min(count, 1 << 20))
        if not chunk:
            raise ConnectionError(f"connection closed {count} bytes before the range asked for")
        count -= len(chunk)
