"""Common Crawl input: pick files of a crawl from its paths manifest, deterministically, and bring them into a
local cache, where the planner cuts them into units like any local file.

The manifest (`crawl-data/<crawl>/<kind>.paths.gz`) lists one path per line; the selection keeps manifest order,
optionally only some segments, optionally a seeded-hash sample, then the first `limit`. Files keep their path under
the cache directory, so their names (which document ids are made from) are the crawl's own: a run over the cache and
a run over the same files anywhere else give the same ids. Downloads go through pipeline/io/download.py (retries
with backoff, HTTP range resume, length check) or, for s3:// gs:// file:// base URLs, through pyarrow's filesystems.
"""

from __future__ import annotations

import gzip
import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline.io.download import DownloadError, cache_base
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


def fetch(base_url: str, path: str, destination: Path, retries: int) -> Path:
    """`base_url/path` into `destination` (kept when already there: crawl files never change)."""
    return fetch_uri(f"{base_url.rstrip('/')}/{path}", destination, retries)


def resolve(config) -> tuple[list[str], dict[str, str]]:
    """(local paths of the selected files, {path: error} of those that could not be fetched)."""
    root = cache_root(config.cache_dir)
    manifest = fetch(config.base_url, manifest_path(config.crawl, config.kind),
                     root / manifest_path(config.crawl, config.kind), config.retries)
    try:
        lines = gzip.decompress(manifest.read_bytes()).decode("utf-8").splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        manifest.unlink(missing_ok=True)  # a damaged copy must not stay cached
        raise DownloadError(f"{manifest}: not a gzipped paths manifest ({exc})") from None
    paths = select_paths(lines, config.segments, config.sample, config.limit, config.seed)
    failures: dict[str, str] = {}

    def one(path: str) -> str | None:
        try:
            return str(fetch(config.base_url, path, root / path, config.retries))
        except DownloadError as exc:
            failures[path] = str(exc)
            return None

    with ThreadPoolExecutor(max_workers=config.parallel_downloads) as pool:
        local = [path for path in pool.map(one, paths) if path is not None]
    return local, failures
