"""Data-parallel training under torchrun, on the CPU with gloo: two ranks train to the losses of one process with
the same global batch, a batch that does not split over the ranks is refused, and a resumed run logs every step
once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch", reason="the trainer extra (torch==2.13.0) is not installed")

import test_train  # noqa: E402
from pipeline.train.settings import TrainConfig  # noqa: E402
from pipeline.train.train import train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def log_of(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]


def pipeline_train(config: TrainConfig, config_file: Path, processes: int,
                   *options: str) -> subprocess.CompletedProcess:
    """`pipeline train` as a user runs it: alone (`processes` 1) or as `processes` ranks under torchrun, one thread
    each (the machine's cores shared by the ranks)."""
    config_file.write_text(yaml.safe_dump(config.model_dump()))
    command = ["-m", "pipeline.cli", "train", "--config", str(config_file), *options]
    if processes > 1:
        command = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), *command]
    for _ in range(2):
        completed = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True, timeout=300,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
        # torchrun --standalone takes a free port and lets it go before binding it: another process (this session's
        # Ray) can take it meanwhile. That is the machine's, not the trainer's: once more, on another port.
        if "address already in use" not in completed.stderr.lower():
            return completed
    return completed


def test_two_ranks_train_to_the_losses_of_one_process_with_the_same_global_batch(shakespeare_shards, tmp_path):
    settings = {"max_steps": 12, "warmup_steps": 3, "batch_size": 8, "grad_accum": 2, "eval_interval": 6,
                "eval_batches": 4, "checkpoint_interval": 100}
    alone = test_train.tiny_config(shakespeare_shards, tmp_path / "alone", **settings)
    ranks = test_train.tiny_config(shakespeare_shards, tmp_path / "ranks", **settings)
    completed = pipeline_train(alone, tmp_path / "alone.yaml", 1)
    assert completed.returncode == 0, completed.stderr
    halfway = pipeline_train(ranks, tmp_path / "ranks.yaml", 2, "--stop-at", "6")
    assert halfway.returncode == 0, halfway.stderr
    assert "on 2 ranks (4 sequences per micro-batch each)" in halfway.stdout
    resumed = pipeline_train(ranks, tmp_path / "ranks.yaml", 2)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("resumed from") == 1 and resumed.stdout.count("step 12:") == 1  # rank 0 alone
    one, two = log_of(tmp_path / "alone"), log_of(tmp_path / "ranks")
    assert [entry["step"] for entry in one] == [entry["step"] for entry in two] == list(range(1, 13))
    differences = [abs(b["loss"] - a["loss"]) / a["loss"] for a, b in zip(one, two)]
    differences += [abs(b["val_loss"] - a["val_loss"]) / a["val_loss"] for a, b in zip(one, two) if "val_loss" in a]
    print(f"largest relative difference of a loss, 2 ranks against 1 process: {max(differences):.1e}")
    assert max(differences) < 1e-4, differences
    assert one[-1]["loss"] < one[0]["loss"] - 0.5  # it learns, so equal losses are not two untrained models'


def test_a_batch_that_does_not_split_over_the_ranks_is_refused(shakespeare_shards, tmp_path):
    config = test_train.tiny_config(shakespeare_shards, tmp_path / "out", batch_size=7, max_steps=2)
    completed = pipeline_train(config, tmp_path / "train.yaml", 2)
    assert completed.returncode != 0
    assert ("error: batch_size 7 is not divisible by the 2 data-parallel ranks: each rank takes an equal share of "
            "the global batch; set batch_size to a multiple of 2 (e.g. 8)") in completed.stderr, completed.stderr
    assert not (tmp_path / "out" / "log.jsonl").exists()


def test_a_run_resumed_after_a_kill_logs_every_step_once(shakespeare_shards, tmp_path):
    """The files a run killed at step 15 leaves when it checkpoints every 10 steps: log.jsonl to step 15, the
    checkpoint of step 10 (made here by training to 15 and putting the step-10 checkpoint back)."""
    settings = {"max_steps": 20, "warmup_steps": 5, "eval_interval": 10, "checkpoint_interval": 10}
    straight = train(test_train.tiny_config(shakespeare_shards, tmp_path / "straight", **settings), log=lambda _: None)
    config = test_train.tiny_config(shakespeare_shards, tmp_path / "killed", **settings)
    train(config, log=lambda _: None, stop_at=10)
    shutil.copy(tmp_path / "killed" / "checkpoint.pt", tmp_path / "step-10.pt")
    train(config, log=lambda _: None, stop_at=15)
    shutil.copy(tmp_path / "step-10.pt", tmp_path / "killed" / "checkpoint.pt")
    assert [entry["step"] for entry in log_of(tmp_path / "killed")] == list(range(1, 16))
    lines: list[str] = []
    resumed = train(config, log=lines.append)
    assert lines[0].endswith("at step 10") and resumed["step"] == 20
    expected, logged = log_of(tmp_path / "straight"), log_of(tmp_path / "killed")
    assert [entry["step"] for entry in logged] == list(range(1, 21))
    assert [entry["loss"] for entry in logged] == pytest.approx([entry["loss"] for entry in expected], rel=1e-6)
    assert resumed["val_loss"] == pytest.approx(straight["val_loss"], rel=1e-6)
