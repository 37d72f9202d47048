"""A run killed with SIGKILL part-way, then run again with the same command, ends with exactly what an
uninterrupted run produces: the same documents (none lost, none doubled) and byte-identical token shards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def start(config: Path, output: Path) -> subprocess.Popen:
    """`pipeline run` in its own process group, so that a kill takes its Ray processes with it."""
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "--config", str(config), "--output",
                             str(output), "--quiet"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})


def kill_when(process: subprocess.Popen, ready, timeout_s: float = 300) -> bool:
    """SIGKILL the run's process group as soon as `ready()`; False when the run ended first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if ready():
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    raise AssertionError("the run neither finished nor reached the kill point")


def finish(config: Path, output: Path) -> None:
    completed = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--config", str(config), "--output",
                                str(output), "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]


def ids(directory: Path) -> list[str]:
    return sorted(ds.dataset(directory, format="parquet").to_table(columns=["id"]).column("id").to_pylist())


def shard_bytes(run: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((run / "shards").iterdir()) if path.name != "_done.json"}


def test_killed_twice_then_resumed_equals_uninterrupted(tmp_path, warc_dir):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        # two of the three files (586 pages, about 18 units): enough units for a kill after the third
        "name": "crash",
        "input": {"paths": [str(warc_dir / "derived_real_html" / "derived-real-html-0000[01].warc.gz")]},
        "stages": ["extract", "dedup", {"tokenizer": {"vocab_size": 1000}},
                   {"tokenize": {"shard_tokens": 100_000}}],
    }))
    finish(config, tmp_path / "straight")

    crashed = tmp_path / "crashed"
    markers = crashed / "_done"
    # 1: killed in the per-document pass, once a few units have finished
    assert kill_when(start(config, crashed), lambda: markers.is_dir() and len(list(markers.glob("*.json"))) >= 3)
    finished_before = len(list(markers.glob("*.json")))
    # 2: killed again after dedup finished, in the tokenizer or tokenize stage
    assert kill_when(start(config, crashed), lambda: (crashed / "dedup" / "_done.json").exists())
    assert not (crashed / "shards" / "_done.json").exists()
    finish(config, crashed)

    assert finished_before >= 3
    assert ids(crashed / "documents") == ids(tmp_path / "straight" / "documents")  # none lost, none doubled
    assert len(set(ids(crashed / "documents"))) == len(ids(crashed / "documents"))
    assert ids(crashed / "dedup" / "documents") == ids(tmp_path / "straight" / "dedup" / "documents")
    assert shard_bytes(crashed) == shard_bytes(tmp_path / "straight")
    assert not list(crashed.rglob(".*.tmp"))  # the killed runs' half-written files were cleared by the resume
