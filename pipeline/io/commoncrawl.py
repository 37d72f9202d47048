"""Common Crawl input: pick files of a crawl from its paths manifest, deterministically, and plan them where they
are: the driver downloads the manifest and reads each file's size; the workers read their units' byte ranges.

The manifest (`crawl-data/<crawl>/<kind>.paths.gz`) lists one path per line; the selection keeps manifest order,
optionally only some segments, optionally a seeded-hash sample, then the first `limit`. Document ids are made from
the files' names, the crawl's own, so a run over the crawl and a run over local copies of the same files give the
same ids. Files are read over HTTP ranges (pipeline/io/ranged.py: retries with backoff) or, for s3:// gs:// base
URLs, through pyarrow's filesystems; a file:// mirror is read as local files.
"""

from __future__ import annotations

import gzip
import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline.io.download import DownloadError, cache_base
from pipeline.io.ranged import input_fingerprint
from pipeline.io.remote import fetch as fetch_uri


def cache_root(configured: str | None) -> Path:
    return Path(configured).expanduser() if configured else cache_base() / "commoncrawl"


def manifest_path(crawl: str, kind: str) -> str:
    return f"crawl-data/{crawl}/{kind}.paths.gz"


def select_paths(lines: list[str], segments: list[str] | None, sample: float | None, limit: int | None,
                 seed: int) -> list[str]:
    """The manifest's paths to read, in manifest order."""
    paths = [line.strip() for line in lines if line.strip()]
    if segments:
        wanted = {f"/segments/{segment}/" for segment in segments}
        paths = [path for path in paths if any(part in path for part in wanted)]
    if sample is not None:
        threshold = int(sample * 2**64)
        key = seed.to_bytes(8, "little")
        paths = [path for path in paths
                 if int.from_bytes(hashlib.blake2b(path.encode(), digest_size=8, key=key).digest(), "little")
                 < threshold]
    return paths[:limit] if limit else paths


def file_location(base_url: str, path: str) -> str:
    """Where a manifest path is read: a URI under `base_url`, or a local path for a file:// mirror."""
    location = f"{base_url.rstrip('/')}/{path}"
    return location[len("file://"):] if location.startswith("file://") else location


def resolve(config) -> tuple[dict[str, dict], dict[str, str]]:
    """({location: size, modification time and layout} of the selected files, read in place; {path: error} of those
    whose size could not be read).

    Only the manifest is downloaded (into the cache); the files are probed for their size (a HEAD request each,
    `parallel_downloads` at a time), and the workers read their units' byte ranges. Their layout is Common Crawl's:
    one gzip member per record, so planning reads none of their bytes."""
    root = cache_root(config.cache_dir)
    manifest = fetch_uri(f"{config.base_url.rstrip('/')}/{manifest_path(config.crawl, config.kind)}",
                         root / manifest_path(config.crawl, config.kind), config.retries)
    try:
        lines = gzip.decompress(manifest.read_bytes()).decode("utf-8").splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        manifest.unlink(missing_ok=True)  # a damaged copy must not stay cached
        raise DownloadError(f"{manifest}: not a gzipped paths manifest ({exc})") from None
    paths = select_paths(lines, config.segments, config.sample, config.limit, config.seed)
    failures: dict[str, str] = {}

    def one(path: str) -> tuple[str, dict] | None:
        location = file_location(config.base_url, path)
        try:
            fingerprint = input_fingerprint(location, config.retries)
        except OSError as exc:
            failures[path] = str(exc)
            return None
        return location, {**fingerprint, "layout": "gzip_members"}

    with ThreadPoolExecutor(max_workers=config.parallel_downloads) as pool:
        found = dict(entry for entry in pool.map(one, paths) if entry is not None)
    return found, failures
