"""HTTP(S) downloads into a local file: retried, length-checked, atomic.

Every remote resource (models now, Common Crawl files later) comes through here, so that one tested path handles
timeouts, 5xx answers and connection resets, and no half-written file is ever left under its final name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import random
import time
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.io.ranged import retry_after_seconds

RETRIES = 4
BACKOFF_S = 0.5
TIMEOUT_S = 60
_CHUNK = 1 << 20


def cache_base() -> Path:
    """Where everything downloaded is kept: $CCPIPELINE_CACHE, default ~/.cache/ccpipeline (models/, commoncrawl/,
    inputs/ below it). On a cluster, point it at storage every node sees."""
    return Path(os.environ.get("CCPIPELINE_CACHE", Path.home() / ".cache" / "ccpipeline"))


class DownloadError(Exception):
    """A download that failed after every retry, or whose content is not what was expected."""


def _retryable(exc: BaseException) -> bool:
    """Network failures only: a full disk or a file that cannot be written is not made better by asking again."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in (408, 429)
    # IncompleteRead: the connection closed before Content-Length; the next attempt asks for the rest
    return isinstance(exc, (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException))


def download(url: str, destination: Path, sha256: str | None = None, retries: int = RETRIES,
             timeout_s: float = TIMEOUT_S) -> Path:
    """Fetch `url` into `destination`, atomically: the bytes go to a hidden `.part` file beside it, renamed into
    place once the whole length (Content-Length / Content-Range) has arrived and, when given, the sha256 matches.

    Transient failures (5xx, 408/429, timeouts, refused or reset connections, a body cut short) are retried with
    exponential backoff, and a retry asks only for the missing bytes (HTTP Range), so a cut at 90% of a 1 GB file
    costs 10%. The `.part` file survives the process: a re-run picks up where a killed one stopped."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.part")
    last_error: BaseException | None = None
    for attempt in range(retries):
        if attempt:
            asked = last_error.headers.get("Retry-After") if isinstance(last_error, urllib.error.HTTPError) else None
            time.sleep(retry_after_seconds(asked) or BACKOFF_S * 2 ** (attempt - 1) * random.uniform(0.5, 1.0))
        try:
            _fetch(url, partial, timeout_s)
        except Exception as exc:  # noqa: BLE001 - classified just below
            last_error = exc
            if _retryable(exc):
                continue
            partial.unlink(missing_ok=True)
            raise DownloadError(f"{url}: {exc}") from None
        if sha256 is not None and (digest := file_sha256(partial)) != sha256:
            partial.unlink(missing_ok=True)
            raise DownloadError(f"{url}: sha256 is {digest}, expected {sha256}")
        os.replace(partial, destination)
        return destination
    raise DownloadError(f"{url}: failed after {retries} attempts: {last_error}")


def file_sha256(path: Path) -> str:
    """The sha256 of a local file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, partial: Path, timeout_s: float) -> None:
    """Append the missing bytes of `url` to `partial` (all of them when it is empty or the server ignores
    ranges). Raises ConnectionError when the body ends before the announced length."""
    have = partial.stat().st_size if partial.exists() else 0
    headers = {"User-Agent": "ccpipeline"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing past what we have: the file was complete, or changed
            total = _total_from_content_range(exc.headers.get("Content-Range"))
            if total == have:
                return
            partial.unlink(missing_ok=True)
            raise ConnectionError(f"range not satisfiable at byte {have}; starting again") from None
        raise
    with response:
        if response.status == 206:
            total = _total_from_content_range(response.headers.get("Content-Range"))
            start = int(response.headers.get("Content-Range", "bytes 0-").split()[1].split("-")[0])
            if start != have:
                raise ConnectionError(f"asked for byte {have}, the server sent from {start}")
            mode = "ab"
        else:  # 200: the whole body (no range asked, or the server does not do ranges)
            length = response.headers.get("Content-Length")
            total, have, mode = (int(length) if length is not None else None), 0, "wb"
        with open(partial, mode) as out:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                have += len(chunk)
    if total is not None and have != total:
        raise ConnectionError(f"connection closed after {have} of {total} bytes")


def _total_from_content_range(value: str | None) -> int | None:
    """The total length in 'bytes a-b/total' (None when unknown: '*')."""
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None
