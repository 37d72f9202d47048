"""Atomic writes: a file appears complete under its final name or not at all.

Everything is written to a temporary name in the destination directory and renamed into place, so a run killed
half-way leaves no half-written output that a re-run (or a notebook) could mistake for a finished one.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PARQUET_OPTIONS = {"compression": "zstd"}


def temporary_path(final: Path) -> Path:
    """A unique hidden name beside `final` (same directory, so the rename is atomic)."""
    return final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write_bytes(final: Path, data: bytes) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(final)
    with open(temporary, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, final)


def atomic_write_json(final: Path, value: object) -> None:
    atomic_write_bytes(final, (json.dumps(value, indent=2, sort_keys=False, default=str) + "\n").encode())


def atomic_write_parquet(final: Path, table: pa.Table) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(final)
    pq.write_table(table, temporary, **PARQUET_OPTIONS)
    os.replace(temporary, final)


class AtomicParquetWriter:
    """Streams batches into one Parquet file that appears under its final name only on `commit()`."""

    def __init__(self, final: Path, schema: pa.Schema):
        self.final = final
        self.schema = schema
        self.rows = 0
        final.parent.mkdir(parents=True, exist_ok=True)
        self._temporary = temporary_path(final)
        self._writer = pq.ParquetWriter(self._temporary, schema, **PARQUET_OPTIONS)

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
        self._writer.close()
        os.replace(self._temporary, self.final)

    def abort(self) -> None:
        self._writer.close()
        self._temporary.unlink(missing_ok=True)
