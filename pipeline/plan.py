"""The plan of a run: which files, cut into which units. Saved as plan.json so that a re-run resumes the same units,
with each input file's use (read, skipped as not data, empty), size and modification time, so that a re-run refuses
input that changed in between and reports the same input files.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from pipeline.config import ConfigError, RunConfig
from pipeline.io.archive_reader import NO_MEMBER
from pipeline.io.atomic import atomic_write_json
from pipeline.io.data_files import input_use, warc_and_wet_warning
from pipeline.io.lineage import source_name
from pipeline.io.remote import is_uri
from pipeline.io.storage import StoragePath
from pipeline.io.units import Unit, detect_format, expand_paths, plan_file
from pipeline.output_guard import is_run_file

log = logging.getLogger(__name__)

MB = 1024 * 1024
AUTO_UNITS = 64


class InputChanged(Exception):
    """An input file changed (or went) since the run was planned: its finished units hold the old content."""


def configured_files(config: RunConfig) -> list[str]:
    """The local files that `input.paths` names, expanded (URIs arrive later, as their cached local copies)."""
    files: set[str] = set()
    for pattern in config.input.paths:
        if not is_uri(pattern):
            files.update(expand_paths(pattern))
    return sorted(files)


def plan_inputs(config: RunConfig, generated: list[str], run_root: StoragePath | None = None) -> dict[str, dict]:
    """Every input file once, in a stable order, with its size, modification time and use: {"bytes", "mtime_ns",
    "use": "read" | "skipped" | "empty", "reason" (of a skipped file)}. Never a file the run writes itself (an input
    glob or folder that contains the run directory would otherwise read the run's own output).

    Of the files found through a folder or glob, only data files are read (pipeline/io/data_files.py); a file named
    by its own path, or written by the run (the demo crawl, downloads), is always read. Logs a warning when captures
    come both as WARC and as WET: their pages would be read twice.
    """
    own = (lambda path: is_run_file(run_root, path)) if isinstance(run_root, Path) else (lambda path: False)
    configured = {os.path.abspath(path) for path in configured_files(config) if not own(path)}
    written = {os.path.abspath(path) for path in generated}  # by the run itself (the demo crawl, downloads)
    named = written | {os.path.abspath(pattern) for pattern in config.input.paths
                       if not is_uri(pattern) and os.path.isfile(pattern)}
    inputs = {}
    for path in sorted(configured | written):
        use, reason = input_use(path, path in named)
        inputs[path] = {**_fingerprint(path), "use": use, **({"reason": reason} if reason else {})}
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


def unit_bytes(config: RunConfig, files: list[str]) -> int:
    """The configured unit size, or for `auto` the total input over 64, kept between 1 and 64 MB."""
    if config.input.unit_mb != "auto":
        return max(1, int(config.input.unit_mb * MB))
    total = sum(os.path.getsize(path) for path in files)
    return int(min(64 * MB, max(1 * MB, total / AUTO_UNITS)))


def plan_units(config: RunConfig, inputs: dict[str, dict]) -> list[Unit]:
    """The units of the input files the plan reads (`plan_inputs`)."""
    files = files_read(inputs)
    _check_unique_names(files)
    size = unit_bytes(config, files)
    units = []
    for path in files:
        fmt = detect_format(path) if config.input.format == "auto" else config.input.format
        units.extend(plan_file(path, fmt, size))
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
    """Save the units, and each input file's use, size and modification time (`plan_inputs`)."""
    atomic_write_json(path, {"units": [unit.to_dict() for unit in units], "inputs": inputs})


def load_plan(path: StoragePath) -> tuple[list[Unit], dict[str, dict]]:
    """The saved units, and the saved use, size and modification time of each input file."""
    saved = json.loads(path.read_text())
    return [Unit.from_dict(values) for values in saved["units"]], saved.get("inputs", {})


def _fingerprint(path: str) -> dict:
    status = os.stat(path)
    return {"bytes": status.st_size, "mtime_ns": status.st_mtime_ns}


def check_inputs(saved: dict[str, dict]) -> None:
    """Raise InputChanged, naming the first input file read (or empty) whose size or modification time is not what
    was planned; a skipped file may change."""
    for path, entry in saved.items():
        if entry.get("use") == "skipped":
            continue
        planned = {"bytes": entry["bytes"], "mtime_ns": entry["mtime_ns"]}
        try:
            now = _fingerprint(path)
        except FileNotFoundError:
            raise InputChanged(f"input {path} is gone since this run was planned; restore it, or start again with "
                               "--overwrite") from None
        if now != planned:
            what = (f"size {planned['bytes']:,} -> {now['bytes']:,} bytes" if now["bytes"] != planned["bytes"] else
                    f"modified {_when(planned['mtime_ns'])} -> {_when(now['mtime_ns'])}")
            raise InputChanged(f"input {path} changed since this run was planned ({what}): the finished units hold "
                               "its old content; restore it, or start again with --overwrite")


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
