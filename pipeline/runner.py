"""Run a config end to end: plan the units, run the per-document pass over the unfinished ones, bring the global
stages up to date, write the statistics. Each step is another module's; this one holds their order and what passes
between them.

    open      run_dir.open_run_dir: check, lock and (with --overwrite) clear the run directory, before anything else
    plan      input_sources (the demo crawl, remote files) and plan (local files, units; plan.parquet, reused on
              resume)
    prepare   staged_assets.prepare_stages: each stage's models and files, once, on the driver
    pass      unit_pool.process_units: the unfinished units, on a pool of Ray actors or in this process; then
              unit_pool.fix_unit_boundaries: units whose first record was found wrongly, read again, and the
              finished units' markers merged
    global    global_stages.run_global_stages: the global stages that are not current, in config order
    stats     stats.write_run_stats, with summary.run_summary and contamination.run_contamination (the decontaminate
              stage's tables)

Where it runs: with `--address` / RAY_ADDRESS / `ray.address` the run joins that cluster; with none, an embedded
local Ray sized to the machine (ray_session.py), stopped at the end. A run too small to pay for Ray's start-up
(`_runs_in_process`) runs in this process instead: the same UnitWorker and dedup functions, the same output, and Ray
is never imported.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from pipeline.config import RunConfig
from pipeline.failures import error_text, within_budget
from pipeline.global_stages import (IN_PROCESS_GLOBAL_STAGES, clear_stale, current_stages, documents_digest,
                                    run_global_stages, stage_tally)
from pipeline.input_sources import demo_crawl_files, remote_files
from pipeline.plan import (check_inputs, configured_files, files_read, input_report, load_plan, plan_inputs,
                           plan_units, save_plan)
from pipeline.progress import NoProgress, RunProgress
from pipeline.contamination import run_contamination
from pipeline.ray_session import connect_ray, disconnect_ray, gcs_address
from pipeline.run_dir import OpenRun, RunDir, open_run_dir, remove_temporaries
from pipeline.staged_assets import prepare_stages
from pipeline.stats import MarkersMerged, StageTally, StatsNotWritten, accounting_problems, write_run_stats
from pipeline.summary import run_summary
from pipeline.unit_pool import fix_unit_boundaries, planned_workers, process_units


@dataclass
class RunResult:
    run_dir: Path
    funnel: list[StageTally]
    units_total: int
    units_resumed: int
    failed_units: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    failed_stages: dict[str, str] = field(default_factory=dict)  # global stages that could not finish, and why
    failures_within_budget: bool = False  # the failed units are within max_failed_share
    in_process: bool = False  # small enough to run without Ray (ray.in_process_max_mb)
    merged: MarkersMerged = field(default_factory=MarkersMerged, repr=False)  # the finished units' markers, merged
    accounting: list[str] = field(default_factory=list)  # where the books do not close (accounting_problems)
    kept_entries: list[str] = field(default_factory=list)  # what --overwrite left: not written by a run
    ray_address: str | None = None  # the Ray cluster the run used (its GCS address); None: no Ray
    input_files: dict = field(default_factory=dict)  # read, skipped and empty input files (plan.input_report)

    @property
    def ok(self) -> bool:
        return ((not self.failed_units or self.failures_within_budget) and not self.failed_stages
                and not self.accounting)


def run_pipeline(
    config: RunConfig, address: str | None = None, overwrite: bool = False, show_progress: bool = True
) -> RunResult:
    """Run (or resume) a config end to end; returns the merged funnel and any units that failed.

    Raises OutputRefused, RunLocked, RunDirConflict, InputChanged or ConfigError before any work starts."""
    started = time.monotonic()
    run = RunDir(config.run_dir())
    progress = RunProgress() if show_progress else NoProgress()
    with open_run_dir(run, config.resolved(), overwrite, configured_files(config)) as opened, \
            progress.showing_warnings("pipeline", "stages"):
        try:
            result = _run_in(config, run, opened, address or config.ray.address, progress)
        finally:
            progress.close()
        result.seconds = time.monotonic() - started
        try:
            write_run_stats(run.stats, result.funnel, result.merged.unit_rows, run_summary(config, result),
                            run_contamination(config.stage_settings(), result.funnel, run.root))
            remove_temporaries(run.root)  # of workers killed in this run or an earlier one: a finished run has none
        except OSError as exc:
            raise StatsNotWritten(f"statistics not written to {run.stats}: {exc.strerror or exc} (errno "
                                  f"{exc.errno}); the run's other output is kept, and the same command writes them",
                                  result) from None
    return result


def _run_in(config: RunConfig, run: RunDir, opened: OpenRun, address: str | None, progress: RunProgress) -> RunResult:
    generated = demo_crawl_files(config, run)
    listed, download_failures = remote_files(config)
    generated += list(listed)
    saved_plan = run.saved_plan() if opened.resuming else None
    if saved_plan is not None:
        units, inputs = load_plan(saved_plan)
        check_inputs(inputs)
        in_process = _runs_in_process(config, address, {unit.path for unit in units})
    else:
        inputs = plan_inputs(config, generated, run.root, listed)
        in_process = _runs_in_process(config, address, files_read(inputs))
    failed: dict[str, str] = {f"download {path}": error for path, error in download_failures.items()}
    failed_stages: dict[str, str] = {}
    started_here = False
    try:
        if saved_plan is None:  # units sized for the workers the run will have (plan.unit_bytes): Ray first
            on_ray = bool(files_read(inputs)) and not in_process
            started_here = on_ray and connect_ray(address, config.ray.object_store_mb)
            units = plan_units(config, inputs, planned_workers(config) if on_ray else 1)
            if not download_failures:  # else the next run plans again, with the files that arrive then
                save_plan(run.plan_file, units, inputs)
        done = run.done_units()
        pending = [unit for unit in units if unit.id not in done]
        stale_globals = len(current_stages(config, run, documents_digest(run.documents))) < len(config.global_stages())
        worker_config = prepare_stages(config, run) if pending or stale_globals else {}
        on_ray = not in_process and bool(worker_config)
        if on_ray and not started_here:
            started_here = connect_ray(address, config.ray.object_store_mb)
        ray_address = gcs_address() if on_ray else None
        if pending:
            failed.update(process_units(pending, worker_config, run, opened.fence, progress, in_process))
        units, merged = fix_unit_boundaries(units, inputs, worker_config, run, opened.fence, failed, in_process,
                                            on_ray)
        funnel = merged.tallies
        failures_allowed = within_budget(failed, len(units) + len(download_failures), config.max_failed_share)
        digest = documents_digest(run.documents)
        clear_stale(config, run, digest)
        if failures_allowed and not accounting_problems(funnel, merged.problems):
            # a global stage over part of the input describes only that part: allowed within the budget
            failed_stages = run_global_stages(config, run, digest, funnel[-1].kept if funnel else 0, progress,
                                              in_process, error_text)
    finally:
        if started_here:
            disconnect_ray()
    funnel += [stage_tally(run, name) for name in current_stages(config, run, digest)]
    return RunResult(run.root, funnel, len(units), len(units) - len(pending), failed, 0.0, failed_stages,
                     bool(failed) and failures_allowed, in_process, merged=merged,
                     accounting=accounting_problems(funnel, merged.problems), kept_entries=opened.kept_entries,
                     ray_address=ray_address, input_files=input_report(inputs))


def _runs_in_process(config: RunConfig, address: str | None, paths: Iterable[str]) -> bool:
    """Whether the run is small enough to skip Ray: no cluster to join, no Ray running in this process (a
    notebook's or a test's is used as it is), input files totalling at most ray.in_process_max_mb, and no global
    stage but dedup."""
    limit_mb = config.ray.in_process_max_mb
    ray_running = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    if not limit_mb or address or os.environ.get("RAY_ADDRESS") or ray_running:
        return False
    if any(name not in IN_PROCESS_GLOBAL_STAGES for name, _ in config.global_stages()):
        return False
    try:
        size = sum(os.path.getsize(path) for path in paths)
    except OSError:  # not a local file: leave it to Ray
        return False
    return size <= limit_mb * 1024 * 1024
