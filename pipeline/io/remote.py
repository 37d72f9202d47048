"""Input files given as URIs (https://, http://, s3://, gs://, file://): listed, and read where they are.

A URI names one file, a folder (every file under it) or, for filesystem URIs, a glob (`s3://bucket/crawl/*.warc.gz`).
The driver only lists them and reads their sizes; each unit's bytes are read by the worker that runs it
(pipeline/io/ranged.py). Document ids are made from file names, so they are those of a run over the same files
anywhere. `fetch` copies one small file (a Common Crawl paths manifest) into a local cache.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from pipeline.io.download import DownloadError, download
from pipeline.io.ranged import input_fingerprint

SCHEMES = ("http://", "https://", "s3://", "gs://", "file://")
_GLOB = set("*?[")


def is_uri(text: str) -> bool:
    return text.startswith(SCHEMES)


def expand_uri(uri: str) -> list[str]:
    """The files a URI names, sorted: itself for http(s); for s3:// gs:// a listing (keeping the URI's query, its
    filesystem options, on every file); for file:// local paths."""
    if uri.startswith(("http://", "https://")):
        return [uri]
    import pyarrow.fs as pafs

    base, _, query = uri.partition("?") if not uri.startswith("file://") else (uri, "", "")
    scheme, rest = base.split("://", 1)
    globbed = any(c in _GLOB for c in rest)
    try:
        root = _glob_root(base) if globbed else base
        filesystem, path = pafs.FileSystem.from_uri(root + (f"?{query}" if query else ""))
    except (OSError, ValueError) as exc:
        raise DownloadError(f"{uri}: {exc}") from None
    if globbed:
        pattern = rest.lstrip("/")
        infos = filesystem.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        found = [info.path for info in infos
                 if info.type == pafs.FileType.File and fnmatch.fnmatch(info.path.lstrip("/"), pattern)]
    else:
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            infos = filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
            found = [i.path for i in infos if i.type == pafs.FileType.File and not Path(i.path).name.startswith(".")]
        elif info.type == pafs.FileType.File:
            found = [info.path]
        else:
            found = []
    if scheme == "file":
        return sorted(found)
    return sorted(f"{scheme}://{p.lstrip('/')}" + (f"?{query}" if query else "") for p in found)


def _glob_root(uri: str) -> str:
    """The longest leading part of a glob URI without glob characters, up to a '/'."""
    head = uri[: min(uri.index(c) for c in _GLOB if c in uri)]
    return head[: head.rindex("/") + 1] if "/" in head.split("://", 1)[1] else head


def list_uris(uris: list[str], tries: int = 5) -> tuple[dict[str, dict], dict[str, str]]:
    """({file: its size and modification time} of every file the URIs name, as URIs read in place or local paths;
    {uri: error} for what could not be listed, or whose size could not be read). Nothing is downloaded: the workers
    read their units' byte ranges."""
    files, failures = {}, {}
    for uri in uris:
        try:
            found = expand_uri(uri)
        except DownloadError as exc:
            failures[uri] = str(exc)
            continue
        if not found:
            failures[uri] = f"{uri}: matches no file"
        for file_uri in found:
            try:
                files[file_uri] = input_fingerprint(file_uri, tries)
            except OSError as exc:
                failures[file_uri] = str(exc)
    return files, failures


def fetch(uri: str, destination: Path, retries: int = 5) -> Path:
    """`uri` into `destination`, unless already there (inputs are not expected to change under the same name)."""
    if destination.exists():
        return destination
    if uri.startswith(("http://", "https://")):
        return download(uri, destination, retries=retries)
    import pyarrow.fs as pafs

    try:
        filesystem, path = pafs.FileSystem.from_uri(uri)
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(f".{destination.name}.part")
        # compression=None: bytes as stored (the default would gunzip a .gz on the way)
        with filesystem.open_input_stream(path, compression=None) as source, open(partial, "wb") as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)
    except (OSError, ValueError) as exc:
        raise DownloadError(f"{uri}: {exc}") from None
    os.replace(partial, destination)
    return destination
