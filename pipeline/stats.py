"""Counting every record: per stage, rows in = kept + dropped (by reason) + failed (by error).

A `StageTally` counts one stage over one unit; units' tallies are stored in their completion markers and merged
into the run's statistics files, so the numbers survive resume and add up across cluster workers. The files are
plain Parquet and JSON for notebooks (pandas, polars, duckdb).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.io.atomic import atomic_write_files, json_bytes, parquet_bytes
from pipeline.schema import DROP_REASON, ERROR, ERROR_DETAIL
from pipeline.tree_reduce import tree_reduce

EXAMPLES_PER_REASON = 3
READ_STAGE = "read"


@dataclass
class StageTally:
    """Counts for one stage (over one unit, or merged over many)."""

    stage: str
    rows_in: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    examples: list[dict] = field(default_factory=list)
    counts: dict = field(default_factory=dict)  # what the stage counts beyond its outcomes (Stage.counts), summed

    def count(self, outcome: pa.Table, seconds: float) -> pa.Array:
        """Count a stage's output batch; returns the mask of kept rows."""
        drop_reason = outcome.column(DROP_REASON)
        error = outcome.column(ERROR)
        kept_mask = pc.and_(pc.is_null(drop_reason), pc.is_null(error))
        dropped_mask = pc.and_(pc.invert(pc.is_null(drop_reason)), pc.is_null(error))
        self.rows_in += outcome.num_rows
        self.kept += pc.sum(kept_mask).as_py() or 0
        self.seconds += seconds
        self._count_values(self.dropped, pc.filter(drop_reason, dropped_mask))
        self._count_values(self.failed, pc.drop_null(error))
        self._keep_examples(outcome, pc.invert(kept_mask))
        return kept_mask

    @staticmethod
    def _count_values(counter: Counter, values: pa.ChunkedArray) -> None:
        for item in pc.value_counts(values).to_pylist():
            counter[item["values"]] += item["counts"]

    def _keep_examples(self, outcome: pa.Table, not_kept: pa.Array) -> None:
        """A few rows per failure and per drop reason, with where they came from, for `pipeline stats`."""
        if not pc.any(not_kept).as_py():
            return
        seen = Counter((ex["outcome"], ex["reason"]) for ex in self.examples)
        columns = [name for name in ("source", "offset", "url", DROP_REASON, ERROR, ERROR_DETAIL) if name in outcome.column_names]
        for row in pc.filter(outcome.select(columns), not_kept).to_pylist():
            key = ("failed", row[ERROR]) if row.get(ERROR) else ("dropped", row[DROP_REASON])
            if seen[key] >= EXAMPLES_PER_REASON:
                continue
            seen[key] += 1
            self.examples.append(
                {
                    "outcome": key[0],
                    "reason": key[1],
                    "source": row.get("source"),
                    "offset": row.get("offset"),
                    "url": row.get("url"),
                    "detail": row.get(ERROR_DETAIL),
                }
            )

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    def merge(self, other: "StageTally") -> None:
        self.rows_in += other.rows_in
        self.kept += other.kept
        self.dropped.update(other.dropped)
        self.failed.update(other.failed)
        self.seconds += other.seconds
        add_counts(self.counts, other.counts)
        seen = Counter((ex["outcome"], ex["reason"]) for ex in self.examples)
        for example in other.examples:
            key = (example["outcome"], example["reason"])
            if seen[key] < EXAMPLES_PER_REASON:
                seen[key] += 1
                self.examples.append(example)

    def to_dict(self) -> dict:
        return {
            "stage": self.stage,
            "rows_in": self.rows_in,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "failed": dict(sorted(self.failed.items())),
            "seconds": round(self.seconds, 4),
            "examples": self.examples,
            **({"counts": self.counts} if self.counts else {}),
        }

    @classmethod
    def from_dict(cls, values: dict) -> "StageTally":
        return cls(
            stage=values["stage"],
            rows_in=values["rows_in"],
            kept=values["kept"],
            dropped=Counter(values["dropped"]),
            failed=Counter(values["failed"]),
            seconds=values["seconds"],
            examples=list(values.get("examples", [])),
            counts=dict(values.get("counts", {})),
        )


def add_counts(total: dict, more: dict) -> None:
    """Add nested counts (dicts whose leaves are integers, as Stage.counts returns them) into `total`, key by key."""
    for key, value in more.items():
        if isinstance(value, dict):
            add_counts(total.setdefault(key, {}), value)
        else:
            total[key] = total.get(key, 0) + value


def merge_tallies(per_unit: Iterable[list[StageTally]]) -> list[StageTally]:
    """Merge units' stage tallies, keeping stage order."""
    merged: dict[str, StageTally] = {}
    for tallies in per_unit:
        for tally in tallies:
            merged.setdefault(tally.stage, StageTally(tally.stage)).merge(tally)
    return list(merged.values())


def accounting_problems(funnel: list[StageTally], unit_problems: Iterable[str] = ()) -> list[str]:
    """Where the books do not balance (empty when every record is accounted for): a stage whose rows in are not
    its kept, dropped and failed rows; a stage that received other than what the one before it kept; and
    `unit_problems`, the finished units' own (`unit_accounting`, gathered by `merge_markers`)."""
    problems = list(unit_problems)
    for tally in funnel:
        if tally.rows_in != tally.kept + tally.dropped_total + tally.failed_total:
            problems.append(
                f"{tally.stage}: {tally.rows_in} in != {tally.kept} kept + {tally.dropped_total} dropped "
                f"+ {tally.failed_total} failed"
            )
    for before, after in zip(funnel, funnel[1:]):
        if after.rows_in != before.kept:
            problems.append(f"{after.stage} received {after.rows_in} rows but {before.stage} kept {before.kept}")
    return problems


def unit_accounting(marker: dict) -> list[str]:
    """A finished unit's own accounting problem: a documents part holding other than what its last stage kept."""
    last = marker["stages"][-1]
    if marker["documents"] != last["kept"]:
        return [f"unit {marker['unit']}: wrote {marker['documents']} documents but {last['stage']} kept {last['kept']}"]
    return []


@dataclass
class MarkersMerged:
    """What the driver needs of a set of finished units' markers, merged: the stage tallies, the units' own
    accounting problems, each unit's record span (`members`, for plan.boundary_fixes) and the per-unit rows of
    stats/units.parquet, in the order of the units given. Small values only: no marker is kept whole."""

    tallies: list[StageTally] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    members: dict[str, dict] = field(default_factory=dict)
    unit_rows: pa.Table = field(default_factory=lambda: _UNITS_SCHEMA.empty_table())
    units: int = 0


def read_markers(run_root: str, unit_ids: list[str]) -> MarkersMerged:
    """Read and merge one batch of markers (a leaf of `merge_markers`' tree)."""
    from pipeline.io.storage import storage_path
    from pipeline.run_dir import RunDir

    run = RunDir(storage_path(run_root))
    markers = [run.read_marker(unit_id) for unit_id in unit_ids]
    return MarkersMerged(
        tallies=merge_tallies([StageTally.from_dict(stage) for stage in marker["stages"]] for marker in markers),
        problems=[problem for marker in markers for problem in unit_accounting(marker)],
        members={marker["unit"]: marker["members"] for marker in markers},
        unit_rows=pa.Table.from_pylist(marker_unit_rows(markers), schema=_UNITS_SCHEMA),
        units=len(markers),
    )


def combine_merged(*parts: MarkersMerged) -> MarkersMerged:
    """Merge merged batches, in the order given (an inner node of `merge_markers`' tree)."""
    return MarkersMerged(
        tallies=merge_tallies(part.tallies for part in parts),
        problems=[problem for part in parts for problem in part.problems],
        members={unit: span for part in parts for unit, span in part.members.items()},
        unit_rows=pa.concat_tables([part.unit_rows for part in parts]),
        units=sum(part.units for part in parts),
    )


@dataclass
class MergePlan:
    """How `merge_markers` merged: markers per leaf task, leaves, inner tasks, and rounds of inner tasks."""

    batch_size: int
    batches: int = 0
    inner_tasks: int = 0
    rounds: int = 0


MARKER_BATCH = 1000
MERGE_FANOUT = 16


def merge_markers(run_root: str, unit_ids: list[str], submit: Callable | None = None, fetch: Callable | None = None,
                  batch_size: int = MARKER_BATCH, fanout: int = MERGE_FANOUT) -> tuple[MarkersMerged, MergePlan]:
    """Merge the markers of `unit_ids` as a tree: each leaf reads `batch_size` markers (`read_markers`), each inner
    node merges up to `fanout` results (`combine_merged`), so a run with N markers takes ceil(log_fanout(N /
    batch_size)) rounds after the leaves. `submit(function, *args)` runs a node (on Ray: a task, whose result stays
    in the object store until the next round consumes it; by default in this process) and `fetch` gets the root's
    result: the driver holds one reference per batch, never a marker."""
    submit = submit or (lambda function, *args: function(*args))
    fetch = fetch or (lambda result: result)
    plan = MergePlan(batch_size)
    level = [submit(read_markers, run_root, unit_ids[start:start + batch_size])
             for start in range(0, len(unit_ids), batch_size)]
    plan.batches = len(level)
    if not level:
        return MarkersMerged(), plan
    root, plan.rounds, plan.inner_tasks = tree_reduce(level, lambda items: submit(combine_merged, *items), fanout)
    return fetch(root), plan


def marker_unit_rows(markers: Iterable[dict]) -> list[dict]:
    """The rows of stats/units.parquet for these markers: one per unit and stage."""
    return [
        {
            "unit": unit["unit"],
            "path": unit["path"],
            "stage": tally["stage"],
            "rows_in": tally["rows_in"],
            "kept": tally["kept"],
            "dropped": sum(tally["dropped"].values()),
            "failed": sum(tally["failed"].values()),
            "seconds": tally["seconds"],
        }
        for unit in markers
        for tally in unit["stages"]
    ]


class StatsNotWritten(Exception):
    """The run's statistics could not be written (none of them were); carries the run's result for printing."""

    def __init__(self, message: str, result: object):
        super().__init__(message)
        self.result = result


def write_run_stats(stats_dir: Path, funnel: list[StageTally], units: pa.Table, summary: dict,
                    tables: dict[str, pa.Table | None] | None = None) -> None:
    """Write the notebook-facing statistics: funnel, reasons, per-unit counts (`units`: the rows of `marker_unit_rows`,
    as `MarkersMerged.unit_rows` holds them), error examples, summary, and the stage-specific `tables` by file stem
    (None: the run has no such table, and one an earlier run of the directory wrote is removed)."""
    funnel_rows = [
        {
            "stage": tally.stage,
            "order": order,
            "rows_in": tally.rows_in,
            "kept": tally.kept,
            "dropped": tally.dropped_total,
            "failed": tally.failed_total,
            "seconds": tally.seconds,
        }
        for order, tally in enumerate(funnel)
    ]
    reason_rows = [
        {"stage": tally.stage, "outcome": outcome, "reason": reason, "count": count}
        for tally in funnel
        for outcome, counter in (("dropped", tally.dropped), ("failed", tally.failed))
        for reason, count in sorted(counter.items(), key=lambda item: -item[1])
    ]
    example_rows = [{"stage": tally.stage, **example} for tally in funnel for example in tally.examples]
    atomic_write_files({  # all or none: summary.json, which readers look for first, is renamed last
        stats_dir / "funnel.parquet": parquet_bytes(pa.Table.from_pylist(funnel_rows, schema=_FUNNEL_SCHEMA)),
        stats_dir / "reasons.parquet": parquet_bytes(pa.Table.from_pylist(reason_rows, schema=_REASONS_SCHEMA)),
        stats_dir / "examples.parquet": parquet_bytes(pa.Table.from_pylist(example_rows, schema=_EXAMPLES_SCHEMA)),
        stats_dir / "units.parquet": parquet_bytes(units.combine_chunks()),
        **{stats_dir / f"{name}.parquet": parquet_bytes(table) for name, table in (tables or {}).items()
           if table is not None},
        stats_dir / "summary.json": json_bytes({**summary, "stages": [tally.to_dict() for tally in funnel]}),
    })
    for name, table in (tables or {}).items():
        if table is None:
            (stats_dir / f"{name}.parquet").unlink(missing_ok=True)


class StatsUnreadable(Exception):
    """A run's stats/summary.json is not what `write_run_stats` wrote (cut short, edited, damaged): one line
    naming the file."""


# What the readers of a summary rely on (`pipeline stats`, the report), with the type each must have.
SUMMARY_KEYS = {"name": str, "units": int, "records_read": int, "documents": int, "wall_seconds": (int, float),
                "stages": list}
# The input files a summary reports (plan.input_report), with the type of each key.
INPUT_FILES_KEYS = {"read": int, "skipped": list, "empty": list, "warnings": list}


def read_funnel(stats_dir: Path) -> tuple[list[StageTally], dict]:
    """The merged tallies and summary saved by `write_run_stats`; StatsUnreadable when the file is not that."""
    path = stats_dir / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StatsUnreadable(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:  # not UTF-8, not JSON
        raise StatsUnreadable(f"{path}: not a run summary (not JSON: {' '.join(str(exc).split())})") from None
    if not isinstance(summary, dict):
        raise StatsUnreadable(f"{path}: not a run summary (a JSON {type(summary).__name__}, not an object)")
    for key, kind in SUMMARY_KEYS.items():
        if not isinstance(summary.get(key), kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise StatsUnreadable(f"{path}: not a run summary ({key!r} missing or not {names})")
    if "input_files" in summary and not _is_input_report(summary["input_files"]):
        raise StatsUnreadable(f"{path}: not a run summary ('input_files' is not a report of input files)")
    tallies = []
    for index, stage in enumerate(summary["stages"]):
        try:
            tallies.append(StageTally.from_dict(stage))
        except (KeyError, TypeError, ValueError) as exc:
            problem = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
            raise StatsUnreadable(f"{path}: stages[{index}] is not a stage tally ({problem})") from None
    return tallies, summary


def _is_input_report(value: object) -> bool:
    """Whether a summary's `input_files` is what plan.input_report writes (summaries before it have none)."""
    return (isinstance(value, dict) and all(isinstance(value.get(key), kind) for key, kind in INPUT_FILES_KEYS.items())
            and all(isinstance(entry, dict) and {"path", "reason"} <= entry.keys() for entry in value["skipped"]))


_FUNNEL_SCHEMA = pa.schema(
    [("stage", pa.string()), ("order", pa.int32()), ("rows_in", pa.int64()), ("kept", pa.int64()),
     ("dropped", pa.int64()), ("failed", pa.int64()), ("seconds", pa.float64())]
)
_REASONS_SCHEMA = pa.schema(
    [("stage", pa.string()), ("outcome", pa.string()), ("reason", pa.string()), ("count", pa.int64())]
)
_EXAMPLES_SCHEMA = pa.schema(
    [("stage", pa.string()), ("outcome", pa.string()), ("reason", pa.string()), ("source", pa.string()),
     ("offset", pa.int64()), ("url", pa.string()), ("detail", pa.string())]
)
_UNITS_SCHEMA = pa.schema(
    [("unit", pa.string()), ("path", pa.string()), ("stage", pa.string()), ("rows_in", pa.int64()),
     ("kept", pa.int64()), ("dropped", pa.int64()), ("failed", pa.int64()), ("seconds", pa.float64())]
)

