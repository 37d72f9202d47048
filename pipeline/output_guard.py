"""What a run may do with the directory it is pointed at: start in it, resume it, clear it, or refuse it.

A run directory is marked as one before anything else is written into it (RUN_MARKER: project and format).
Without `--overwrite` a missing or empty directory is used, a marked one is resumed, and anything else is refused.
`--overwrite` clears only a marked directory, and then only the entries a run writes, never following a symbolic
link; whatever else is there stays and is named. It never clears the filesystem root (or a bucket), the home
directory, the current directory or one of its parents, or a directory that holds one of the run's input files.
The same rules hold on object stores (s3://, gs://), where the marker is an object under the run's prefix.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Iterable

from pipeline.io.atomic import atomic_write_json
from pipeline.io.storage import RemotePath, StoragePath

PROJECT = "ccpipeline"
MARKER_FORMAT = 1
RUN_MARKER = "_ccpipeline_run.json"
LOCK_FILE = "_lock.json"
# Top-level entries a run writes (besides each global stage's directory, see run_entries). Nothing else is ever
# removed by --overwrite.
_RUN_FILES = ("config.yaml", "plan.parquet", "plan_inputs.parquet", "plan.json", "documents", "rejects", "_done",
              "stats", "report.html", "demo-crawl", "_assets")
# A temporary file of an atomic write (pipeline/io/atomic.py): `.<final name>.<8 hex digits>.tmp`.
TEMPORARY_NAME = re.compile(r"^\.(?P<final>.+)\.[0-9a-f]{8}\.tmp$")


class OutputRefused(Exception):
    """The output directory may not be used as asked; the message says why and what to do instead (one line)."""


def run_entries() -> frozenset[str]:
    """Names of the top-level entries a run writes (the marker and the lock aside, which stay while it runs)."""
    from stages import STAGES, GlobalStage

    directories = {stage.directory for stage in STAGES.values() if issubclass(stage, GlobalStage)}
    return frozenset(_RUN_FILES) | directories


def is_run_entry(name: str) -> bool:
    """Whether a top-level name is one a run writes, or a temporary file of one."""
    match = TEMPORARY_NAME.match(name)
    return (match.group("final") if match else name) in run_entries()


def read_marker(root: StoragePath) -> dict | None:
    """The run marker's contents when `root` is a run directory of this project, else None."""
    marker = root / RUN_MARKER
    try:
        values = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return values if isinstance(values, dict) and values.get("project") == PROJECT else None


def write_marker(root: StoragePath, name: str) -> None:
    """Mark `root` as a run directory: the first file a run writes there."""
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / RUN_MARKER, {"project": PROJECT, "format": MARKER_FORMAT, "name": name})


def protected_reason(root: StoragePath) -> str | None:
    """Why `root` may never be cleared, whatever it holds (None when it may be, given the marker)."""
    if isinstance(root, RemotePath):
        return "the root of a bucket" if "/" not in root.path.strip("/") else None
    place = Path(os.path.abspath(root))
    resolved = place.resolve()
    if resolved == Path(resolved.anchor):
        return "the filesystem root"
    if resolved == Path.home().resolve():
        return "the home directory"
    here = Path.cwd().resolve()
    if resolved == here:
        return "the current directory"
    if here.is_relative_to(resolved):
        return "a parent of the current directory"
    return None


def _entries(root: StoragePath) -> list[StoragePath]:
    if isinstance(root, RemotePath):
        return root.iterdir()
    return sorted(root.iterdir())


def check_output(root: StoragePath, overwrite: bool, inputs: Iterable[str] = ()) -> bool:
    """Decide what a run may do with `root`: True when it resumes a run there, False when it starts afresh (the
    directory is missing or empty, or --overwrite will clear it). Raises OutputRefused otherwise."""
    where = str(root)
    if isinstance(root, Path) and root.exists() and not root.is_dir():
        raise OutputRefused(f"--output {where}: is a file, not a directory")
    if overwrite:
        reason = protected_reason(root)
        if reason is not None:
            raise OutputRefused(f"--output {where}: refusing --overwrite on {reason}")
        holding = _input_under(root, inputs)
        if holding is not None:
            raise OutputRefused(f"--output {where}: refusing --overwrite on a directory holding the input file "
                                f"{holding}")
    entries = _entries(root) if root.exists() else []
    if not entries:
        return False
    if read_marker(root) is None:
        action = "refusing --overwrite on" if overwrite else "refusing to write into"
        raise OutputRefused(f"--output {where}: {action} a non-empty directory that is not a run directory (no "
                            f"{RUN_MARKER}); give a new or empty directory")
    return not overwrite


def _input_under(root: StoragePath, inputs: Iterable[str]) -> str | None:
    """The first input file inside `root` that is not one of the run's own files (those are never inputs)."""
    if isinstance(root, RemotePath):
        prefix = root.uri.split("?")[0].rstrip("/") + "/"
        return next((path for path in inputs if path.split("?")[0].startswith(prefix)
                     and not _own(path.split("?")[0][len(prefix):])), None)
    return next((path for path in inputs if "://" not in path and is_inside(root, path)
                 and not is_run_file(root, path)), None)


def _own(relative: str) -> bool:
    first = relative.split("/", 1)[0]
    return first in (RUN_MARKER, LOCK_FILE) or is_run_entry(first)


def is_inside(root: Path, path: str) -> bool:
    return Path(os.path.abspath(path)).resolve().is_relative_to(Path(os.path.abspath(root)).resolve())


def is_run_file(root: Path, path: str) -> bool:
    """Whether a local file is one the run in `root` writes (inside one of its entries): never an input."""
    top = Path(os.path.abspath(root)).resolve()
    resolved = Path(os.path.abspath(path)).resolve()
    return resolved.is_relative_to(top) and _own(resolved.relative_to(top).as_posix())


def clear_run_dir(root: StoragePath) -> list[str]:
    """Remove what a run wrote in `root` (a marked run directory), keeping the marker and the lock; returns the
    names of the entries it left because a run does not write them. Symbolic links are removed, never followed."""
    left = []
    for entry in _entries(root):
        if entry.name in (RUN_MARKER, LOCK_FILE):
            continue
        if not is_run_entry(entry.name):
            left.append(entry.name)
        elif isinstance(entry, RemotePath):
            if entry.is_dir():
                entry.filesystem.delete_dir(entry.path)
            else:
                entry.unlink(missing_ok=True)
        elif entry.is_symlink() or not entry.is_dir():
            entry.unlink()
        else:
            shutil.rmtree(entry)  # removes links inside the tree, never what they point to
    return left
