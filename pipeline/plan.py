"""The plan of a run: which files, cut into which units. Saved as plan.parquet (one row per unit) so that a re-run
resumes the same units, with each input file's use (read, skipped as not data, empty), size and modification time
(plan_inputs.parquet, one row per file), so that a re-run refuses input that changed in between and reports the
same input files. A plan.json saved by an earlier version is still read.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import ConfigError, RunConfig
from pipeline.io.archive_reader import NO_MEMBER
from pipeline.io.atomic import atomic_write_files, parquet_bytes
from pipeline.io.data_files import input_use, warc_and_wet_warning
from pipeline.io.lineage import source_name
from pipeline.io.ranged import RemoteReadError, input_fingerprint, is_remote
from pipeline.io.remote import is_uri
from pipeline.io.storage import StoragePath
from pipeline.io.units import Unit, detect_format, expand_paths, plan_file
from pipeline.output_guard import is_run_file

log = logging.getLogger(__name__)

MB = 1024 * 1024
# unit_mb = "auto": the total input over this many units per worker CPU, between the two sizes below.
AUTO_UNITS_PER_CPU = 8
AUTO_MIN_BYTES = 1 * MB
AUTO_MAX_BYTES = 1024 * MB  # a whole Common Crawl WARC (about 1 GB) is one or two units
CHECK_THREADS = 16  # inputs checked at once on resume
# plan.parquet's columns: the fields of Unit, in their order (load_plan builds units from them positionally).
_UNITS_SCHEMA = pa.schema([("id", pa.string()), ("path", pa.string()), ("format", pa.string()),
                           ("layout", pa.string()), ("start", pa.int64()), ("end", pa.int64()),
                           ("first_member", pa.int64())])
_INPUTS_SCHEMA = pa.schema([("path", pa.string()), ("entry", pa.string())])


class InputChanged(Exception):
    """An input file changed (or went) since the run was planned: its finished units hold the old content."""


def configured_files(config: RunConfig) -> list[str]:
    """The local files that `input.paths` names, expanded (URIs arrive later, as their cached local copies)."""
    files: set[str] = set()
    for pattern in config.input.paths:
        if not is_uri(pattern):
            files.update(expand_paths(pattern))
    return sorted(files)


def plan_inputs(config: RunConfig, generated: list[str], run_root: StoragePath | None = None,
                listed: dict[str, dict] | None = None) -> dict[str, dict]:
    """Every input file once, in a stable order, with its size, modification time and use: {"bytes", "mtime_ns",
    "use": "read" | "skipped" | "empty", "reason" (of a skipped file)}. Never a file the run writes itself (an input
    glob or folder that contains the run directory would otherwise read the run's own output).

    Of the files found through a folder or glob, only data files are read (pipeline/io/data_files.py); a file named
    by its own path, or written by the run (the demo crawl, downloads), is always read. Logs a warning when captures
    come both as WARC and as WET: their pages would be read twice.

    `listed` holds what a listing already told of remote files ({"bytes", "mtime_ns"}, and "layout" where the
    source defines it, as Common Crawl does): those files are not asked again.
    """
    own = (lambda path: is_run_file(run_root, path)) if isinstance(run_root, Path) else (lambda path: False)
    configured = {os.path.abspath(path) for path in configured_files(config) if not own(path)}
    # by the run itself (the demo crawl), or listed from URIs (read in place: a URI stays a URI)
    written = {path if is_remote(path) else os.path.abspath(path) for path in generated}
    named = written | {os.path.abspath(pattern) for pattern in config.input.paths
                       if not is_uri(pattern) and os.path.isfile(pattern)}
    inputs = {}
    listed = listed or {}
    for path in sorted(configured | written):
        known = listed.get(path) or _fingerprint(path)
        use, reason = input_use(path, path in named, known["bytes"])
        inputs[path] = {**known, "use": use, **({"reason": reason} if reason else {})}
    warning = warc_and_wet_warning(files_read(inputs))
    if warning:
        log.warning(warning)
    return inputs


def files_read(inputs: dict[str, dict]) -> list[str]:
    """The input files a plan reads (a plan saved before files had a use reads them all)."""
    return [path for path, entry in inputs.items() if entry.get("use", "read") == "read"]


def input_report(inputs: dict[str, dict]) -> dict:
    """What the run's summary says of its input files: how many are read, which are skipped and why, which are
    empty, and the warning about captures read twice."""
    read = files_read(inputs)
    warning = warc_and_wet_warning(read)
    return {
        "read": len(read),
        "skipped": [{"path": path, "reason": entry["reason"]} for path, entry in inputs.items()
                    if entry.get("use") == "skipped"],
        "empty": [path for path, entry in inputs.items() if entry.get("use") == "empty"],
        "warnings": [warning] if warning else [],
    }


def unit_bytes(config: RunConfig, sizes: list[int], cpus: float = 1) -> int:
    """The configured unit size, or for `auto` the total input over AUTO_UNITS_PER_CPU units per worker CPU of the
    run (`cpus`: 1 in this process), kept between 1 MB and 1 GB: a small input still keeps every worker busy, and a
    Common Crawl dump (100 TB) makes about a hundred thousand units, not millions. `sizes`: the input files'."""
    if config.input.unit_mb != "auto":
        return max(1, int(config.input.unit_mb * MB))
    total = sum(sizes)
    return int(min(AUTO_MAX_BYTES, max(AUTO_MIN_BYTES, total / (AUTO_UNITS_PER_CPU * max(1, cpus)))))


def plan_units(config: RunConfig, inputs: dict[str, dict], cpus: float = 1) -> list[Unit]:
    """The units of the input files the plan reads (`plan_inputs`), sized for a run with `cpus` worker CPUs, from the
    sizes the plan holds; a file's first bytes are read only where neither its name nor its source tells its format
    and layout."""
    files = files_read(inputs)
    _check_unique_names(files)
    size = unit_bytes(config, [inputs[path]["bytes"] for path in files], cpus)
    units = []
    for path in files:
        fmt = detect_format(path) if config.input.format == "auto" else config.input.format
        units.extend(plan_file(path, fmt, size, inputs[path]["bytes"], inputs[path].get("layout")))
    return units


def _check_unique_names(files: list[str]) -> None:
    """Document ids come from file names (so they do not change with the storage); names must not repeat."""
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in files:
        by_name[source_name(path)].append(path)
    repeated = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    if repeated:
        name, paths = next(iter(repeated.items()))
        raise ConfigError(
            f"input.paths: {len(repeated)} file name(s) occur in several directories, e.g. {name!r} in "
            f"{', '.join(os.path.dirname(p) for p in paths[:3])}; document ids are derived from file names, "
            "so input file names must be unique"
        )


def save_plan(path: StoragePath, units: list[Unit], inputs: dict[str, dict]) -> None:
    """Save the units as the rows of `path` (plan.parquet), and beside it each input file's use, size and
    modification time (`plan_inputs`) as the rows of plan_inputs.parquet: {path, entry (its JSON)}. Both or neither
    are replaced, the plan last (a reader looks for it)."""
    columns = {name: [getattr(unit, name) for unit in units] for name in _UNITS_SCHEMA.names}
    entries = {"path": list(inputs), "entry": [json.dumps(entry) for entry in inputs.values()]}
    atomic_write_files({
        _inputs_file(path): parquet_bytes(pa.Table.from_pydict(entries, schema=_INPUTS_SCHEMA)),
        path: parquet_bytes(pa.Table.from_pydict(columns, schema=_UNITS_SCHEMA)),
    })


def load_plan(path: StoragePath) -> tuple[list[Unit], dict[str, dict]]:
    """The saved units, and the saved use, size and modification time of each input file: from plan.parquet (and
    plan_inputs.parquet), or from the plan.json of a run planned by an earlier version (the same units: it
    resumes)."""
    if path.name.endswith(".json"):
        saved = json.loads(path.read_text())
        return [Unit.from_dict(values) for values in saved["units"]], saved.get("inputs", {})
    table = pq.read_table(io.BytesIO(path.read_bytes()))
    entries = pq.read_table(io.BytesIO(_inputs_file(path).read_bytes())).to_pydict()
    inputs = {name: json.loads(entry) for name, entry in zip(entries["path"], entries["entry"])}
    return [Unit(*values) for values in zip(*table.to_pydict().values())], inputs


def _inputs_file(plan: StoragePath) -> StoragePath:
    return plan.parent / "plan_inputs.parquet"


def _fingerprint(path: str) -> dict:
    """Size and modification time of a local file, an object, or an HTTP resource (its Last-Modified)."""
    return input_fingerprint(path)


def check_inputs(saved: dict[str, dict]) -> None:
    """Raise InputChanged, naming the first input file read (or empty) whose size or modification time is not what
    was planned; a skipped file may change. Remote files are asked CHECK_THREADS at a time (a dump has ~90,000)."""
    checked = [path for path, entry in saved.items() if entry.get("use") != "skipped"]
    with ThreadPoolExecutor(max_workers=CHECK_THREADS) as pool:
        problems = pool.map(lambda path: _input_change(path, saved[path]), checked)
        problem = next((found for found in problems if found), None)
    if problem:
        raise InputChanged(problem)


def _input_change(path: str, entry: dict) -> str:
    """What changed in one input since it was planned, or ""."""
    planned = {"bytes": entry["bytes"], "mtime_ns": entry["mtime_ns"]}
    try:
        now = _fingerprint(path)
    except FileNotFoundError:
        return f"input {path} is gone since this run was planned; restore it, or start again with --overwrite"
    except RemoteReadError as exc:
        return (f"input {path} cannot be read since this run was planned ({exc}); try again later, or start again "
                "with --overwrite")
    if now == planned:
        return ""
    what = (f"size {planned['bytes']:,} -> {now['bytes']:,} bytes" if now["bytes"] != planned["bytes"] else
            f"modified {_when(planned['mtime_ns'])} -> {_when(now['mtime_ns'])}")
    return (f"input {path} changed since this run was planned ({what}): the finished units hold its old content; "
            "restore it, or start again with --overwrite")


def _when(mtime_ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mtime_ns / 1e9))


def boundary_fixes(units: list[Unit], members: dict[str, dict]) -> list[Unit]:
    """Units whose first record was found wrongly by scanning, with their proven start (see MemberSpan).

    `members` maps a finished unit's id to its marker's {"first", "next"}. Within a file, the unit before a byte
    range read its records sequentially past its end, so its "next" is where the range's first record truly is
    (or, past the range, that no record starts there). Only the first wrong unit of each file is returned: the
    units after it can be checked once it has been read again.
    """
    fixes = []
    for file_units in _units_by_file(units):
        expected: int | None = None  # the proven start of the next record; None: unknown
        for unit in file_units:
            span = members.get(unit.id)
            if span is None:
                break
            if expected is not None and unit.start > 0:
                proven = expected if expected < unit.end else NO_MEMBER
                found = span["first"] if span["first"] is not None else NO_MEMBER
                if found != proven:
                    fixes.append(replace(unit, first_member=proven))
                    break
            if span["first"] is not None or expected is None:
                expected = span["next"]
    return fixes


def _units_by_file(units: list[Unit]) -> list[list[Unit]]:
    by_file: dict[str, list[Unit]] = defaultdict(list)
    for unit in units:
        if unit.layout == "gzip_members":
            by_file[unit.path].append(unit)
    return [sorted(file_units, key=lambda unit: unit.start) for file_units in by_file.values() if len(file_units) > 1]
