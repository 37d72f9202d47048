"""The run and its Ray processes: it never joins a Ray it was not told to, a worker that cannot build its stages
stops the run with its own error, nothing of a killed run goes on writing or running, and SIGINT / SIGTERM end it
with one line and an exit status that says so. Every process signalled here is one the test started."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from pipeline.plan import load_plan

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def config(tmp_path_factory, warc_dir) -> Path:
    """The real pages in many small units, on Ray (never in-process), so that a run takes some seconds."""
    path = tmp_path_factory.mktemp("processes") / "config.yaml"
    path.write_text(yaml.safe_dump({
        "name": "processes", "input": {"paths": [str(warc_dir / "derived_real_html" / "*.warc.gz")], "unit_mb": 0.5},
        "stages": ["extract"], "ray": {"in_process_max_mb": 0, "workers": 2}}))
    return path


def start(config: Path, output: Path, env: dict | None = None, new_session: bool = True) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "--config", str(config), "--output",
                             str(output), "--quiet"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=new_session,
                            env=env or {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})


def markers(output: Path) -> int:
    return len(list((output / "_done").glob("*.json"))) if (output / "_done").is_dir() else 0


def wait_for_markers(process: subprocess.Popen, output: Path, count: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while markers(output) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no unit finished in time"
        time.sleep(0.05)


def descendants(pid: int) -> set[tuple[int, int]]:
    """(pid, start time) of every process under `pid`, from /proc."""
    children: dict[int, list[tuple[int, int]]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append((int(name), int(fields[19])))
    found, parents = set(), [pid]
    while parents:
        for child in children.get(parents.pop(), []):
            found.add(child)
            parents.append(child[0])
    return found


def alive(process: tuple[int, int]) -> bool:
    """Whether the process (pid, start time) still runs: not gone, not a zombie (exited, waiting to be reaped),
    and not a later process given the same pid."""
    try:
        fields = Path(f"/proc/{process[0]}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != b"Z" and int(fields[19]) == process[1]


def survivors(processes: set[tuple[int, int]], within_s: float) -> list[str]:
    """The command lines of the processes still running after up to `within_s` seconds (checked every 0.1 s)."""
    deadline = time.monotonic() + within_s
    while [p for p in processes if alive(p)] and time.monotonic() < deadline:
        time.sleep(0.1)
    found = []
    for pid, started in processes:
        if alive((pid, started)):
            try:
                found.append(f"{pid}: {Path(f'/proc/{pid}/cmdline').read_bytes().replace(bytes(1), b' ')[:120]!r}")
            except OSError:
                pass
    return found


def test_a_leftover_address_file_of_a_dead_ray_is_never_joined(tmp_path, config):
    """`ray.init()` without an address connects to the cluster named in <RAY_TMPDIR>/ray/ray_current_cluster;
    the run starts its own instead."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Unix socket paths have a length limit
    (ray_tmp / "ray").mkdir(parents=True)
    (ray_tmp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{_free_port()}")  # nobody listens there
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    try:
        process = start(config, tmp_path / "run", env=env)
        stdout, stderr = process.communicate(timeout=600)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert process.returncode == 0, stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "stats" / "summary.json").read_text())
    assert summary["executor"] == "ray" and summary["ray_address"]


def test_a_worker_that_cannot_build_its_stages_stops_the_run_with_its_own_error(tmp_path, warc_dir, local_ray):
    """A word list that the driver staged (prepare) but the workers cannot get (gone from the run directory): the
    run stops with the workers' AssetError instead of handing every unit to workers that fail it in milliseconds."""
    from pipeline.config import load_config
    from pipeline.plan import plan_inputs, plan_units
    from pipeline.progress import NoProgress
    from pipeline.run_dir import RunDir, open_run_dir
    from pipeline.staged_assets import prepare_stages
    from pipeline.unit_pool import WorkerSetupError, process_units

    words = tmp_path / "words.txt"
    words.write_text(f"idiot\n# {tmp_path}\n")  # bytes of this test only: no worker has a copy cached
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({
        "name": "setup", "input": {"paths": [str(warc_dir / "derived_real_html" / "*.warc.gz")], "unit_mb": 0.5},
        "stages": ["extract", {"toxic_words": {"word_list": str(words)}}], "ray": {"workers": 2}}))
    config = load_config(config_path, output=str(tmp_path / "run"))
    run = RunDir(config.run_dir())
    with open_run_dir(run, config.resolved(), overwrite=False) as opened:
        worker_config = prepare_stages(config, run)
        units = plan_units(config, plan_inputs(config, [], run.root))
        assert len(units) > 10
        shutil.rmtree(run.root / "_assets")
        with pytest.raises(WorkerSetupError, match=r"AssetError: .*_assets/[0-9a-f]{16}-words.txt is missing"):
            process_units(units, worker_config, run, opened.fence, NoProgress())
    assert markers(run.root) == 0


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(bytes(1), b" ").decode(errors="replace")
    except OSError:
        return ""


def test_the_watchdog_of_an_embedded_ray_imports_only_the_standard_library():
    """It lives as long as the run beside every other process: a bare interpreter, not pyarrow and the pipeline."""
    probe = ("import sys, pipeline.ray_session; print(sorted(name for name in sys.modules "
             "if name.split('.')[0] in {'pyarrow', 'numpy', 'ray', 'pydantic', 'stages'}))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_the_embedded_ray_starts_no_monitors_and_ends_every_process_it_started(tmp_path, config):
    """A run on one machine needs no autoscaler monitor (nothing to scale) and, without --verbose, no log monitor;
    the rest of a head node runs (GCS, raylet, their agents), and a finished run leaves none of its processes."""
    output = tmp_path / "run"
    process = start(config, output)
    wait_for_markers(process, output, 1)
    ours = descendants(process.pid)
    lines = [command_line(pid) for pid, _ in ours]
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    assert any("gcs_server" in line for line in lines) and any("raylet" in line for line in lines), lines
    assert not [line for line in lines if "autoscaler/_private/monitor.py" in line or "log_monitor.py" in line]
    assert not survivors(ours, within_s=10), "processes of the finished run are still running"


@pytest.mark.parametrize("kill", ["driver", "process group"])
def test_nothing_of_a_killed_run_goes_on_writing_or_running(tmp_path, config, kill):
    output = tmp_path / "run"
    process = start(config, output)
    wait_for_markers(process, output, 1)
    ours = descendants(process.pid)
    assert len(ours) >= 5  # Ray's processes, its agents, its workers, their extraction sandboxes
    if kill == "driver":
        process.kill()
    else:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    time.sleep(0.05)  # a unit whose files were being renamed as the kill came (past its last check) finishes
    at_kill = markers(output)
    time.sleep(6)
    assert markers(output) == at_kill, "workers went on finishing units after their driver was killed"
    assert not survivors(ours, within_s=0), "processes of the killed run are still running"


@pytest.mark.parametrize("signal_number, status, word", [(signal.SIGTERM, 143, "terminated"),
                                                         (signal.SIGINT, 130, "interrupted")])
def test_sigint_and_sigterm_end_the_run_with_one_line_and_the_same_command_resumes(tmp_path, config,
                                                                                   signal_number, status, word):
    output = tmp_path / "run"
    process = start(config, output, new_session=False)
    wait_for_markers(process, output, 1)
    ours = descendants(process.pid)
    process.send_signal(signal_number)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == status
    assert stderr.strip().splitlines()[-1] == f"{word}; the same command resumes", stderr
    assert "Traceback" not in stderr
    assert not (output / "_lock.json").exists()
    assert not survivors(ours, within_s=10)
    if signal_number == signal.SIGINT:
        return  # (resuming is the same after either)
    resumed = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--config", str(config), "--output",
                              str(output), "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert " done earlier" in resumed.stdout


def busy_unit_workers(pid: int) -> set[int]:
    """The pids of the run's document workers that are processing a unit now (Ray names such a process
    ray::UnitActor.process while the call runs)."""
    found = set()
    for process, _ in descendants(pid):
        try:
            if Path(f"/proc/{process}/cmdline").read_bytes().startswith(b"ray::UnitActor.process"):
                found.add(process)
        except OSError:
            pass
    return found


def test_a_unit_that_hangs_is_killed_at_the_time_limit_tried_once_more_and_then_failed_by_name(tmp_path, warc_dir):
    """One worker; once it has finished a unit, it is frozen in the middle of the next (SIGSTOP: a hang nothing
    inside the process can see). The runner kills it when the unit reaches ray.unit_timeout_s and gives the unit
    to the restarted worker; that one is frozen too, so the unit fails, named with its file and byte range, and the
    run finishes the others."""
    limit_s = 4
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "name": "hang", "input": {"paths": [str(warc_dir / "derived_real_html" / "derived-real-html-00000.warc.gz")],
                                  "unit_mb": 1},
        "stages": ["extract"], "ray": {"in_process_max_mb": 0, "workers": 1, "unit_timeout_s": limit_s}}))
    output = tmp_path / "run"
    process = start(config, output)
    frozen: list[int] = []
    killed_after_s: list[float] = []
    try:
        wait_for_markers(process, output, 1)
        for _ in range(2):
            deadline = time.monotonic() + 120
            while not busy_unit_workers(process.pid) - set(frozen):
                assert process.poll() is None and time.monotonic() < deadline, "no busy worker to freeze"
                time.sleep(0.02)
            [worker] = busy_unit_workers(process.pid) - set(frozen)
            frozen_process = next(p for p in descendants(process.pid) if p[0] == worker)
            os.kill(worker, signal.SIGSTOP)
            frozen.append(worker)
            stopped = time.monotonic()
            while alive(frozen_process):
                assert time.monotonic() - stopped < limit_s + 30, "the frozen worker was never killed"
                time.sleep(0.05)
            killed_after_s.append(time.monotonic() - stopped)
        stdout, stderr = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 1, stderr[-3000:]
    # killed when the unit reached the limit (it had started before the freeze), plus Ray's grace to kill it
    assert all(seconds <= limit_s + 10 for seconds in killed_after_s), killed_after_s
    failed = [line for line in stdout.splitlines() if line.startswith("FAILED UNIT")]
    assert len(failed) == 1 and "UnitTimeout: " in failed[0], stdout[-3000:]
    assert "derived-real-html-0000" in failed[0] and "(bytes " in failed[0] and "2 times" in failed[0]
    units, _ = load_plan(output / "plan.parquet")
    assert markers(output) == len(units) - 1  # every other unit finished


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
