"""A Ray head node on 127.0.0.1 that shares no port with any other Ray on the machine, worker nodes that join it
as separate machines would, and a stop that ends one of them and nothing else.

    python scripts/local_cluster.py start DIR [more `ray start` options, e.g. --num-cpus=2]
    python scripts/local_cluster.py join DIR HEAD_ADDRESS [more `ray start` options, e.g. --num-cpus=2]
    python scripts/local_cluster.py stop DIR

Why: a second head started with Ray's default ports cannot bind what the first one holds (its dashboard agent
"stays alive but the HTTP service will be disabled" on 52365, and `ray job submit` answers "No available agent"
forever), and `ray stop` has no address: it stops every Ray on the machine, other users' included.

`start` runs `ray start --head --block` in a process group of its own, with every port given explicitly (free
ones, picked by the kernel; worker ports too) and Ray's temp dir in DIR/ray (keep DIR short: Ray's Unix socket
paths under it must fit in 107 bytes). It returns once the head takes jobs: the dashboard answers, the dashboard
agent answers on its own port, and `ray start` has finished. It writes DIR/head.env, which a shell can source:
HEAD_ADDRESS (for `--address`), HEAD_DASHBOARD_URL (for `ray job submit --address`), HEAD_PGID, HEAD_TEMP_DIR and
the ports. `stop` ends that process group and the workers below it, and no other process.

`join` starts a worker node the same way: its own Ray temp dir (DIR/ray), every port free, its process group, and
DIR/work as the working directory of its processes. It returns once the node's raylet answers, and writes
DIR/node.env (NODE_PGID, NODE_TEMP_DIR, the ports). Give each node what a separate machine would have of its own in
the environment of `join` (CCPIPELINE_CACHE, say): its processes inherit it.

A node gets the environment of `start` or `join`: set RAY_AUTH_MODE=disabled there and for `ray job submit` if
they should need no token.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil  # a dependency of ray[default]

RAY = str(Path(sys.executable).parent / "ray")
HOST = "127.0.0.1"
# Every port `ray start --head` would otherwise take from its defaults (6379, 8265, 52365, 10001) or pick itself.
PORT_OPTIONS = ["port", "dashboard-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                "metrics-export-port", "runtime-env-agent-port", "node-manager-port", "object-manager-port",
                "ray-client-server-port"]
# Two Prometheus endpoints with fixed ports (44217, 44227) that no option sets; Ray reads them from the environment.
PORT_VARIABLES = ["AUTOSCALER_METRIC_PORT", "DASHBOARD_METRIC_PORT"]
# Ray's default worker range, 10002-19999, is shared by every Ray on the machine; 0 and 0 let each worker take a
# free port from the kernel, as an embedded `ray.init()` does.
WORKER_PORT_OPTIONS = ["--min-worker-port=0", "--max-worker-port=0"]
# Keep every address on 127.0.0.1 (without it, `ray start` may pick another address), report no usage, and stop
# without draining: a node drains until every worker lease is returned, and Ray Data's long-lived actors never
# return theirs, so each stop would wait out the 30 s drain.
HEAD_ENVIRONMENT = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
                    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
# `ray start --address` refuses to start a worker node while RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER is 0 (it takes the
# machine for Windows or macOS), and with 1 it turns the head's 127.0.0.1 into the machine's routed address, where
# the head does not listen. So a worker node runs `ray start` with 0 in its environment (every address stays
# 127.0.0.1) and this one check of the `ray start` command lifted.
RAY_START_WORKER_NODE = """
import sys, types
import ray._private.ray_constants as constants
import ray.scripts.scripts as scripts
scripts.ray_constants = types.SimpleNamespace(**{**vars(constants), "ENABLE_RAY_CLUSTER": True})
sys.argv = ["ray", *sys.argv[1:]]
sys.exit(scripts.main())
"""
STATE_FILE = "head.env"
NODE_STATE_FILE = "node.env"
# The ports of a worker node: the head's, less those only a head has (GCS, dashboard, Ray client).
NODE_PORT_OPTIONS = ["dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
                     "runtime-env-agent-port", "node-manager-port", "object-manager-port"]
START_TIMEOUT_S = 120
STOP_GRACE_S = 20


def free_ports(count: int) -> list[int]:
    """count distinct ports that no socket on the machine holds now (all held open together, so none repeats)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start(directory: Path, ray_args: list[str]) -> dict[str, str]:
    """Start the head, wait until it takes jobs, write DIR/head.env and return what it holds."""
    directory = directory.resolve()
    temp_dir = directory / "ray"
    ports = dict(zip(PORT_OPTIONS + PORT_VARIABLES, free_ports(len(PORT_OPTIONS) + len(PORT_VARIABLES))))
    command = [RAY, "start", "--head", "--block", f"--node-ip-address={HOST}", f"--dashboard-host={HOST}",
               "--include-dashboard=true", f"--temp-dir={temp_dir}", *WORKER_PORT_OPTIONS,
               *(f"--{option}={ports[option]}" for option in PORT_OPTIONS), *ray_args]
    environment = {**os.environ, **HEAD_ENVIRONMENT, **{variable: str(ports[variable]) for variable in PORT_VARIABLES}}
    dashboard_url = f"http://{HOST}:{ports['dashboard-port']}"
    agent_url = f"http://{HOST}:{ports['dashboard-agent-listen-port']}/api/local_raylet_healthz"
    pgid = _start_node(directory, STATE_FILE, command, environment, directory, lambda: (
        (temp_dir / "ray_current_cluster").exists()  # written when `ray start` has started everything
        and answers(f"{dashboard_url}/api/version") and answers(agent_url)))
    state = {"HEAD_ADDRESS": f"{HOST}:{ports['port']}", "HEAD_DASHBOARD_URL": dashboard_url,
             "HEAD_PGID": str(pgid), "HEAD_TEMP_DIR": str(temp_dir),
             **{"HEAD_" + name.upper().replace("-", "_"): str(port) for name, port in ports.items()}}
    (directory / STATE_FILE).write_text("".join(f"{key}={shlex.quote(value)}\n" for key, value in state.items()))
    return state


def join(directory: Path, head_address: str, ray_args: list[str]) -> dict[str, str]:
    """Start a worker node of the head at head_address, wait until its raylet answers, write DIR/node.env and
    return what it holds."""
    directory = directory.resolve()
    temp_dir = directory / "ray"
    work_dir = directory / "work"
    work_dir.mkdir(parents=True, exist_ok=True)
    ports = dict(zip(NODE_PORT_OPTIONS, free_ports(len(NODE_PORT_OPTIONS))))
    command = [sys.executable, "-c", RAY_START_WORKER_NODE, "start", f"--address={head_address}", "--block", f"--node-ip-address={HOST}",
               f"--temp-dir={temp_dir}", *WORKER_PORT_OPTIONS,
               *(f"--{option}={ports[option]}" for option in NODE_PORT_OPTIONS), *ray_args]
    agent_url = f"http://{HOST}:{ports['dashboard-agent-listen-port']}/api/local_raylet_healthz"
    pgid = _start_node(directory, NODE_STATE_FILE, command, {**os.environ, **HEAD_ENVIRONMENT}, work_dir,
                       lambda: answers(agent_url))
    state = {"NODE_PGID": str(pgid), "NODE_TEMP_DIR": str(temp_dir), "NODE_WORK_DIR": str(work_dir),
             **{"NODE_" + name.upper().replace("-", "_"): str(port) for name, port in ports.items()}}
    (directory / NODE_STATE_FILE).write_text("".join(f"{key}={shlex.quote(value)}\n" for key, value in state.items()))
    return state


def _start_node(directory: Path, state_file: str, command: list[str], environment: dict, cwd: Path, ready) -> int:
    """Run `command` (a blocking `ray start`) in a process group of its own with its log in DIR; wait until
    ready() holds; return the group id. A node that fails or an interrupted start leaves nothing running."""
    temp_dir = directory / "ray"
    if (directory / state_file).exists():
        raise SystemExit(f"{directory / state_file} exists: stop that node first (or remove the file)")
    temp_dir.mkdir(parents=True, exist_ok=True)
    log = directory / ("head.log" if state_file == STATE_FILE else "node.log")
    with open(log, "wb") as output:
        node = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while not ready():
            if node.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise SystemExit(f"the Ray node did not start (log: {log}; Ray's logs: {temp_dir}):\n{tail}")
            time.sleep(0.5)
    except BaseException:
        end_process_group(node.pid, str(temp_dir))
        raise
    return node.pid


def read_state(directory: Path, state_file: str = STATE_FILE) -> dict[str, str]:
    lines = (directory / state_file).read_text().splitlines()
    return {key: shlex.split(value)[0] for key, value in (line.split("=", 1) for line in lines)}


def end_process_group(pgid: int, temp_dir: str) -> None:
    """End the processes of group pgid and their descendants (Ray's workers run in sessions of their own), if the
    group is the head whose Ray temp dir is temp_dir: a pid reused by someone else's process is left alone.

    SIGTERM goes to `ray start --block` alone, which ends what it started (signalling every process at once leaves
    the GCS and the raylet waiting on each other); SIGKILL ends what is left after the grace period."""
    group = [process for process in psutil.process_iter(["cmdline"]) if _pgid(process.pid) == pgid]
    if not any(temp_dir in " ".join(process.info["cmdline"] or []) for process in group):
        return  # already stopped
    doomed = {process.pid: process for process in group}
    for process in group:
        try:
            doomed.update((child.pid, child) for child in process.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    for process in [doomed[pgid]] if pgid in doomed else doomed.values():
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(list(doomed.values()), timeout=STOP_GRACE_S)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def stop(directory: Path) -> None:
    """End the head or the worker node started in DIR."""
    for state_file, prefix in ((STATE_FILE, "HEAD_"), (NODE_STATE_FILE, "NODE_")):
        if (directory / state_file).exists():
            state = read_state(directory, state_file)
            end_process_group(int(state[prefix + "PGID"]), state[prefix + "TEMP_DIR"])
            (directory / state_file).unlink()
            return
    raise SystemExit(f"no {STATE_FILE} or {NODE_STATE_FILE} in {directory}: no node started there, or it was stopped")


def main(argv: list[str]) -> int:
    usage = (len(argv) < 2 or argv[0] not in ("start", "join", "stop") or (argv[0] == "stop" and len(argv) != 2)
             or (argv[0] == "join" and len(argv) < 3))
    if usage:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    directory = Path(argv[1])
    if argv[0] == "start":
        state = start(directory, argv[2:])
        print(f"Ray head {state['HEAD_ADDRESS']}, dashboard {state['HEAD_DASHBOARD_URL']}, process group "
              f"{state['HEAD_PGID']}; state in {directory / STATE_FILE}")
    elif argv[0] == "join":
        state = join(directory, argv[2], argv[3:])
        print(f"Ray worker node of {argv[2]}, process group {state['NODE_PGID']}; state in "
              f"{directory / NODE_STATE_FILE}")
    else:
        stop(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
