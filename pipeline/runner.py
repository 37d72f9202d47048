"""Run a config on Ray: plan units, process the unfinished ones on a pool of workers, bring the global stages up to
date (pipeline/global_stages.py), merge the statistics.

With global_stages.py, ray_session.py, dedup_runner.py and tokenize_runner.py, the only modules that import ray.
The run directory is checked, locked and (with --overwrite) cleared before anything else (run_dir.open_run_dir).
The per-document pass is a pool of plain Ray actors, one per worker, each building the stages once (`UnitActor`);
the driver hands each idle actor the next unit, the actor reads it, runs every per-document stage and writes the
unit's output and marker, and answers with one short string. Documents never travel through the object store;
workers read their byte range of the input themselves. Plain actors rather than a Ray Data actor pool: Ray Data's
operators, scheduling loop and helper actors cost a second or two of start-up per process and several percent of
the CPU for what is a work queue of a few hundred items (benchmarks: README, Performance).

With no address, an embedded local Ray sized to the machine is started (no dashboard, see ray_session.py) and
stopped at the end; with `--address` / RAY_ADDRESS / `ray.address`, the run joins that cluster. A run too small to
pay for Ray's start-up (input under `ray.in_process_max_mb`, no global stage but dedup, no cluster, no Ray already
running in this process) runs in this process instead: the same UnitWorker and dedup functions, the same output,
and Ray is never imported.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from pipeline.config import ConfigError, RunConfig
from pipeline.global_stages import (IN_PROCESS_GLOBAL_STAGES, clear_stale, current_stages, documents_digest,
                                    run_global_stages, stage_tally)
from pipeline.io.ranged import NODE_VARIABLE
from pipeline.io.storage import storage_path
from pipeline.io.units import Unit
from pipeline.plan import (boundary_fixes, check_inputs, configured_files, files_read, input_report, load_plan,
                           plan_inputs, plan_units, save_plan)
from pipeline.progress import NoProgress, RunProgress, documents_detail
from pipeline.ray_session import connect_ray
from pipeline.run_dir import OpenRun, RunDir, open_run_dir, remove_temporaries
from pipeline.run_lock import Fence
from pipeline.staged_assets import staged_settings
from pipeline.stats import (MarkersMerged, StageTally, StatsNotWritten, accounting_problems, merge_markers,
                            write_run_stats)
from pipeline.summary import documents_kept, format_funnel, format_input_files, records_read
from pipeline.unit_work import UnitWorker
from stages import STAGES
from stages.base import StageSetupError

if TYPE_CHECKING:
    from ray.actor import ActorHandle

# A unit whose worker dies (out of memory, lost node, a crash in native code) is retried this often on the
# restarted worker before it is reported as failed; one that runs past ray.unit_timeout_s, this often.
UNIT_RETRIES = 3
TIMEOUT_RETRIES = 1
PROGRESS_INTERVAL_S = 1.0
log = logging.getLogger(__name__)
# What a worker answers for a unit when it could not build its stages: the unit goes to another worker.
SETUP_FAILED = "WorkerSetupError: "


class WorkerSetupError(ConfigError):
    """No worker could build the stages (a model or word list missing where the workers run)."""


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


class UnitCounts:
    """The documents counted so far, per stage, for the progress line: running sums of what workers report after
    every batch (`CountDeltas`), so the board holds two numbers per stage however many units the run has. Rows a
    worker counted before dying stay in the sums and its unit's retry counts them again: the progress line may run
    a little ahead; the statistics, from the markers, do not."""

    def __init__(self) -> None:
        self.sums: dict[str, list[int]] = {}  # stage -> [rows in, kept]

    def report(self, deltas: list[dict]) -> None:
        for delta in deltas:
            sums = self.sums.setdefault(delta["stage"], [0, 0])
            sums[0] += delta["rows_in"]
            sums[1] += delta["kept"]

    def totals(self) -> list[dict]:
        return [{"stage": stage, "rows_in": rows_in, "kept": kept} for stage, (rows_in, kept) in self.sums.items()]


class CountDeltas:
    """What a worker sends the board (`send`: UnitCounts.report): of the cumulative counts UnitWorker reports for a
    unit after each batch, the rows in and kept since its previous report."""

    def __init__(self, send) -> None:
        self.send = send
        self.unit: str | None = None
        self.reported: dict[str, tuple[int, int]] = {}  # of the current unit: stage -> (rows in, kept) so far

    def __call__(self, unit_id: str, stages: list[dict]) -> None:
        if unit_id != self.unit:
            self.unit, self.reported = unit_id, {}
        deltas = []
        for stage in stages:
            rows_in, kept = self.reported.get(stage["stage"], (0, 0))
            deltas.append({"stage": stage["stage"], "rows_in": stage["rows_in"] - rows_in,
                           "kept": stage["kept"] - kept})
            self.reported[stage["stage"]] = (stage["rows_in"], stage["kept"])
        self.send(deltas)


class UnitActor:
    """One document worker: builds the stages once, then processes the units it is handed, one at a time. Ray
    restarts it when its process dies (or the runner kills it for running past the unit time limit), and the runner
    hands the unit out again. A worker that cannot build its stages answers every unit with SETUP_FAILED and its
    error, so that the runner stops giving it units."""

    def __init__(self, config: dict, run_dir: str, fence: dict):
        import ray

        os.environ[NODE_VARIABLE] = ray.get_runtime_context().get_node_id()  # says where it reads from, per request
        try:
            self.worker: UnitWorker | None = UnitWorker(RunConfig.for_worker(config), storage_path(run_dir),
                                                        Fence(**fence))
            self.setup_error = ""
        except Exception as exc:
            self.worker = None
            self.setup_error = f"{SETUP_FAILED}on {os.uname().nodename}: {_error_text(exc)}"

    def process(self, encoded: str, board: "ActorHandle | None" = None) -> str:
        """Process one unit (as JSON), reporting its counts to `board` after each batch; returns "" or the error
        that failed it (one broken unit must not stop the others: it is reported by name). The board comes with
        each call, not to the constructor: Ray warns about actor handles among a restartable actor's arguments."""
        if self.worker is None:
            return self.setup_error
        unit = Unit.from_dict(json.loads(encoded))
        report = CountDeltas(board.report.remote) if board is not None else None
        try:
            self.worker.process(unit, report=report)
        except Exception as exc:
            return _error_text(exc)
        return ""

    def ready(self) -> str:
        """Answers once the actor is built: after a restart, on whichever node Ray placed it."""
        return ""

    def close(self) -> None:
        """Stop the stages' child processes (the extraction sandbox) before the actor is killed."""
        if self.worker is not None:
            self.worker.close()


def _error_text(exc: Exception) -> str:
    """How a failed unit or stage is reported: the exception, then where it came from."""
    return f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"


@functools.cache
def _ray_classes() -> tuple:
    """(ProgressBoard, UnitActor) as Ray actor classes, made on first use: a run that stays in this process
    (ray.in_process_max_mb) never imports Ray (about half a second)."""
    import ray

    return (ray.remote(num_cpus=0)(UnitCounts),  # the progress counts, as a tiny actor workers report to
            ray.remote(max_restarts=-1, max_task_retries=0)(UnitActor))  # retries: _process_units


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
            write_run_stats(run.stats, result.funnel, result.merged.unit_rows, _summary(config, result))
            remove_temporaries(run.root)  # of workers killed in this run or an earlier one: a finished run has none
        except OSError as exc:
            raise StatsNotWritten(f"statistics not written to {run.stats}: {exc.strerror or exc} (errno "
                                  f"{exc.errno}); the run's other output is kept, and the same command writes them",
                                  result) from None
    return result


def _run_in(config: RunConfig, run: RunDir, opened: OpenRun, address: str | None, progress: RunProgress) -> RunResult:
    generated = _demo_crawl_files(config, run)
    listed, download_failures = _remote_files(config)
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
            units = plan_units(config, inputs, _planned_workers(config) if on_ray else 1)
            if not download_failures:  # else the next run plans again, with the files that arrive then
                save_plan(run.plan_file, units, inputs)
        done = run.done_units()
        pending = [unit for unit in units if unit.id not in done]
        stale_globals = len(current_stages(config, run, documents_digest(run.documents))) < len(config.global_stages())
        worker_config = prepare_stages(config, run) if pending or stale_globals else {}
        on_ray = not in_process and bool(worker_config)
        if on_ray and not started_here:
            started_here = connect_ray(address, config.ray.object_store_mb)
        ray_address = _ray_address() if on_ray else None
        if pending:
            failed.update(_process_units(pending, worker_config, run, opened.fence, progress, in_process))
        units, merged = _fix_unit_boundaries(units, worker_config, run, opened.fence, failed, inputs, in_process,
                                             on_ray)
        funnel = merged.tallies
        within_budget = _within_budget(failed, len(units) + len(download_failures), config.max_failed_share)
        digest = documents_digest(run.documents)
        clear_stale(config, run, digest)
        if within_budget and not accounting_problems(funnel, merged.problems):
            # a global stage over part of the input describes only that part: allowed within the budget
            failed_stages = run_global_stages(config, run, digest, funnel[-1].kept if funnel else 0, progress,
                                              in_process, _error_text)
    finally:
        if started_here:
            import ray

            ray.shutdown()
    funnel += [stage_tally(run, name) for name in current_stages(config, run, digest)]
    return RunResult(run.root, funnel, len(units), len(units) - len(pending), failed, 0.0, failed_stages,
                     bool(failed) and within_budget, in_process, merged=merged,
                     accounting=accounting_problems(funnel, merged.problems), kept_entries=opened.kept_entries,
                     ray_address=ray_address, input_files=input_report(inputs))


def _ray_address() -> str:
    import ray

    return ray.get_runtime_context().gcs_address


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


def _planned_workers(config: RunConfig) -> int:
    """How many workers the connected Ray gives this run (`_worker_count`, whose warning comes when they start)."""
    import ray

    return _worker_count(config.ray.workers, config.ray.cpus_per_worker, ray.cluster_resources().get("CPU", 1),
                         warn=False)


def prepare_stages(config: RunConfig, run: RunDir) -> dict:
    """Let each stage fetch or build what it needs, once, on the driver; returns the config workers get, in which
    the files the stages name are staged in the run directory (pipeline/staged_assets.py), not driver paths.

    A stage that cannot be set up stops the run here, before any work, with the setting at fault named.
    """
    resolved = config.resolved()
    for index, (name, settings) in enumerate(config.stage_settings()):
        try:
            prepared = STAGES[name].prepare(settings, run.root)
        except StageSetupError as exc:
            where = f"stages[{index}].{name}" + (f".{exc.setting}" if exc.setting else "")
            raise ConfigError(f"{where}: {exc.message}") from None
        staged = staged_settings(prepared, STAGES[name].file_settings, run.root)
        resolved["stages"][index] = {name: staged.model_dump(mode="json")}
    return resolved


def _demo_crawl_files(config: RunConfig, run: RunDir) -> list[str]:
    demo = config.input.demo_crawl
    if demo is None:
        return []
    from pipeline.demo_crawl import write_demo_crawl, write_demo_labels

    if demo.directory:
        directory = Path(demo.directory)
    elif isinstance(run.root, Path):
        directory = run.root / "demo-crawl"
    else:  # generated into this machine's cache, then put in the run directory, which every node reads
        from pipeline.io.atomic import atomic_write_bytes
        from pipeline.io.download import cache_base

        directory = cache_base() / "demo-crawl" / f"{demo.pages}-{demo.files}-{demo.seed}"
        write_demo_labels(directory, seed=demo.seed)
        stored = []
        for path in write_demo_crawl(directory, pages=demo.pages, files=demo.files, seed=demo.seed):
            target = run.root / "demo-crawl" / path.name
            if not target.exists():  # the same seed writes the same bytes: a resumed run finds them there
                atomic_write_bytes(target, path.read_bytes())
            stored.append(str(target))
        return stored
    write_demo_labels(directory, seed=demo.seed)
    return [str(path) for path in write_demo_crawl(directory, pages=demo.pages, files=demo.files, seed=demo.seed)]


def _within_budget(failed: dict[str, str], units: int, max_failed_share: float) -> bool:
    """Whether the failed units (and failed downloads) are few enough for the run to go on."""
    return not failed or (max_failed_share > 0 and len(failed) <= max_failed_share * max(units, 1))


def _remote_files(config: RunConfig) -> tuple[dict[str, dict], dict[str, str]]:
    """The configured Common Crawl files and input URIs, listed with their sizes (read in place by the workers,
    never downloaded here), and the files that could not be listed or sized (reported as failed input, like a
    failed unit: the run exits 1 and the same command tries them again)."""
    from pipeline.io.commoncrawl import resolve
    from pipeline.io.download import DownloadError
    from pipeline.io.remote import is_uri, list_uris

    files, failures = list_uris([p for p in config.input.paths if is_uri(p)])
    if config.input.commoncrawl is not None:
        try:
            crawl_files, crawl_failures = resolve(config.input.commoncrawl)
        except DownloadError as exc:  # no manifest: nothing to plan
            raise ConfigError(f"input.commoncrawl: {exc}") from None
        files, failures = {**files, **crawl_files}, {**failures, **crawl_failures}
    return files, failures


def _summary(config: RunConfig, result: RunResult) -> dict:
    return {
        "name": config.name,
        "run_dir": str(result.run_dir),
        "units": result.units_total,
        "units_resumed": result.units_resumed,
        "failed_units": result.failed_units,
        "failed_stages": result.failed_stages,
        "records_read": records_read(result.funnel),
        "documents": documents_kept(result.funnel),
        "output": str(RunDir(result.run_dir).output_documents),
        "wall_seconds": round(result.seconds, 3),
        "executor": "in_process" if result.in_process else "ray",
        "ray_address": result.ray_address,
        "accounting_problems": result.accounting,
        "input_files": result.input_files,
    }


def _fix_unit_boundaries(units: list[Unit], config: dict, run: RunDir, fence: Fence, failed: dict[str, str],
                         inputs: dict, in_process: bool, on_ray: bool) -> tuple[list[Unit], MarkersMerged]:
    """Read again the rare units whose first record a scan got wrong (see MemberSpan); returns the updated plan and
    its finished units' markers, merged."""
    merged = _merge_markers(run, units, on_ray)
    for _ in range(len(units)):
        fixes = boundary_fixes(units, merged.members)
        if not fixes:
            break
        for unit in fixes:
            for path in (run.marker(unit.id), run.document_part(unit.id), run.reject_part(unit.id)):
                path.unlink(missing_ok=True)
        fixed = {unit.id: unit for unit in fixes}
        units = [fixed.get(unit.id, unit) for unit in units]
        save_plan(run.plan_file, units, inputs)
        failed.update(_process_units(fixes, config, run, fence, NoProgress(), in_process=in_process))
        merged = _merge_markers(run, units, on_ray)
    return units, merged


def _merge_markers(run: RunDir, units: list[Unit], on_ray: bool) -> MarkersMerged:
    """The finished units' markers, in plan order, merged by a tree of Ray tasks (stats.merge_markers), or by the
    same functions in this process when the run has no Ray."""
    done = run.done_units()
    unit_ids = [unit.id for unit in units if unit.id in done]
    if not on_ray:
        return merge_markers(str(run.root), unit_ids)[0]
    import ray

    return merge_markers(str(run.root.resolve()), unit_ids, _submit_task, ray.get)[0]


def _submit_task(function, *args):
    """Run `function` as a Ray task (the arguments that are references arrive as their values)."""
    return _remote_function(function).remote(*args)


@functools.cache
def _remote_function(function):
    import ray

    return ray.remote(function)


def _process_units(units: list[Unit], config: dict, run: RunDir, fence: Fence, progress: RunProgress,
                   in_process: bool = False) -> dict[str, str]:
    """Process units on the connected Ray (or in this process) with the prepared config; returns {unit id: error}
    for failed units. Raises WorkerSetupError when no worker can build the stages.

    Retries are the runner's, not Ray's: a unit whose worker dies (its process, or its whole node) is handed to the
    next free worker, up to UNIT_RETRIES times, and a unit still running after ray.unit_timeout_s has its worker
    killed and is tried once more (TIMEOUT_RETRIES); then it fails by name. A dead worker takes units again once Ray
    has restarted it (on another node, if its own is gone); until then it holds none."""
    if in_process:
        return _process_units_in_process(units, config, run, progress)
    import ray
    from ray.exceptions import RayActorError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ProgressBoard, RemoteUnitActor = _ray_classes()
    settings = config["ray"]
    workers = min(len(units), _worker_count(settings["workers"], settings.get("cpus_per_worker", 1.0),
                                            ray.cluster_resources().get("CPU", 1)))
    per_worker = settings.get("cpus_per_worker", 1.0)
    requests = {"num_cpus": per_worker}
    if settings.get("memory_mb_per_worker"):
        requests["memory"] = settings["memory_mb_per_worker"] * 1024 * 1024
    # The board only feeds the progress line: without one, no actor (a process) and no call per batch. It lives on
    # the driver's node, so that losing a worker node does not lose the counts (the run goes on without them if it
    # does: _board_totals).
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    board = ProgressBoard.options(scheduling_strategy=here).remote() if progress.enabled else None
    run_dir = str(run.root.resolve())
    actors = [RemoteUnitActor.options(**requests).remote(config, run_dir, fence.to_dict()) for _ in range(workers)]
    queue = list(reversed(units))  # popped from the end: units start in plan order
    running: dict = {}  # result ref -> (unit, actor, when it started)
    killed: set = set()  # result refs whose worker was killed for running past the limit
    deaths: Counter = Counter()  # unit id -> times its worker died on it
    timeouts: Counter = Counter()  # unit id -> times it ran past the limit
    failed: dict[str, str] = {}
    setup_errors: list[str] = []
    done = [0]
    progress.start("documents", total=len(units), unit="units")
    stop = threading.Event()
    poller = threading.Thread(target=_poll_progress, args=(board, progress, done, stop), daemon=True)
    if board is not None:
        poller.start()
    limit_s = settings["unit_timeout_s"]
    idle = list(actors)  # one unit in flight per actor: an idle actor gets the next unit as soon as it is free
    restarting: dict = {}  # ready() ref -> an actor whose process died, until Ray has it running again
    restarts: Counter = Counter()  # actor -> times its restart failed
    try:
        while queue or running:
            while queue and idle:
                unit, actor = queue.pop(), idle.pop()
                running[actor.process.remote(json.dumps(unit.to_dict()), board)] = (unit, actor, time.monotonic())
            if not running and not restarting:  # units left, and no worker that can take them
                raise WorkerSetupError(f"no worker could build the stages; the first said: "
                                       f"{setup_errors[0].removeprefix(SETUP_FAILED)}" if setup_errors else
                                       "every worker died and could not be restarted")
            deadlines = [started + limit_s for ref, (_, _, started) in running.items() if ref not in killed]
            wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            ready, _ = ray.wait(list(running) + list(restarting), num_returns=1, timeout=wait_s)
            if not ready:  # a unit ran past the limit: its worker is killed (Ray restarts it), the unit comes back
                now = time.monotonic()
                for ref, (unit, actor, started) in running.items():
                    if ref not in killed and now - started >= limit_s:
                        killed.add(ref)
                        ray.kill(actor, no_restart=False)
                continue
            if ready[0] in restarting:
                actor = restarting.pop(ready[0])
                try:
                    ray.get(ready[0])
                    idle.append(actor)
                except RayActorError:  # died again while starting: wait for the next restart, a few times
                    restarts[actor] += 1
                    if restarts[actor] <= UNIT_RETRIES:
                        restarting[actor.ready.remote()] = actor
                    else:
                        ray.kill(actor)
                continue
            unit, actor, _ = running.pop(ready[0])
            try:
                error = ray.get(ready[0])
            except RayActorError as exc:
                retried = timeouts if ready[0] in killed else deaths
                retried[unit.id] += 1
                if retried[unit.id] <= (TIMEOUT_RETRIES if retried is timeouts else UNIT_RETRIES):
                    queue.append(unit)  # for the next free worker, not necessarily this one
                else:
                    failed[unit.id] = (_timeout_error(unit, limit_s, timeouts[unit.id]) if retried is timeouts else
                                       f"WorkerDied: the worker process died on this unit {deaths[unit.id]} times: "
                                       f"{exc}")
                    done[0] += 1
                restarting[actor.ready.remote()] = actor
                continue
            if error.startswith(SETUP_FAILED):  # not the unit's fault: another worker takes it; this one stops
                setup_errors.append(error)
                queue.append(unit)
                ray.kill(actor)
                continue
            done[0] += 1
            if error:
                failed[unit.id] = error
            idle.append(actor)
    finally:
        stop.set()
        if board is not None:
            poller.join()
            _show_documents(progress, _board_totals(board), done[0])
        # the idle and busy ones stop their child processes first; one still restarting has none
        _stop_actors(idle + [actor for _, actor, _ in running.values()], list(restarting.values()))
        if board is not None:
            ray.kill(board)
    _wait_for_idle_cpus()
    return failed


def _worker_count(asked: int | None, cpus_per_worker: float, cpus: float, warn: bool = True) -> int:
    """How many workers run: as many as the cluster's CPUs allow, or ray.workers if fewer. More than fit would
    wait for CPUs that never come free (a waiting worker holds the unit it was handed), so they are not started,
    and the user is told in one line (`warn`)."""
    fit = max(1, int(cpus // cpus_per_worker))
    if warn and asked and asked > fit:
        log.warning(f"ray.workers = {asked}, but the cluster has {cpus:g} CPUs at {cpus_per_worker:g} per worker: "
                    f"running {fit} workers")
    return min(asked or fit, fit)


def _timeout_error(unit: Unit, limit_s: float, times: int) -> str:
    span = f"row groups {unit.start}-{unit.end}" if unit.format == "parquet" else f"bytes {unit.start}-{unit.end}"
    return (f"UnitTimeout: {unit.path} ({span}) ran past ray.unit_timeout_s = {limit_s:g} s {times} times; its "
            "worker was killed each time")


def _process_units_in_process(units: list[Unit], config: dict, run: RunDir, progress: RunProgress) -> dict[str, str]:
    """The per-document pass of a small run: one UnitWorker in this process, the units one after the other."""
    try:
        worker = UnitWorker(RunConfig.model_validate(config), run.root)
    except Exception as exc:
        raise WorkerSetupError(f"the stages could not be built: {type(exc).__name__}: {exc}") from None
    counts = UnitCounts()
    count_deltas = CountDeltas(counts.report)
    progress.start("documents", total=len(units), unit="units")
    failed: dict[str, str] = {}

    def report(unit_id: str, stages: list[dict]) -> None:
        count_deltas(unit_id, stages)
        _show_documents(progress, counts.totals(), done)

    done = 0
    try:
        for unit in units:
            try:
                worker.process(unit, report=report)
            except Exception as exc:  # as on Ray: the unit is reported by name, the others go on
                failed[unit.id] = _error_text(exc)
            done += 1
            _show_documents(progress, counts.totals(), done)
    finally:
        worker.close()
    return failed


def _stop_actors(actors: list, restarting: list) -> None:
    """Let each running actor stop its child processes, then end it and those still restarting, so that their CPUs
    are free for the next step."""
    import ray

    closing = [actor.close.remote() for actor in actors]
    try:
        ray.get(closing, timeout=30)
    except Exception:  # a dead or stuck actor is killed below all the same
        pass
    for actor in actors + restarting:
        ray.kill(actor)


def _wait_for_idle_cpus(timeout_s: float = 30.0) -> None:
    """Wait until the worker actors have let go of their CPUs. Ray ends a killed actor in the background, and a
    global stage that starts meanwhile finds no free CPU and waits anyway, with its clock running; this way each
    step's time is its own."""
    import ray

    total = ray.cluster_resources().get("CPU", 0)
    deadline = time.monotonic() + timeout_s
    while ray.available_resources().get("CPU", 0) < total and time.monotonic() < deadline:
        time.sleep(0.05)


def _poll_progress(board, progress: RunProgress, done: list[int], stop: threading.Event) -> None:
    while not stop.wait(PROGRESS_INTERVAL_S):
        _show_documents(progress, _board_totals(board), done[0])


def _board_totals(board) -> list[dict] | None:
    """The board's running sums; none when the board is gone with its node (the progress line then counts units
    only: the run's own counts are the markers')."""
    import ray
    from ray.exceptions import RayActorError

    try:
        return ray.get(board.totals.remote())
    except RayActorError:
        return None


def _show_documents(progress: RunProgress, stages: list[dict] | None, units_done: int) -> None:
    progress.update(units_done, "" if stages is None else documents_detail(stages, progress.phase_seconds()))


def print_result(result: RunResult) -> None:
    """The one-screen summary printed at the end of `pipeline run`."""
    resumed = f", {result.units_resumed} done earlier" if result.units_resumed else ""
    where = " in this process (a small input: no Ray started)" if result.in_process else ""
    print(f"\nRun {result.run_dir} finished in {result.seconds:.1f} s{where}: {result.units_total} units{resumed}")
    print(format_funnel(result.funnel))
    if result.input_files:
        print(format_input_files(result.input_files))
    for problem in result.accounting:
        print(f"ACCOUNTING ERROR: {problem}")
    for unit_id, error in result.failed_units.items():
        print(f"FAILED UNIT {unit_id}: {error.splitlines()[0]}")
    documents = documents_kept(result.funnel)
    output = RunDir(result.run_dir).output_documents
    print(f"\n{documents:,} documents in {output}; statistics in {result.run_dir / 'stats'}")
    manifest = RunDir(result.run_dir).shards / "manifest.json"
    if manifest.exists():
        shards = json.loads(manifest.read_text())
        count = sum(len(split["shards"]) for split in shards["splits"].values())
        tokenizer = RunDir(result.run_dir).tokenizer / "tokenizer.json"
        asked = json.loads(tokenizer.read_text()).get("vocab_size_asked", 0) if tokenizer.exists() else 0
        smaller = f" of the {asked:,} asked" if asked > shards["vocab_size"] else ""
        print(f"{shards['tokens']:,} tokens ({shards['dtype']}, vocabulary {shards['vocab_size']:,}{smaller}) in "
              f"{count} shards: {manifest}")
    for name, error in result.failed_stages.items():
        print(f"FAILED STAGE {name}: {error.splitlines()[0]}")
    if result.failed_units:
        print(f"{len(result.failed_units)} unit(s) failed; run the same command again to retry them.")
    done = RunDir(result.run_dir).train / "_done.json"
    if done.exists():
        final = json.loads(done.read_text())["final"]
        if final.get("val_loss") is not None:
            print(f"GPT trained to step {final['step']}: validation loss {final['val_loss']:.3f} (perplexity "
                  f"{final['val_perplexity']:.1f}); sample it: pipeline sample --checkpoint {done.parent}")
    if result.failed_stages:
        # A ConfigError, of any subclass (settings that do not fit the data), fails the same way on a retry. The
        # stage's error text starts with its class name (`RayTaskError(Name)` from a Ray task); the class of an
        # error that reached this process has been imported, so it is among the subclasses.
        def kinds(cls: type) -> set[str]:
            return {cls.__name__}.union(*(kinds(sub) for sub in cls.__subclasses__()))

        settled = kinds(ConfigError)
        names = {error.split(":", 1)[0].removeprefix("RayTaskError(").removesuffix(")")
                 for error in result.failed_stages.values()}
        if names <= settled:
            print("A retry fails the same way: change what the error says (a setting, or the data), then run the "
                  "same command again; finished steps are not redone.")
        else:
            print("Run the same command again to retry the failed stage; finished steps are not redone.")
    if result.accounting:
        print("The books of this run do not close (see ACCOUNTING ERROR above): its output is not to be trusted.")
    if result.kept_entries:
        print(f"--overwrite left what a run does not write in {result.run_dir}: {', '.join(result.kept_entries)}")
