"""Atomic writes: a file appears complete under its final name or not at all.

Everything is written to a temporary name in the destination directory and renamed into place, so a run killed
half-way leaves no half-written output that a re-run (or a notebook) could mistake for a finished one. Locally the
file's data is flushed to disk (fsync) before the rename and the directory after it, so that a marker written
next never vouches for a file that a power cut could take back.

The destination may be a local Path or a RemotePath (pipeline/io/storage.py). On object stores the rename is a
server-side copy then a delete: the final key still appears whole or not at all, and a writer that fails is
deleted under its temporary name (an object store's output stream would otherwise publish what it has on close).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io.storage import RemotePath, StoragePath, arrow_location

PARQUET_OPTIONS = {"compression": "zstd"}


def temporary_path(final: StoragePath) -> StoragePath:
    """A unique hidden name beside `final` (same directory, so the rename is atomic)."""
    return final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")


def replace(temporary: StoragePath, final: StoragePath) -> None:
    """Rename a finished temporary file to its final name, durably: the data is on disk before the name is, and
    the name is on disk when this returns."""
    if isinstance(final, RemotePath):
        temporary.move(final)
        return
    _fsync(temporary, os.O_RDONLY)
    os.replace(temporary, final)
    _fsync(final.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def _fsync(path: Path, flags: int) -> None:
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write_bytes(final: StoragePath, data: bytes) -> None:
    atomic_write_files({final: data})


def _discard(temporary: StoragePath) -> None:
    """Remove a temporary file that will not be renamed (its write failed); never raises, so that the first error
    is the one reported."""
    try:
        temporary.unlink(missing_ok=True)
    except OSError:
        pass


def json_bytes(value: object) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=False, default=str) + "\n").encode()


def atomic_write_json(final: StoragePath, value: object) -> None:
    atomic_write_bytes(final, json_bytes(value))


def parquet_bytes(table: pa.Table, **options) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **{**PARQUET_OPTIONS, **options})
    return sink.getvalue().to_pybytes()


def atomic_write_files(contents: dict[StoragePath, bytes]) -> None:
    """Write one file, or several that belong together: every one under its temporary name first, then, only when
    all are written, each renamed into place in the order given (the last one is the one a reader checks). A
    failed write (a full disk) leaves none of them changed and no temporary file."""
    written: list[tuple[StoragePath, StoragePath]] = []
    try:
        for final, data in contents.items():
            final.parent.mkdir(parents=True, exist_ok=True)
            temporary = temporary_path(final)
            written.append((temporary, final))
            if isinstance(temporary, RemotePath):
                with temporary.filesystem.open_output_stream(temporary.path) as out:
                    out.write(data)
            else:
                with open(temporary, "wb") as fh:
                    fh.write(data)
    except BaseException:
        for temporary, _ in written:
            _discard(temporary)
        raise
    for temporary, final in written:
        replace(temporary, final)


def atomic_write_parquet(final: StoragePath, table: pa.Table, **options) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(final)
    where, filesystem = arrow_location(temporary)
    try:
        pq.write_table(table, where, filesystem=filesystem, **{**PARQUET_OPTIONS, **options})
    except BaseException:
        _discard(temporary)
        raise
    replace(temporary, final)


def publish_file(local: Path, final: StoragePath, keep_local: bool = False) -> None:
    """Move (or with keep_local, copy) a finished local file to `final`: renamed when `final` is on the same disk,
    copied under a temporary name and renamed otherwise (another disk, or an object store)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(final, Path):
        if not keep_local:
            try:
                replace(local, final)
                return
            except OSError:  # another filesystem: copy beside the final name first
                pass
        temporary = temporary_path(final)
        try:
            shutil.copyfile(local, temporary)
        except BaseException:
            _discard(temporary)
            raise
        replace(temporary, final)
        if not keep_local:
            local.unlink()
        return
    temporary = temporary_path(final)
    try:
        with open(local, "rb") as source, temporary.filesystem.open_output_stream(temporary.path) as out:
            while chunk := source.read(8 << 20):
                out.write(chunk)
    except BaseException:
        _discard(temporary)
        raise
    replace(temporary, final)
    if not keep_local:
        local.unlink()


class AtomicParquetWriter:
    """Streams batches into one Parquet file that appears under its final name only on `commit()`."""

    def __init__(self, final: StoragePath, schema: pa.Schema):
        self.final = final
        self.schema = schema
        self.rows = 0
        final.parent.mkdir(parents=True, exist_ok=True)
        self._temporary = temporary_path(final)
        where, filesystem = arrow_location(self._temporary)
        try:
            self._writer = pq.ParquetWriter(where, schema, filesystem=filesystem, **PARQUET_OPTIONS)
        except BaseException:  # it may have created the file before failing (a full disk)
            _discard(self._temporary)
            raise

    def write(self, table: pa.Table) -> None:
        """Append rows; columns the schema has and the table lacks are written as nulls."""
        if not table.num_rows:
            return
        columns = [
            table.column(field.name).cast(field.type)
            if field.name in table.column_names
            else pa.nulls(table.num_rows, field.type)
            for field in self.schema
        ]
        self._writer.write_table(pa.Table.from_arrays(columns, schema=self.schema))
        self.rows += table.num_rows

    def commit(self) -> None:
        try:
            self._writer.close()
            replace(self._temporary, self.final)
        except BaseException:
            _discard(self._temporary)
            raise

    def abort(self) -> None:
        """Give up the file: the temporary is removed even when closing fails (a full disk)."""
        try:
            self._writer.close()
        except Exception:
            pass
        finally:
            _discard(self._temporary)
