"""Lineage values every output row carries: a stable id, the URL's host and registered domain, the capture date."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from functools import lru_cache
from urllib.parse import urlsplit

import tldextract

# The bundled public-suffix snapshot only: no network at run time, and the same answer on every machine.
_SUFFIXES = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def source_name(path: str) -> str:
    """The file name that document ids are derived from: the same file read locally, over HTTP or from S3 keeps
    the same ids, which is what makes runs comparable and resumable across storage."""
    return os.path.basename(path.rstrip("/"))


def doc_id(source: str, position: int) -> str:
    """Stable 64-bit document id (16 hex chars) from the source file name and the record's offset or line."""
    digest = hashlib.blake2b(f"{source_name(source)}:{position}".encode(), digest_size=8)
    return digest.hexdigest()


@lru_cache(maxsize=65536)
def _host_and_domain(host: str) -> tuple[str, str]:
    parts = _SUFFIXES.extract_str(host)
    if parts.domain and parts.suffix:
        return host, f"{parts.domain}.{parts.suffix}"
    return host, host


def host_and_domain(url: str | None) -> tuple[str | None, str | None]:
    """Lower-cased host (no port, no credentials) and registered domain (eTLD+1, e.g. bbc.co.uk) of a web URL."""
    if not url:
        return None, None
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname if parts.scheme.lower() in ("http", "https") else None
    except ValueError:
        return None, None
    if not host:
        return None, None
    return _host_and_domain(host.rstrip("."))


def parse_capture_date(value: str | None) -> datetime | None:
    """WARC-Date (ISO 8601) or ARC archive-date (14+ digits) as an aware UTC datetime; None when unparseable."""
    if not value:
        return None
    value = value.strip()
    try:
        if value[:14].isdigit():
            return datetime.strptime(value[:14], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)
