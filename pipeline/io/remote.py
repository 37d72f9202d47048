"""Input files given as URIs (https://, http://, s3://, gs://, file://), brought into a local cache.

A URI names one file, a folder (every file under it) or, for filesystem URIs, a glob (`s3://bucket/crawl/*.warc.gz`).
Each file is fetched once into `<cache>/inputs/<scheme>/<host>/<path>`, keeping its name, so that document ids
(made from file names) are those of a run over the same files anywhere. HTTP goes through pipeline/io/download.py
(retries, range resume, length check); the others through pyarrow's filesystems.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from urllib.parse import urlparse

from pipeline.io.download import DownloadError, download

SCHEMES = ("http://", "https://", "s3://", "gs://", "file://")
_GLOB = set("*?[")


def is_uri(text: str) -> bool:
    return text.startswith(SCHEMES)


def local_copy(uri: str, cache: Path) -> Path:
    """Where the cached copy of `uri` lives."""
    parsed = urlparse(uri)
    return cache / "inputs" / parsed.scheme / (parsed.netloc or "_") / parsed.path.lstrip("/")


def expand_uri(uri: str) -> list[str]:
    """The file URIs a URI names (itself for http(s)), sorted."""
    if uri.startswith(("http://", "https://")):
        return [uri]
    import pyarrow.fs as pafs

    scheme = uri.split("://", 1)[0]
    try:
        filesystem, path = pafs.FileSystem.from_uri(uri if not any(c in _GLOB for c in uri) else _glob_root(uri))
    except (OSError, ValueError) as exc:
        raise DownloadError(f"{uri}: {exc}") from None
    prefix = uri[: len(uri) - len(uri.split("://", 1)[1])]  # "s3://", "file://"
    if any(c in _GLOB for c in uri):
        pattern = uri.split("://", 1)[1].lstrip("/")
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
    return sorted(prefix + ("/" if scheme == "file" and not p.startswith("/") else "") + p for p in found)


def _glob_root(uri: str) -> str:
    """The longest leading part of a glob URI without glob characters, up to a '/'."""
    head = uri[: min(uri.index(c) for c in _GLOB if c in uri)]
    return head[: head.rindex("/") + 1] if "/" in head.split("://", 1)[1] else head


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


def resolve_uris(uris: list[str], cache: Path, retries: int = 5) -> tuple[list[str], dict[str, str]]:
    """(local paths of every file the URIs name, {uri: error} for what could not be listed or fetched)."""
    local, failures = [], {}
    for uri in uris:
        try:
            files = expand_uri(uri)
        except DownloadError as exc:
            failures[uri] = str(exc)
            continue
        if not files:
            failures[uri] = f"{uri}: matches no file"
        for file_uri in files:
            try:
                local.append(str(fetch(file_uri, local_copy(file_uri, cache), retries)))
            except DownloadError as exc:
                failures[file_uri] = str(exc)
    return local, failures
