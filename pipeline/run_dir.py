"""Where a run keeps its files. One place that knows the layout, so readers (notebooks, `pipeline stats`) and
writers agree.

    <run>/_ccpipeline_run.json         marks the directory as a run directory (written first; see output_guard.py)
    <run>/_lock.json                   who runs in it now (see run_lock.py)
    <run>/config.yaml                  resolved config, with versions
    <run>/plan.parquet                 the units of work, one row each (plan.json before)
    <run>/plan_inputs.parquet          the input files: use, size, modification time
    <run>/documents/part-<unit>.parquet   kept documents
    <run>/rejects/part-<unit>.parquet     dropped and failed documents (when `rejects: true`)
    <run>/_done/<unit>.json            completion marker with the unit's counts
    <run>/dedup/documents/part-<unit>.parquet   deduplicated documents (when the run has a dedup stage)
    <run>/dedup/clusters/part-*.parquet duplicate clusters: kept id, removed ids and why
    <run>/tokenizer/tokenizer.model    the run's sentencepiece BPE model, or tokenizer.hf.json, a given Hugging
                                       Face one (+ tokenizer.json, the run's description: kind, settings, sample)
    <run>/shards/                      token shards (.parquet, .arrow, .index.arrow) and manifest.json
    <run>/stats/                       merged statistics (funnel, reasons, units, examples, summary.json)

The run directory may be on local disk or on an object store (pipeline/io/storage.py): the layout is the same.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from pipeline.io.atomic import atomic_write_bytes
from pipeline.io.storage import RemotePath, StoragePath
from pipeline.output_guard import TEMPORARY_NAME, check_output, clear_run_dir, is_run_entry, read_marker, write_marker
from pipeline.run_lock import Fence, RunLock

# Settings that change how a run executes, not what it produces: a resume may change them.
_EXECUTION_KEYS = ("ray", "output")


class RunDirConflict(Exception):
    """The run directory holds a run made with a different config."""


@dataclass(frozen=True)
class RunDir:
    root: StoragePath  # a local Path, or a RemotePath (s3://, gs://...) that every cluster worker can reach

    @property
    def config_file(self) -> StoragePath:
        return self.root / "config.yaml"

    @property
    def plan_file(self) -> StoragePath:
        return self.root / "plan.parquet"

    def saved_plan(self) -> StoragePath | None:
        """The plan a run saved: plan.parquet, or the plan.json of a run planned by an earlier version; None if
        neither is there."""
        for path in (self.plan_file, self.root / "plan.json"):
            if path.exists():
                return path
        return None

    @property
    def documents(self) -> StoragePath:
        return self.root / "documents"

    @property
    def rejects(self) -> StoragePath:
        return self.root / "rejects"

    @property
    def markers(self) -> StoragePath:
        return self.root / "_done"

    @property
    def dedup(self) -> StoragePath:
        """documents/ (deduplicated parts), clusters/ (one file per shuffle partition), _members/ (each part's
        cluster members: what the filter joins with) and _done.json once finished."""
        return self.root / "dedup"

    @property
    def dedup_documents(self) -> StoragePath:
        return self.dedup / "documents"

    @property
    def output_documents(self) -> StoragePath:
        """Where the run's final documents are: dedup/documents once deduplication has finished, else documents/."""
        return self.dedup_documents if (self.dedup / "_done.json").exists() else self.documents

    @property
    def tokenizer(self) -> StoragePath:
        """tokenizer.model (or a given Hugging Face tokenizer.hf.json), tokenizer.json (the run's description: kind,
        settings, sample) and _done.json."""
        return self.root / "tokenizer"

    @property
    def shards(self) -> StoragePath:
        """Token shards (train-NNNNN / validation-NNNNN .parquet, .arrow, .index.arrow), manifest.json, _done.json."""
        return self.root / "shards"

    @property
    def stats(self) -> StoragePath:
        return self.root / "stats"

    @property
    def train(self) -> StoragePath:
        """The trainer's checkpoint.pt, log.jsonl (one line per step) and _done.json."""
        return self.root / "train"

    def document_part(self, unit_id: str) -> StoragePath:
        return self.documents / f"part-{unit_id}.parquet"

    def reject_part(self, unit_id: str) -> StoragePath:
        return self.rejects / f"part-{unit_id}.parquet"

    def marker(self, unit_id: str) -> StoragePath:
        return self.markers / f"{unit_id}.json"

    def done_units(self) -> set[str]:
        """The ids of every finished unit, from one listing (one request on an object store, not one per unit)."""
        return {path.name.removesuffix(".json") for path in self.markers.glob("*.json")}

    def read_marker(self, unit_id: str) -> dict:
        return json.loads(self.marker(unit_id).read_text())


def package_versions() -> dict[str, str]:
    """Versions of the project and the libraries whose behaviour shapes the output, saved with every run."""
    import platform
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for package in ("ccpipeline", "ray", "pyarrow", "trafilatura", "resiliparse", "warcio", "lxml", "pydantic",
                    "fasttext-wheel", "presidio-analyzer", "sentencepiece"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


@dataclass
class OpenRun:
    """A run directory this process holds: whether it resumes an earlier run, the fence its workers check, and
    the entries --overwrite left because a run does not write them."""

    resuming: bool
    fence: Fence
    kept_entries: list[str] = field(default_factory=list)


@contextmanager
def open_run_dir(run: RunDir, resolved_config: dict, overwrite: bool, inputs: Iterable[str] = ()) -> Iterator[OpenRun]:
    """Check, mark, lock and (with `overwrite`) clear the run directory, save the resolved config, and hold the
    lock until the block ends. Raises OutputRefused, RunLocked or RunDirConflict (before touching anything).

    Resuming is only allowed with the same config (execution settings aside): mixing outputs of two configs in one
    run directory would give a result that no config describes.
    """
    check_output(run.root, overwrite, inputs)
    if read_marker(run.root) is None:
        write_marker(run.root, str(resolved_config.get("name", "")))
    lock = RunLock(run.root)
    with lock:
        kept = clear_run_dir(run.root) if overwrite else []
        resuming = run.config_file.exists()
        if resuming:
            saved = yaml.safe_load(run.config_file.read_text()) or {}
            difference = first_difference(_outcome_settings(saved.get("config", {})),
                                          _outcome_settings(resolved_config))
            if difference is not None:
                raise RunDirConflict(
                    f"{run.root} holds a run made with another config (differs at {difference}); "
                    "use --overwrite to replace it, or --output for a new run directory"
                )
            remove_temporaries(run.root)
        document = {"config": resolved_config, "versions": package_versions()}
        atomic_write_bytes(run.config_file, yaml.safe_dump(document, sort_keys=False, allow_unicode=True).encode())
        yield OpenRun(resuming, lock.fence, kept)


def remove_temporaries(root: StoragePath) -> int:
    """Remove the temporary files of atomic writes (a process killed before its rename) from the entries a run
    writes, never elsewhere; returns how many. Only while holding the run's lock, with no worker running."""
    removed = 0
    for path in _run_files(root):
        if TEMPORARY_NAME.match(path.name):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _run_files(root: StoragePath) -> Iterator[StoragePath]:
    """Every file in the run-written entries of `root`, without following symbolic links."""
    if isinstance(root, RemotePath):
        for entry in root.iterdir():
            if is_run_entry(entry.name):
                yield from (entry.rglob("*") if entry.is_dir() else [entry])
        return
    for entry in os.scandir(root):
        if not is_run_entry(entry.name):
            continue
        if not entry.is_dir(follow_symlinks=False):
            yield Path(entry.path)
            continue
        for folder, directories, names in os.walk(entry.path):  # does not descend into linked folders
            yield from (Path(folder) / name for name in names)


def _outcome_settings(config: dict) -> dict:
    return {key: value for key, value in config.items() if key not in _EXECUTION_KEYS}


def first_difference(left: Any, right: Any, path: str = "") -> str | None:
    """Dotted path of the first place where two plain values differ, or None when equal."""
    if isinstance(left, dict) and isinstance(right, dict):
        for key in list(left) + [k for k in right if k not in left]:
            found = first_difference(left.get(key), right.get(key), f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
        return None
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        for index, (a, b) in enumerate(zip(left, right)):
            found = first_difference(a, b, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    return None if left == right else (path or "the top level")
