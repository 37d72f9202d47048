"""A real Ray head node on 127.0.0.1 (`ray start --head`), a run submitted to it with `ray job submit`, and a run
whose driver joins it with --address: both give the documents a run on the embedded local Ray gives."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
# Everything on 127.0.0.1, no token (start and submit agree), no usage reporting: see ../shared/ENVIRONMENT.md.
CLUSTER_ENV = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
               "RAY_USAGE_STATS_ENABLED": "0"}
CLUSTER_ENV.pop("RAY_ADDRESS", None)
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """A head node in its own process group (`--block`), so that the teardown stops this cluster and no other.
    It declares one GPU (a logical resource: Ray schedules by it, nothing checks the hardware), so that a stage
    that asks for a GPU has a node to go to."""
    base = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: Unix socket paths have a length limit
    temp_dir = os.path.join(base, "ray")  # so that <base>/ray/ray_current_cluster names this head (RAY_TMPDIR)
    port, dashboard = free_port(), free_port()
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
         "--num-gpus=1", "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         f"--temp-dir={temp_dir}"],
        env=CLUSTER_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    dashboard_url = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{dashboard_url}/api/version", timeout=2).read()
            if os.path.exists(os.path.join(temp_dir, "ray_current_cluster")):  # written last by `ray start`
                break
        except OSError:
            pass
        if head.poll() is not None or time.monotonic() > deadline:
            raise AssertionError("the Ray head node did not start")
        time.sleep(0.5)
    yield {"address": f"127.0.0.1:{port}", "dashboard": dashboard_url, "ray_tmpdir": base}
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(head.pid, signal.SIGKILL)  # what SIGTERM left (the GCS can linger)
    except ProcessLookupError:
        pass
    head.wait()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def config(tmp_path_factory, warc_dir) -> Path:
    path = tmp_path_factory.mktemp("cluster") / "config.yaml"
    path.write_text(yaml.safe_dump({"name": "cluster", "input": {"paths": [str(warc_dir / "dolma_wget" / "*.warc.gz")]},
                                    "stages": ["extract", "dedup"], "ray": {"memory_mb_per_worker": 256}}))
    return path


def ids(run: Path) -> list[str]:
    return sorted(ds.dataset(run / "dedup" / "documents", format="parquet").to_table(columns=["id"])["id"].to_pylist())


def run_locally(config: Path, output: Path) -> list[str]:
    completed = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--config", str(config), "--output",
                                str(output), "--quiet"], cwd=REPO, env=CLUSTER_ENV, capture_output=True, text=True,
                               timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return ids(output)


def test_a_job_submitted_to_a_head_node_gives_the_local_result(ray_head, config, tmp_path):
    deadline = time.monotonic() + 120
    while True:  # a head node answers HTTP before its job agent has registered: Ray says to try again later
        submitted = subprocess.run(
            [RAY, "job", "submit", "--address", ray_head["dashboard"], "--",
             sys.executable, "-m", "pipeline.cli", "run", "--config", str(config), "--output", str(tmp_path / "job"),
             "--quiet"],
            env=CLUSTER_ENV, capture_output=True, text=True, timeout=600)
        if "No available agent" not in submitted.stdout + submitted.stderr or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert submitted.returncode == 0 and "succeeded" in submitted.stdout, submitted.stdout[-3000:]
    assert "documents in" in submitted.stdout  # the run's own summary, streamed back by the job client
    assert ids(tmp_path / "job") == run_locally(config, tmp_path / "local") != []


def test_a_driver_joins_the_cluster_with_address(ray_head, config, tmp_path):
    completed = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--config", str(config), "--output",
                                str(tmp_path / "joined"), "--address", ray_head["address"], "--quiet"], cwd=REPO,
                               env=CLUSTER_ENV, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    nodes = subprocess.run([RAY, "list", "nodes", "--address", ray_head["address"], "--format", "yaml"],
                           env=CLUSTER_ENV, capture_output=True, text=True, timeout=120)
    assert nodes.returncode == 0 and "127.0.0.1" in nodes.stdout
    assert ids(tmp_path / "joined") == run_locally(config, tmp_path / "local")


def test_a_ray_started_on_the_machine_is_not_joined_without_an_address(ray_head, tmp_path, warc_dir):
    """`ray start` leaves the head's address where `ray.init()` looks (RAY_TMPDIR/ray/ray_current_cluster): a run
    given no address starts a Ray of its own rather than joining that one by accident."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"name": "own", "input": {"paths": [str(warc_dir / "dolma_wget" / "*.warc.gz")]},
                                      "stages": ["extract"], "ray": {"in_process_max_mb": 0}}))
    assert Path(ray_head["ray_tmpdir"], "ray", "ray_current_cluster").read_text().strip() == ray_head["address"]
    completed = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--config", str(config), "--output",
                                str(tmp_path / "run"), "--quiet"], cwd=REPO,
                               env={**CLUSTER_ENV, "RAY_TMPDIR": ray_head["ray_tmpdir"]}, capture_output=True,
                               text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = yaml.safe_load((tmp_path / "run" / "stats" / "summary.json").read_text())
    assert summary["executor"] == "ray" and summary["ray_address"] not in (None, ray_head["address"])


def test_each_global_stage_asks_the_cluster_for_its_own_resources(ray_head, warc_dir, tmp_path):
    """ray.stages: dedup's tasks ask for 2 CPUs, and train (gpus: 1) runs as a Ray task on the node with the GPU
    instead of in the driver; the state API of the head node shows what each task asked for."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "name": "resources", "input": {"paths": [str(warc_dir / "dolma_wget" / "*.warc.gz")]},
        "stages": ["extract", "dedup", {"tokenizer": {"vocab_size": 500}}, {"tokenize": {"validation_fraction": 0.3}},
                   {"train": {"model": {"n_layer": 1, "n_head": 1, "n_embd": 16}, "block_size": 16, "batch_size": 2,
                              "max_steps": 2, "warmup_steps": 1, "eval_interval": 2, "eval_batches": 1,
                              "device": "cpu"}}],
        "ray": {"stages": {"dedup": {"cpus": 2, "memory_mb": 128}, "train": {"gpus": 1, "cpus": 1}}},
    }))
    completed = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--config", str(config), "--output",
                                str(tmp_path / "run"), "--address", ray_head["address"]], cwd=REPO,
                               env=CLUSTER_ENV, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert (tmp_path / "run" / "train" / "checkpoint.pt").is_file()
    listed = subprocess.run([RAY, "list", "tasks", "--address", ray_head["address"], "--detail", "--format", "yaml",
                             "--limit", "10000"], env=CLUSTER_ENV, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    tasks = yaml.safe_load(listed.stdout)
    train = [task for task in tasks if task["name"] == "run_train"]
    tasks = [task for task in tasks if task["job_id"] == train[0]["job_id"]]  # this run's, not the other tests'
    assert len(train) == 1 and train[0]["required_resources"]["GPU"] == 1 and train[0]["state"] == "FINISHED"
    signatures = [task for task in tasks if "_signature_rows" in task["name"]]
    assert signatures and all(task["required_resources"]["CPU"] == 2 for task in signatures)
    assert all(task["required_resources"]["memory"] == 128 * 1024 * 1024 for task in signatures)
    encoders = [task for task in tasks if task["name"] == "encode_slice"]
    assert encoders and all(task["required_resources"]["CPU"] == 1 for task in encoders)  # the default
