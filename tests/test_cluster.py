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
    """A head node in its own process group (`--block`), so that the teardown stops this cluster and no other."""
    temp_dir = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: Unix socket paths have a length limit
    port, dashboard = free_port(), free_port()
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         f"--temp-dir={temp_dir}"],
        env=CLUSTER_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    dashboard_url = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{dashboard_url}/api/version", timeout=2).read()
            break
        except OSError:
            if head.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the Ray head node did not start") from None
            time.sleep(0.5)
    yield {"address": f"127.0.0.1:{port}", "dashboard": dashboard_url}
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    os.killpg(head.pid, signal.SIGKILL)  # what SIGTERM left (the GCS can linger)
    head.wait()
    shutil.rmtree(temp_dir, ignore_errors=True)


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
    submitted = subprocess.run(
        [RAY, "job", "submit", "--address", ray_head["dashboard"], "--",
         sys.executable, "-m", "pipeline.cli", "run", "--config", str(config), "--output", str(tmp_path / "job"),
         "--quiet"],
        env=CLUSTER_ENV, capture_output=True, text=True, timeout=600)
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
