"""HTTP(S) downloads into a local file: retried, length-checked, atomic.

Every remote resource (models now, Common Crawl files later) comes through here, so that one tested path handles
timeouts, 5xx answers and connection resets, and no half-written file is ever left under its final name.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.io.atomic import temporary_path

RETRIES = 4
BACKOFF_S = 0.5
TIMEOUT_S = 60
_CHUNK = 1 << 20


class DownloadError(Exception):
    """A download that failed after every retry, or whose content is not what was expected."""


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in (408, 429)
    return isinstance(exc, (urllib.error.URLError, ConnectionError, TimeoutError, OSError))


def download(url: str, destination: Path, sha256: str | None = None) -> Path:
    """Fetch `url` into `destination` (atomically); retry transient failures; check length and sha256."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    last_error: BaseException | None = None
    for attempt in range(RETRIES):
        if attempt:
            time.sleep(BACKOFF_S * 2 ** (attempt - 1))
        temporary = temporary_path(destination)
        try:
            digest = _fetch(url, temporary)
        except Exception as exc:  # noqa: BLE001 - classified just below
            temporary.unlink(missing_ok=True)
            last_error = exc
            if _retryable(exc):
                continue
            raise DownloadError(f"{url}: {exc}") from None
        if sha256 is not None and digest != sha256:
            temporary.unlink(missing_ok=True)
            raise DownloadError(f"{url}: sha256 is {digest}, expected {sha256}")
        os.replace(temporary, destination)
        return destination
    raise DownloadError(f"{url}: failed after {RETRIES} attempts: {last_error}")


def _fetch(url: str, target: Path) -> str:
    """Stream the body to `target`; returns its sha256. A body shorter than Content-Length is an error."""
    request = urllib.request.Request(url, headers={"User-Agent": "ccpipeline"})
    digest = hashlib.sha256()
    received = 0
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(target, "wb") as out:
        expected = response.headers.get("Content-Length")
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
    if expected is not None and received != int(expected):
        raise ConnectionError(f"connection closed after {received} of {expected} bytes")
    return digest.hexdigest()
