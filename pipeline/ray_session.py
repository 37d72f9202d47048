"""The Ray a run uses: the cluster it was told to join, or an embedded one of its own that dies with it.

With an address (`--address`, RAY_ADDRESS, `ray.address`) the run joins that cluster. Without one it starts a new
local Ray (`address="local"`), so that a Ray someone started on the machine with `ray start`, or the address file
a dead one left behind, is never joined by accident.

An embedded Ray must not outlive its driver. Ray ends its head processes when the driver exits, but a driver
killed with SIGKILL leaves its dashboard and runtime-env agents running for good, and its workers (in process
groups of their own) go on for seconds. So the driver starts a watchdog: a small process in a session of its own
that notes the processes Ray started (the driver's children that `ray.init` added) and their descendants while
the driver lives, and kills the ones still running once it is gone. Nothing else the driver started (in a
notebook, say) is touched. It knows processes by pid and start time, never signalling one that reuses a pid.

The embedded Ray is a head node without the processes a batch job on one machine has no use for: the autoscaler
monitor (nothing to scale) and, unless the user asked for library chatter (`--verbose`), the log monitor that
copies the workers' output to the driver's terminal (it stays in the session's log files). `ray.init` offers no
switch for either, so the node is started as `ray.init(address="local")` starts it, with those two left out, and the
driver joins it; `disconnect_ray` ends it. Ray is pinned (pyproject.toml), and tests check which processes start.

Once connected, `gcs_address` says which cluster the run used and `submit_task` runs a function as a Ray task.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import signal
import subprocess
import sys
import time

from pipeline.processes import process_alive, process_start

LOCAL_OBJECT_STORE_MB = 512
WATCH_INTERVAL_S = 0.5
_embedded_node = None  # the head node start_embedded_ray started, until disconnect_ray (or exit) ends it
# Ray's chatter that says nothing to a pipeline user: our own progress line and summary replace it.
_QUIET_LOGGERS = {
    "ray.data": logging.WARNING,
    "ray.data._internal.progress": logging.ERROR,
    "ray._private.authentication.authentication_token_setup": logging.ERROR,
}


def quiet_ray_data(verbose: bool = False) -> None:
    """Keep Ray Data's INFO lines ("Dataset ... execution finished") off the terminal; they still go to its log
    file in the session directory. Called after `import ray.data`, which installs its console handler."""
    for handler in logging.getLogger("ray.data").handlers:
        if handler.get_name() == "console":
            handler.setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:
        # Ray Data warns, once per process, when no CPU is free at the instant an execution starts: between the
        # steps of a global stage that is only the previous step's tasks handing their CPUs back, not a hang.
        from ray.util.debug import log_once

        log_once("cpu_warning")


def verbose() -> bool:
    """Whether the user asked for library chatter (`pipeline run --verbose` sets the pipeline logger to DEBUG)."""
    return logging.getLogger("pipeline").isEnabledFor(logging.DEBUG)


def connect_ray(address: str | None, object_store_mb: int | None = None) -> bool:
    """Join the given cluster, or start an embedded local Ray watched by a watchdog; True when this call
    connected (the caller shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for name, level in _QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    address = address or os.environ.get("RAY_ADDRESS")
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        before = _children_of(os.getpid())
        start_embedded_ray((object_store_mb or LOCAL_OBJECT_STORE_MB) * 1024 * 1024)
        start_watchdog(_children_of(os.getpid()) - before)
    for number, handler in handlers.items():  # ray.init installs its own; the command's exit codes are ours
        if handler is not None:
            signal.signal(number, handler)
    return True


def start_embedded_ray(object_store_bytes: int) -> None:
    """Start a local head node as `ray.init(address="local")` does (CPUs: Ray's own count, which honours container
    limits), without the autoscaler monitor and, unless verbose, the log monitor; then join it."""
    import ray
    from ray._private.node import Node
    from ray._private.parameter import RayParams

    global _embedded_node
    params = RayParams(include_dashboard=False, object_store_memory=object_store_bytes, no_monitor=True,
                       include_log_monitor=verbose())
    _embedded_node = Node(params, head=True, shutdown_at_exit=False, spawn_reaper=True, ray_init_cluster=True)
    atexit.unregister(_end_embedded_node)  # once, however many runs a notebook starts
    atexit.register(_end_embedded_node)
    try:
        ray.init(address=_embedded_node.address, logging_level=logging.WARNING)
    except BaseException:
        _end_embedded_node()
        raise


def disconnect_ray() -> None:
    """Leave the cluster `connect_ray` joined, and end the embedded Ray if it started one."""
    import ray

    ray.shutdown()
    _end_embedded_node()


def _end_embedded_node() -> None:
    global _embedded_node
    if _embedded_node is not None:
        node, _embedded_node = _embedded_node, None
        node.kill_all_processes(check_alive=False, allow_graceful=True)


def gcs_address() -> str:
    """The address of the connected Ray cluster (its GCS), as the run's summary reports it."""
    import ray

    return ray.get_runtime_context().gcs_address


def submit_task(function, *args):
    """Run `function` as a Ray task (the arguments that are references arrive as their values)."""
    return _remote_function(function).remote(*args)


@functools.cache
def _remote_function(function):
    import ray

    return ray.remote(function)


def start_watchdog(processes: set[tuple[int, int]]) -> subprocess.Popen | None:
    """Once this process is gone, kill what is left of `processes` ((pid, start time)) and their descendants."""
    if not os.path.isdir("/proc") or not processes:
        return None
    return subprocess.Popen([sys.executable, "-m", "pipeline.ray_session", f"{os.getpid()}:{process_start(os.getpid())}",
                             *(f"{pid}:{started}" for pid, started in sorted(processes))],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _children_of(pid: int) -> set[tuple[int, int]]:
    if not os.path.isdir("/proc"):
        return set()
    return set(_children_by_parent().get(pid, []))


def _children_by_parent() -> dict[int, list[tuple[int, int]]]:
    """{parent pid: [(pid, start time)]} of every process, from /proc."""
    found: dict[int, list[tuple[int, int]]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        found.setdefault(int(fields[1]), []).append((int(name), int(fields[19])))
    return found


def _with_descendants(known: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """The known processes still running, and every process under one of them."""
    children = _children_by_parent()
    found = {process for process in known if process_alive(*process)}
    parents = [pid for pid, _ in found]
    while parents:
        for child in children.get(parents.pop(), []):
            if child not in found:
                found.add(child)
                parents.append(child[0])
    return found


def watch(driver: tuple[int, int | None], processes: set[tuple[int, int]]) -> None:
    """Follow `processes` and their descendants while the driver lives; once it is gone, SIGKILL those left."""
    while process_alive(*driver):
        processes = _with_descendants(processes)
        if not processes:
            return  # Ray was shut down
        time.sleep(WATCH_INTERVAL_S)
    for _ in range(3):  # look again for children started while the first ones died
        processes = _with_descendants(processes)
        for pid, _ in processes:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.2)


def _process(text: str) -> tuple[int, int | None]:
    pid, _, started = text.partition(":")
    return int(pid), None if started == "None" else int(started)


if __name__ == "__main__":
    watch(_process(sys.argv[1]), {_process(text) for text in sys.argv[2:]})
