"""Run directories on local disk or on any pyarrow filesystem (s3://, gs://, hdfs://), behind one path type.

On a cluster every worker writes its units' outputs to the run directory, so the run directory must be storage
they all reach: an object store. `storage_path()` gives a `pathlib.Path` for local locations (and file:// URIs) and
a `RemotePath` for the others. `RemotePath` has the part of pathlib's API the pipeline uses (`/`, name, parent,
exists, read_bytes, read_text, glob, rglob, unlink, mkdir), so the code that lays out and reads a run directory is
written once for both.

A URI may carry pyarrow's filesystem options as a query, and they travel with every path made from it:
`s3://bucket/runs/x?endpoint_override=127.0.0.1:9000&scheme=http` (an S3-compatible store such as MinIO).
Credentials come from the usual places (AWS_ACCESS_KEY_ID..., ~/.aws, instance roles; GOOGLE_APPLICATION_CREDENTIALS).

Parquet and Arrow readers and writers take `arrow_location(path)`: the path as the filesystem knows it, and the
filesystem (None for local paths).
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import shutil
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Union
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

REMOTE_SCHEMES = ("s3", "gs", "gcs", "hdfs")
_BUCKET_SCHEMES = ("s3", "gs", "gcs")  # the filesystem's path starts with the bucket (the URI's host)


class RemotePath:
    """A file or folder on a pyarrow filesystem, named by a URI. Immutable and picklable (it travels as its URI)."""

    def __init__(self, uri: str):
        base, _, query = uri.partition("?")
        parts = urlsplit(base)
        if parts.scheme not in REMOTE_SCHEMES:
            raise ValueError(f"{uri}: not a filesystem URI ({', '.join(s + '://' for s in REMOTE_SCHEMES)})")
        self._filesystem = _filesystem(parts.scheme, parts.netloc, query)
        bucket_first = parts.scheme in _BUCKET_SCHEMES
        self._path = ((parts.netloc + parts.path) if bucket_first else parts.path).rstrip("/")
        self._prefix = f"{parts.scheme}://" + ("" if bucket_first else parts.netloc)
        self._query = query

    # ------------------------------------------------------------------------------------------------ naming
    @property
    def uri(self) -> str:
        return self._prefix + self._path + (f"?{self._query}" if self._query else "")

    @property
    def filesystem(self) -> pafs.FileSystem:
        return self._filesystem

    @property
    def path(self) -> str:
        """The path as the filesystem knows it (`bucket/key` for object stores)."""
        return self._path

    @property
    def name(self) -> str:
        return PurePosixPath(self._path).name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self._path).suffix

    @property
    def parent(self) -> "RemotePath":
        return self._child(str(PurePosixPath(self._path).parent))

    def __truediv__(self, name: str | os.PathLike) -> "RemotePath":
        return self._child(posixpath.normpath(f"{self._path}/{os.fspath(name)}"))  # a/b/../c is a/c

    def with_name(self, name: str) -> "RemotePath":
        return self.parent / name

    def resolve(self) -> "RemotePath":
        return self

    def is_relative_to(self, other: object) -> bool:
        return isinstance(other, RemotePath) and (self._path + "/").startswith(other._path.rstrip("/") + "/")

    def relative_to(self, other: "RemotePath") -> PurePosixPath:
        if not self.is_relative_to(other):
            raise ValueError(f"{self} is not under {other}")
        return PurePosixPath(self._path).relative_to(other._path)

    def _child(self, path: str) -> "RemotePath":
        child = object.__new__(RemotePath)
        child._filesystem, child._path, child._prefix, child._query = self._filesystem, path, self._prefix, self._query
        return child

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"RemotePath({self.uri!r})"

    def __reduce__(self):
        return RemotePath, (self.uri,)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    def __lt__(self, other: "RemotePath") -> bool:
        return self.uri < other.uri

    # ---------------------------------------------------------------------------------------------- contents
    def _info(self) -> pafs.FileInfo:
        return self._filesystem.get_file_info(self._path)

    def exists(self) -> bool:
        return self._info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self._info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._info().type == pafs.FileType.Directory

    def size(self) -> int:
        return self._info().size

    def read_bytes(self) -> bytes:
        with self._filesystem.open_input_stream(self._path, compression=None) as stream:
            return stream.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def _listing(self, recursive: bool) -> list[pafs.FileInfo]:
        return self._filesystem.get_file_info(pafs.FileSelector(self._path, recursive=recursive,
                                                                allow_not_found=True))

    def iterdir(self) -> list["RemotePath"]:
        return sorted(self._child(info.path) for info in self._listing(recursive=False))

    def glob(self, pattern: str) -> list["RemotePath"]:
        """Entries directly in this folder whose name matches (no '/' or '**' in the pattern)."""
        return sorted(self._child(info.path) for info in self._listing(recursive=False)
                      if fnmatch.fnmatchcase(PurePosixPath(info.path).name, pattern))

    def rglob(self, pattern: str) -> list["RemotePath"]:
        """Files anywhere under this folder whose name matches."""
        return sorted(self._child(info.path) for info in self._listing(recursive=True)
                      if info.type == pafs.FileType.File and fnmatch.fnmatchcase(PurePosixPath(info.path).name, pattern))

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        self._filesystem.create_dir(self._path, recursive=True)  # object stores have no folders: a no-op there

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self._filesystem.delete_file(self._path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def move(self, target: "RemotePath") -> None:
        """Rename within the filesystem. On object stores a copy then a delete: the target key appears whole."""
        self._filesystem.move(self._path, target._path)


StoragePath = Union[Path, RemotePath]


def storage_path(location: str | os.PathLike | RemotePath) -> StoragePath:
    """A Path for a local location or file:// URI, a RemotePath for a filesystem URI."""
    if isinstance(location, RemotePath):
        return location
    text = os.fspath(location)
    if text.startswith("file://"):
        return Path(text[len("file://"):])
    if "://" in text:
        return RemotePath(text)
    return Path(text)


def arrow_location(path: StoragePath | str) -> tuple[str, pafs.FileSystem | None]:
    """(path, filesystem) for pyarrow's readers and writers: `pq.read_table(*arrow_location(p))` reads either."""
    path = storage_path(path) if isinstance(path, str) else path
    if isinstance(path, RemotePath):
        return path.path, path.filesystem
    return str(path), None


def remove_tree(path: StoragePath) -> None:
    """Remove a file or folder of the run directory; a symbolic link is removed, never followed."""
    if isinstance(path, RemotePath):
        if path.is_dir():
            path.filesystem.delete_dir(path.path)
        elif path.exists():
            path.unlink()
    elif path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def file_sizes(folder: StoragePath, pattern: str) -> dict[str, int]:
    """{name: size} of the files directly in `folder` whose name matches, from one listing (one request on an
    object store, not one per file)."""
    if isinstance(folder, RemotePath):
        return {PurePosixPath(info.path).name: info.size for info in folder._listing(recursive=False)
                if info.type == pafs.FileType.File and fnmatch.fnmatchcase(PurePosixPath(info.path).name, pattern)}
    if not folder.is_dir():
        return {}
    return {entry.name: entry.stat().st_size for entry in os.scandir(folder)
            if entry.is_file() and fnmatch.fnmatchcase(entry.name, pattern)}


def local_copy(path: StoragePath, destination: Path) -> Path:
    """A local file with the bytes of `path` (itself when local): for readers that need a real file, such as a
    memory map or sentencepiece. A copy already there with the same size is reused."""
    if isinstance(path, Path):
        return path
    if destination.exists() and destination.stat().st_size == path.size():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{os.getpid()}.part")
    with path.filesystem.open_input_stream(path.path, compression=None) as source, open(partial, "wb") as out:
        while chunk := source.read(8 << 20):
            out.write(chunk)
    os.replace(partial, destination)
    return destination


@lru_cache(maxsize=32)
def _filesystem(scheme: str, host: str, query: str) -> pafs.FileSystem:
    """One filesystem object per store and options (an S3 client is costly to make), shared by its paths."""
    return pafs.FileSystem.from_uri(f"{scheme}://{host}" + (f"?{query}" if query else ""))[0]


def parquet_file(path: StoragePath | str) -> pq.ParquetFile:
    """A Parquet file's footer and row groups, local or remote (a remote one is read by ranges, not fetched)."""
    where, filesystem = arrow_location(path)
    return pq.ParquetFile(filesystem.open_input_file(where) if filesystem is not None else where)


def read_parquet(path: StoragePath | str, columns: list[str] | None = None) -> pa.Table:
    where, filesystem = arrow_location(path)
    return pq.read_table(where, columns=columns, filesystem=filesystem)
