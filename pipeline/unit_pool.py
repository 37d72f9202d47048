"""The per-document pass: every unit handed to a pool of plain Ray actors, one per worker, or, for a run too small
to start Ray, processed one after the other in this process by the same UnitWorker.

Each actor builds the stages once (`UnitActor`); the driver hands each idle actor the next unit, the actor reads
its byte range of the input itself, runs every per-document stage, writes the unit's output and marker, and
answers with one short string. Documents never travel through the object store. Plain actors rather than a Ray
Data actor pool: for a work queue of a few hundred units, Ray Data's operators, scheduling loop and helper actors
cost more start-up and CPU than the queue needs (README, Performance).

Retries are this module's, not Ray's: a unit whose worker dies is handed to the next free worker, a unit that runs
past ray.unit_timeout_s has its worker killed and is tried once more, and then it fails by name.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING

from pipeline.config import ConfigError, RunConfig
from pipeline.failures import error_text
from pipeline.io.ranged import NODE_VARIABLE
from pipeline.io.storage import storage_path
from pipeline.io.units import Unit
from pipeline.plan import boundary_fixes, save_plan
from pipeline.progress import NoProgress, RunProgress, documents_detail
from pipeline.ray_session import submit_task
from pipeline.run_dir import RunDir
from pipeline.run_lock import Fence
from pipeline.stats import MARKER_BATCH, MarkersMerged, merge_markers
from pipeline.unit_counts import CountDeltas, UnitCounts
from pipeline.unit_work import UnitWorker

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


class UnitActor:
    """One document worker: builds the stages once, then processes the units it is handed, one at a time. Ray
    restarts it when its process dies (or the pool kills it for running past the unit time limit), and the pool
    hands the unit out again. A worker that cannot build its stages answers every unit with SETUP_FAILED and its
    error, so that the pool stops giving it units."""

    def __init__(self, config: dict, run_dir: str, fence: dict):
        import ray

        os.environ[NODE_VARIABLE] = ray.get_runtime_context().get_node_id()  # says where it reads from, per request
        try:
            self.worker: UnitWorker | None = UnitWorker(RunConfig.for_worker(config), storage_path(run_dir),
                                                        Fence(**fence))
            self.setup_error = ""
        except Exception as exc:
            self.worker = None
            self.setup_error = f"{SETUP_FAILED}on {os.uname().nodename}: {error_text(exc)}"

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
            return error_text(exc)
        return ""

    def ready(self) -> str:
        """Answers once the actor is built: after a restart, on whichever node Ray placed it."""
        return ""

    def close(self) -> None:
        """Stop the stages' child processes (the extraction sandbox) before the actor is killed."""
        if self.worker is not None:
            self.worker.close()


@functools.cache
def _ray_classes() -> tuple:
    """(ProgressBoard, UnitActor) as Ray actor classes, made on first use: a run that stays in this process
    (ray.in_process_max_mb) never imports Ray."""
    import ray

    return (ray.remote(num_cpus=0)(UnitCounts),  # the progress counts, as a tiny actor workers report to
            ray.remote(max_restarts=-1, max_task_retries=0)(UnitActor))  # retries: process_units


def process_units(units: list[Unit], config: dict, run: RunDir, fence: Fence, progress: RunProgress,
                  in_process: bool = False) -> dict[str, str]:
    """Process units on the connected Ray (or in this process) with the prepared config; returns {unit id: error}
    for failed units. Raises WorkerSetupError when no worker can build the stages.

    A unit whose worker dies (its process, or its whole node) is handed to the next free worker, up to UNIT_RETRIES
    times, and a unit still running after ray.unit_timeout_s has its worker killed and is tried once more
    (TIMEOUT_RETRIES); then it fails by name. A dead worker takes units again once Ray has restarted it (on another
    node, if its own is gone); until then it holds none."""
    if in_process:
        return _process_units_in_process(units, config, run, progress)
    import ray
    from ray.exceptions import RayActorError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ProgressBoard, RemoteUnitActor = _ray_classes()
    settings = config["ray"]
    workers = min(len(units), worker_count(settings["workers"], settings.get("cpus_per_worker", 1.0),
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


def fix_unit_boundaries(units: list[Unit], inputs: dict, config: dict, run: RunDir, fence: Fence,
                        failed: dict[str, str], in_process: bool, on_ray: bool) -> tuple[list[Unit], MarkersMerged]:
    """Read again the rare units whose first record a scan got wrong (plan.boundary_fixes, see MemberSpan), saving
    the updated plan each time and adding their failures to `failed`; returns the plan and its finished units'
    markers, merged."""
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
        failed.update(process_units(fixes, config, run, fence, NoProgress(), in_process=in_process))
        merged = _merge_markers(run, units, on_ray)
    return units, merged


def _merge_markers(run: RunDir, units: list[Unit], on_ray: bool) -> MarkersMerged:
    """The finished units' markers, in plan order, merged by a tree of Ray tasks (stats.merge_markers), or by the
    same functions in this process when the run has no Ray or they fit one batch: the tree would be that one task,
    whose worker starts afresh once the unit actors are gone, to return what the driver then holds anyway."""
    done = run.done_units()
    unit_ids = [unit.id for unit in units if unit.id in done]
    if not on_ray or len(unit_ids) <= MARKER_BATCH:
        return merge_markers(str(run.root), unit_ids)[0]
    import ray

    return merge_markers(str(run.root.resolve()), unit_ids, submit_task, ray.get)[0]


def worker_count(asked: int | None, cpus_per_worker: float, cpus: float, warn: bool = True) -> int:
    """How many workers run: as many as the cluster's CPUs allow, or ray.workers if fewer. More than fit would
    wait for CPUs that never come free (a waiting worker holds the unit it was handed), so they are not started,
    and the user is told in one line (`warn`)."""
    fit = max(1, int(cpus // cpus_per_worker))
    if warn and asked and asked > fit:
        log.warning(f"ray.workers = {asked}, but the cluster has {cpus:g} CPUs at {cpus_per_worker:g} per worker: "
                    f"running {fit} workers")
    return min(asked or fit, fit)


def planned_workers(config: RunConfig) -> int:
    """How many workers the connected Ray gives this run (`worker_count`, whose warning comes when they start)."""
    import ray

    return worker_count(config.ray.workers, config.ray.cpus_per_worker, ray.cluster_resources().get("CPU", 1),
                        warn=False)


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
                failed[unit.id] = error_text(exc)
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
