"""A Common Crawl run on a Ray cluster whose nodes share no disk: a head and two worker nodes on 127.0.0.1
(scripts/local_cluster.py; each node with its own Ray temp dir, model cache and working directory), the crawl served
by a loopback HTTP server that honours Range requests and injects faults, the run directory on a moto S3 server.

Only worker processes read WARC bytes (every request names its reader: host, pid and Ray node), the driver's model
cache can go once the run has staged what the workers need, and the outputs are those of a single-node run of the
same input, byte for byte. A worker node killed mid-run (SIGKILL to its raylet) loses nothing: its units are read
again on the other node and the outputs do not change."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml

import test_object_store
from http_server import FileServer
from test_cluster import CLUSTER_ENV, RAY, load_local_cluster
from test_commoncrawl import CRAWL, crawl_tree
from test_object_store import CREDENTIALS, _ids, _shard_files, s3

REPO = Path(__file__).resolve().parents[1]
LOCAL_CLUSTER = REPO / "scripts" / "local_cluster.py"
# The head notices a dead node (its raylet refuses the check at once) after 5 checks a second apart; a live one on a
# busy machine has 5 s to answer each.
HEALTH_CHECKS = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "5000",
                 "RAY_health_check_failure_threshold": "5"}
# Drops the driver's model cache once the run has staged its files (sys.argv[1]), then runs the command.
LAUNCHER = """
import shutil, sys
import pipeline.runner as runner
from pipeline.cli import main

staged = runner.prepare_stages

def prepare_then_lose_the_model_cache(config, run):
    worker_config = staged(config, run)
    shutil.rmtree(sys.argv[1])
    return worker_config

runner.prepare_stages = prepare_then_lose_the_model_cache
sys.exit(main(sys.argv[2:]))
"""
pytestmark = pytest.mark.slow
local_cluster = load_local_cluster()


@pytest.fixture(scope="module")
def s3_query():
    """moto's S3 server on loopback, as tests/test_object_store.py starts it."""
    yield from test_object_store.s3_query.__wrapped__()


@pytest.fixture(scope="module")
def crawl(warc_dir):
    """The crawl over HTTP: four real WARC files and the paths manifest, served with ranges, faults and a log."""
    with FileServer(crawl_tree(warc_dir), slow_s=2.0) as server:
        yield server


@pytest.fixture(scope="module")
def lid_cache(tmp_path_factory, lid_model) -> Path:
    """A model cache holding lid.176 (as `pipeline fetch-models` leaves it), copied into each driver's own."""
    cache = tmp_path_factory.mktemp("models")
    (cache / "models").mkdir()
    shutil.copy(lid_model, cache / "models" / lid_model.name)
    return cache


@pytest.fixture(scope="module")
def cluster(s3_query, lid_cache):
    """Head (no CPUs: it runs the driver and nothing else) and worker nodes a and b (one CPU each). The head's
    model cache holds lid.176; the workers' caches start empty."""
    base = Path(tempfile.mkdtemp(prefix="nc", dir="/tmp"))  # short: Unix socket paths under it have a length limit
    environment = {**CLUSTER_ENV, **CREDENTIALS, **HEALTH_CHECKS}
    started: list[Path] = []
    try:
        head = base / "h"
        shutil.copytree(lid_cache, head / "cache")
        _node("start", head, ["--num-cpus=0", "--object-store-memory=100000000"],
              {**environment, "CCPIPELINE_CACHE": str(head / "cache")})
        started.append(head)
        address = local_cluster.read_state(head)["HEAD_ADDRESS"]
        for name in ("a", "b"):
            _node("join", base / name, [address, "--num-cpus=1", f"--node-name={name}",
                                        "--object-store-memory=100000000"],
                  {**environment, "CCPIPELINE_CACHE": str(base / name / "cache")})
            started.append(base / name)
        yield {"address": address, "dashboard": local_cluster.read_state(head)["HEAD_DASHBOARD_URL"], "base": base,
               "nodes": _node_ids(address), "environment": environment}
    finally:
        for directory in reversed(started):
            subprocess.run([sys.executable, str(LOCAL_CLUSTER), "stop", str(directory)], env=CLUSTER_ENV,
                           capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def _node(command: str, directory: Path, args: list[str], environment: dict) -> None:
    done = subprocess.run([sys.executable, str(LOCAL_CLUSTER), command, str(directory), *args], env=environment,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def _node_ids(address: str) -> dict[str, str]:
    """{node name: Ray node id}; the head's name is "head"."""
    listed = subprocess.run([RAY, "list", "nodes", "--address", address, "--format", "yaml"], env=CLUSTER_ENV,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    return {"head" if node["is_head_node"] else node["node_name"]: node["node_id"]
            for node in yaml.safe_load(listed.stdout) if node["state"] == "ALIVE"}


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory, crawl) -> Path:
    """What `ray job submit --working-dir` ships to the cluster: the config, and the launcher above."""
    directory = tmp_path_factory.mktemp("job")
    (directory / "crawl.yaml").write_text(yaml.safe_dump({
        "name": "crawl",
        "input": {"commoncrawl": {"crawl": CRAWL, "base_url": crawl.base_url}, "unit_mb": 0.05},
        "stages": ["extract", "langid", "dedup", {"tokenizer": {"vocab_size": 600}},
                   {"tokenize": {"shard_tokens": 20_000, "validation_fraction": 0.2}},
                   {"train": {"model": {"n_layer": 1, "n_head": 1, "n_embd": 16}, "block_size": 16, "batch_size": 2,
                              "max_steps": 2, "warmup_steps": 1, "eval_interval": 2, "eval_batches": 1,
                              "device": "cpu"}}],
    }))
    (directory / "launcher.py").write_text(LAUNCHER)
    return directory


@pytest.fixture(scope="module")
def single_node(tmp_path_factory, job_dir, crawl, lid_cache) -> Path:
    """The same config run on one machine: an embedded local Ray, a local run directory, no faults."""
    output = tmp_path_factory.mktemp("single") / "run"
    cache = tmp_path_factory.mktemp("single-cache")
    shutil.copytree(lid_cache, cache, dirs_exist_ok=True)
    completed = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--config", str(job_dir / "crawl.yaml"),
                                "--output", str(output), "--quiet"], cwd=REPO, capture_output=True, text=True,
                               timeout=900, env={**CLUSTER_ENV, "CCPIPELINE_CACHE": str(cache)})
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return output


def _warc_gets(log: list, since: int = 0) -> list[tuple[str, str, str]]:
    """(path, first byte asked, reader) of each GET of WARC bytes in the server's log from entry `since` on."""
    return [(path, (asked or "bytes=0-").removeprefix("bytes=").split("-")[0], reader or "")
            for method, path, asked, reader in log[since:] if method == "GET" and path.endswith(".warc.gz")]


def _node_of(reader: str, nodes: dict[str, str]) -> str | None:
    """The name of the node a reader header names, or None for a process outside Ray's workers (a driver)."""
    node_id = reader.partition(" node=")[2]
    return next((name for name, known in nodes.items() if known == node_id), "unknown") if node_id else None


def _assert_same_outputs(remote, local: Path) -> None:
    assert _ids(remote / "documents") == _ids(local / "documents") != []
    assert _ids(remote / "dedup" / "documents") == _ids(local / "dedup" / "documents")
    assert (remote / "tokenizer" / "tokenizer.model").read_bytes() == (local / "tokenizer" / "tokenizer.model").read_bytes()
    assert _shard_files(remote / "shards") == _shard_files(local / "shards")  # byte-identical shards and manifest


def test_a_crawl_job_on_nodes_that_share_no_disk_gives_the_single_node_outputs(cluster, crawl, job_dir, s3_query,
                                                                               single_node):
    """`ray job submit` of the crawl config, the run directory on S3, a 503, a cut connection and a slow answer on
    the way: only worker processes on the worker nodes read WARC bytes, both nodes read some, the driver's model
    cache is gone after prepare, the outputs are the single-node run's, and the train stage runs as a Ray task on a
    worker node (the single-node run trains in its driver)."""
    warcs = sorted(path for path in crawl.files if path.endswith(".warc.gz"))
    crawl.faults.update({warcs[0]: ["503"], warcs[1]: [None, "cut"], warcs[2]: ["slow"]})
    since = len(crawl.log)
    output = s3(s3_query, "runs/job")
    submitted = subprocess.run(
        [RAY, "job", "submit", "--address", cluster["dashboard"], "--working-dir", str(job_dir), "--",
         sys.executable, "launcher.py", str(cluster["base"] / "h" / "cache"), "run", "--config", "crawl.yaml",
         "--output", str(output), "--quiet"],
        env=cluster["environment"], capture_output=True, text=True, timeout=900)
    assert submitted.returncode == 0 and "succeeded" in submitted.stdout, submitted.stdout[-4000:]
    assert not (cluster["base"] / "h" / "cache").exists()  # the workers built langid from the staged copy
    assert all(not crawl.faults[path] for path in warcs[:3])  # each fault was met and retried
    gets = _warc_gets(crawl.log, since)
    readers = {_node_of(reader, cluster["nodes"]) for _, _, reader in gets}
    assert readers == {"a", "b"}, readers  # never the driver (no node), never the head
    for name in ("a", "b"):  # each node copied the staged model into its own cache
        assert list((cluster["base"] / name / "cache" / "assets").glob("*lid.176.ftz"))
    summary = yaml.safe_load((output / "stats" / "summary.json").read_text())
    assert summary["accounting_problems"] == [] and summary["failed_units"] == {}
    _assert_same_outputs(output, single_node)
    listed = subprocess.run([RAY, "list", "tasks", "--address", cluster["address"], "--filter", "name=run_train",
                             "--detail", "--format", "yaml"], env=CLUSTER_ENV, capture_output=True, text=True,
                            timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    [train] = yaml.safe_load(listed.stdout)  # the trainer ran as a task on a worker node, not in the job's driver
    assert train["state"] == "FINISHED" and train["node_id"] in (cluster["nodes"]["a"], cluster["nodes"]["b"])
    assert (output / "train" / "checkpoint.pt").exists() and (single_node / "train" / "checkpoint.pt").exists()


def test_a_worker_node_killed_mid_run_has_its_units_read_again_elsewhere(cluster, crawl, job_dir, s3_query,
                                                                         single_node, lid_cache):
    """A driver that joins with --address; every WARC answer is slow, and node b's raylet is killed (SIGKILL) as
    soon as b asks for its first bytes: the units it held are read again by node a, and the outputs are unchanged.
    (Its progress line goes on: the progress board lives on the driver's node.)"""
    for path in crawl.files:
        if path.endswith(".warc.gz"):
            crawl.faults[path] = ["slow"] * 50
    since = len(crawl.log)
    output = s3(s3_query, "runs/killed")
    shutil.copytree(lid_cache, cluster["base"] / "driver")
    driver = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "--config", str(job_dir / "crawl.yaml"),
                               "--output", str(output), "--address", cluster["address"]], cwd=REPO,
                              env={**cluster["environment"], "CCPIPELINE_CACHE": str(cluster["base"] / "driver")},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not any(_node_of(reader, cluster["nodes"]) == "b" for *_, reader in _warc_gets(crawl.log, since)):
            assert driver.poll() is None and time.monotonic() < deadline, "node b never read"
            time.sleep(0.05)
        killed_at = len(crawl.log)
        os.kill(_raylet_of(cluster["base"] / "b"), signal.SIGKILL)
        for path in crawl.files:  # the rest at full speed
            crawl.faults.pop(path, None)
        out, _ = driver.communicate(timeout=900)
    finally:
        if driver.poll() is None:
            driver.kill()
        for path in crawl.files:
            crawl.faults.pop(path, None)
    assert driver.returncode == 0, f"{cluster['nodes']}\n{out[-4000:]}"
    gets = _warc_gets(crawl.log, since)
    before = {(path, first) for path, first, reader in gets[:killed_at - since]
              if _node_of(reader, cluster["nodes"]) == "b"}
    after = {(path, first) for path, first, reader in _warc_gets(crawl.log, killed_at)
             if _node_of(reader, cluster["nodes"]) == "a"}
    assert before and before <= after  # what b had started, a read again
    assert {_node_of(reader, cluster["nodes"]) for _, _, reader in gets} == {"a", "b"}
    summary = yaml.safe_load((output / "stats" / "summary.json").read_text())
    assert summary["accounting_problems"] == [] and summary["failed_units"] == {}
    _assert_same_outputs(output, single_node)


def _raylet_of(node_dir: Path) -> int:
    """The pid of the raylet `scripts/local_cluster.py join` started in node_dir (a process this test started)."""
    state = local_cluster.read_state(node_dir, local_cluster.NODE_STATE_FILE)
    group = int(state["NODE_PGID"])
    for process in psutil.Process(group).children(recursive=True):
        command = process.cmdline()
        if command and command[0].endswith("raylet") and any(state["NODE_TEMP_DIR"] in part for part in command):
            return process.pid
    raise AssertionError(f"no raylet under process group {group}")
