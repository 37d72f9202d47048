"""Process one unit of work: read its records, run the stages in order, write its documents and its marker.

This is the whole per-document pipeline for a worker, fused into one loop so that a batch never leaves the process
between stages (no serialisation, no object-store copies). The runner gives units to a pool of these workers; the
stages are built once per worker, from this node's copies of the files the driver staged in the run directory
(pipeline/staged_assets.py). Nothing here knows about Ray.
"""

from __future__ import annotations

import time
from itertools import islice
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import RunConfig
from pipeline.io.archive_reader import MemberSpan, ReadOptions
from pipeline.io.atomic import AtomicParquetWriter, atomic_write_json
from pipeline.io.storage import StoragePath, storage_path
from pipeline.io.text_reader import TextFields
from pipeline.io.units import Unit, read_unit
from pipeline.run_dir import RunDir
from pipeline.run_lock import Fence
from pipeline.staged_assets import local_settings
from pipeline.schema import ERROR, LINEAGE_SCHEMA, OUTCOME_FIELDS, RECORD_SCHEMA, TEXT
from pipeline.stats import READ_STAGE, StageTally, add_counts
from stages import STAGES, Stage

BATCH_PAYLOAD_BYTES = 32 * 1024 * 1024  # also bounded by bytes: 256 pages of 5 MB would not fit one Arrow array

ProgressReport = Callable[[str, list[dict]], None]


class StageContractError(RuntimeError):
    """A stage returned a different number of rows than it was given: records would be lost or invented."""


def documents_schema(stages: list[Stage]) -> pa.Schema:
    """Lineage, text, then each stage's own columns, in stage order."""
    fields = list(LINEAGE_SCHEMA) + [pa.field(TEXT, pa.string())]
    for stage in stages:
        fields += [field for field in stage.output_fields if field.name not in {f.name for f in fields}]
    return pa.schema(fields)


def rejects_schema(documents: pa.Schema) -> pa.Schema:
    schema = documents.append(pa.field("stage", pa.string()))
    for name in OUTCOME_FIELDS:
        schema = schema.append(pa.field(name, pa.string()))
    return schema


class UnitWorker:
    """Builds the stages once; `process(unit)` runs one unit end to end and returns its marker."""

    def __init__(self, config: RunConfig, run_dir: StoragePath, fence: Fence | None = None):
        """`fence`: checked before a unit's files are touched and before they are committed, so that a worker
        whose run has ended or been superseded writes nothing (None: the worker runs in the driver itself)."""
        self.config = config
        self.fence = fence
        self.run_dir = RunDir(storage_path(run_dir))
        self.stages: list[Stage] = [
            STAGES[name](local_settings(settings, STAGES[name].file_settings, self.run_dir.root))
            for name, settings in config.document_stages()
        ]
        self.read_options = ReadOptions(
            html_content_types=tuple(config.input.html_content_types),
            max_payload_bytes=int(config.input.max_payload_mb * 1024 * 1024),
        )
        fields = config.input.fields
        self.text_fields = TextFields(text=fields.text, id=fields.id, url=fields.url, date=fields.date)
        self.documents_schema = documents_schema(self.stages)

    def process(self, unit: Unit, report: ProgressReport | None = None) -> dict:
        started = time.perf_counter()
        self._check_fence()
        for earlier in (self.run_dir.document_part(unit.id), self.run_dir.reject_part(unit.id)):
            earlier.unlink(missing_ok=True)  # of an attempt killed after its rename: it has no marker to vouch for it
        tallies = [StageTally(READ_STAGE)] + [StageTally(stage.name) for stage in self.stages]
        documents = AtomicParquetWriter(self.run_dir.document_part(unit.id), self.documents_schema)
        writers = [documents]
        rejects = None
        span = MemberSpan()
        try:
            if self.config.rejects:
                rejects = AtomicParquetWriter(self.run_dir.reject_part(unit.id), rejects_schema(self.documents_schema))
                writers.append(rejects)
            for records, read_seconds in self._record_batches(unit, span):
                kept = self._account(tallies[0], records, read_seconds, rejects, failed_only=True)
                for stage, tally in zip(self.stages, tallies[1:]):
                    if not kept.num_rows:
                        break
                    stage_started = time.perf_counter()
                    outcome = stage(kept)
                    if outcome.num_rows != kept.num_rows:
                        raise StageContractError(
                            f"stage {stage.name} returned {outcome.num_rows} rows for {kept.num_rows}"
                        )
                    add_counts(tally.counts, stage.counts(outcome))
                    kept = self._account(tally, outcome, time.perf_counter() - stage_started, rejects)
                documents.write(kept)
                if report is not None:
                    report(unit.id, [tally.to_dict() for tally in tallies])
            self._check_fence()
        except BaseException:
            for writer in writers:
                writer.abort()
            raise
        for index, writer in enumerate(writers):
            try:
                writer.commit()
            except BaseException:  # (a full disk) the writers not yet committed are given up too
                for later in writers[index + 1:]:
                    later.abort()
                raise
        marker = {
            "unit": unit.id,
            "path": unit.path,
            "documents": documents.rows,
            "rejects": rejects.rows if rejects is not None else None,
            "seconds": round(time.perf_counter() - started, 4),
            "members": {"first": span.first, "next": span.next},
            "stages": [tally.to_dict() for tally in tallies],
        }
        try:
            atomic_write_json(self.run_dir.marker(unit.id), marker)
        except BaseException:  # parts without a marker would be read by the global stages: take them back
            for writer in writers:
                writer.final.unlink(missing_ok=True)
            raise
        return marker

    def _check_fence(self) -> None:
        if self.fence is not None:
            self.fence.check()

    def _record_batches(self, unit: Unit, span: MemberSpan) -> Iterator[tuple[pa.Table, float]]:
        """The unit's records as Arrow batches, bounded by rows and by payload bytes, with the time spent reading."""
        rows_iter = read_unit(unit, self.read_options, self.text_fields, span)
        while True:
            started = time.perf_counter()
            rows: list[dict] = []
            payload_bytes = 0
            for row in islice(rows_iter, self.config.batch_rows):
                rows.append(row)
                payload_bytes += len(row["html"] or b"") + len(row["text"] or "")
                if payload_bytes >= BATCH_PAYLOAD_BYTES:
                    break
            if not rows:
                return
            yield pa.Table.from_pylist(rows, schema=RECORD_SCHEMA), time.perf_counter() - started

    def _account(self, tally: StageTally, outcome: pa.Table, seconds: float, rejects: AtomicParquetWriter | None,
                 failed_only: bool = False) -> pa.Table:
        """Count a stage's outcome, send the rows it did not keep to rejects (`failed_only`: only those that failed,
        as for the read stage, whose drops are the crawl's requests, metadata and non-HTML records), return the
        kept rows."""
        kept_mask = tally.count(outcome, seconds)
        if rejects is not None:
            not_kept = outcome.filter(pc.is_valid(outcome.column(ERROR)) if failed_only else pc.invert(kept_mask))
            rejects.write(not_kept.append_column("stage", pa.array([tally.stage] * not_kept.num_rows, pa.string())))
        return outcome.filter(kept_mask)

    def close(self) -> None:
        for stage in self.stages:
            stage.close()
