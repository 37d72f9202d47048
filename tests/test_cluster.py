"""A real Ray head node on 127.0.0.1 (scripts/local_cluster.py, as README's recipe starts it), a run submitted to it
with `ray job submit`, and a run whose driver joins it with --address: both give the documents a run on the embedded
local Ray gives. Another Ray holds Ray's default ports meanwhile, as on a machine that someone else's Ray shares."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
LOCAL_CLUSTER = REPO / "scripts" / "local_cluster.py"
# Everything on 127.0.0.1, no token (start and submit agree), no usage reporting: see ../shared/ENVIRONMENT.md.
CLUSTER_ENV = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
               "RAY_USAGE_STATS_ENABLED": "0"}
CLUSTER_ENV.pop("RAY_ADDRESS", None)
# GCS, dashboard, dashboard agent: a head started on these fails when another Ray holds them.
DEFAULT_PORTS = (6379, 8265, 52365)
pytestmark = pytest.mark.slow


def load_local_cluster():
    """scripts/ is not a package: load scripts/local_cluster.py by path."""
    spec = importlib.util.spec_from_file_location("local_cluster", LOCAL_CLUSTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


local_cluster = load_local_cluster()


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def ray_on_default_ports():
    """A Ray head started with Ray's default ports, in its own process group. Where someone else's Ray already
    holds them, this one may not start: the condition holds all the same. It outlives the test's head, whose stop
    must leave it running."""
    base = tempfile.mkdtemp(prefix="rd", dir="/tmp")  # short: Unix socket paths have a length limit
    temp_dir = os.path.join(base, "ray")
    other = subprocess.Popen([RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=0",
                              "--dashboard-host=127.0.0.1", f"--temp-dir={temp_dir}"],
                             env=CLUSTER_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (all(listening(port) for port in DEFAULT_PORTS)  # and this head has started, or given up:
                   and (os.path.exists(os.path.join(temp_dir, "ray_current_cluster")) or other.poll() is not None)):
            assert time.monotonic() < deadline, f"Ray's default ports {DEFAULT_PORTS} are not all held"
            time.sleep(0.5)
        running = other.poll() is None
        yield
        assert not running or other.poll() is None, "stopping the test's head stopped the other Ray too"
    finally:
        local_cluster.end_process_group(other.pid, temp_dir)
        other.wait()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_head(ray_on_default_ports):
    """The head README's recipe starts: every port a free one, in a process group of its own that `stop` ends, and
    no other Ray. It declares one GPU (a logical resource: Ray schedules by it, nothing checks the hardware), so that
    a stage that asks for a GPU has a node to go to."""
    base = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short; the head's Ray temp dir is <base>/ray
    started = subprocess.run([sys.executable, str(LOCAL_CLUSTER), "start", base, "--num-cpus=2", "--num-gpus=1"],
                             env=CLUSTER_ENV, capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stdout + started.stderr
    state = local_cluster.read_state(Path(base))
    yield {"address": state["HEAD_ADDRESS"], "dashboard": state["HEAD_DASHBOARD_URL"], "ray_tmpdir": base}
    stopped = subprocess.run([sys.executable, str(LOCAL_CLUSTER), "stop", base], env=CLUSTER_ENV,
                             capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
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
    submitted = subprocess.run(
        [RAY, "job", "submit", "--address", ray_head["dashboard"], "--",
         sys.executable, "-m", "pipeline.cli", "run", "--config", str(config), "--output", str(tmp_path / "job"),
         "--quiet"],
        env=CLUSTER_ENV, capture_output=True, text=True, timeout=300)
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
    """ray.stages: dedup's tasks ask for 2 CPUs, the tokenizer's sample and training tasks 2 (sentencepiece trains
    in a task, with 2 threads), and train (gpus: 1) runs as a Ray task on the node with the GPU instead of in the
    driver; the state API of the head node shows what each task asked for."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "name": "resources", "input": {"paths": [str(warc_dir / "dolma_wget" / "*.warc.gz")]},
        "stages": ["extract", "dedup", {"tokenizer": {"vocab_size": 500}}, {"tokenize": {"validation_fraction": 0.3}},
                   {"train": {"model": {"n_layer": 1, "n_head": 1, "n_embd": 16}, "block_size": 16, "batch_size": 2,
                              "max_steps": 2, "warmup_steps": 1, "eval_interval": 2, "eval_batches": 1,
                              "device": "cpu"}}],
        "ray": {"stages": {"dedup": {"cpus": 2, "memory_mb": 128}, "tokenizer": {"cpus": 2},
                           "train": {"gpus": 1, "cpus": 1}}},
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
    trainer = [task for task in tasks if task["name"] == "_train_on_sample"]  # sentencepiece, in a task of its own
    assert len(trainer) == 1 and trainer[0]["required_resources"]["CPU"] == 2
    samplers = [task for task in tasks if task["name"] in ("_part_bottom_hashes", "_merge_bottom_hashes")]
    assert samplers and all(task["required_resources"]["CPU"] == 2 for task in samplers)
    encoders = [task for task in tasks if task["name"] == "tokenize_slice"]
    assert encoders and all(task["required_resources"]["CPU"] == 1 for task in encoders)  # the default
