"""The GPT trainer on CPU: it learns (validation loss well under the data's unigram entropy), resumes exactly,
samples text, and reads the token shards without copying them."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch", reason="the trainer extra (torch==2.13.0) is not installed")

from conftest import interrupted_cli  # noqa: E402
from memory_maps import mapping_of  # noqa: E402
from pipeline.failures import error_text  # noqa: E402
from pipeline.runner import RunResult  # noqa: E402
from pipeline.summary import print_result  # noqa: E402
from pipeline.token_shards import map_tokens, read_manifest  # noqa: E402
from pipeline.train.data import TokenBlocks, TrainSetupError  # noqa: E402
from pipeline.train.model import GPT, GPTConfig  # noqa: E402
from pipeline.train.sample import sample  # noqa: E402
from pipeline.train.train import TrainConfig, learning_rate, train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def tiny_config(shards: Path, out_dir: Path, **changes) -> TrainConfig:
    values = {
        "shards": str(shards), "out_dir": str(out_dir), "model": {"n_layer": 2, "n_head": 2, "n_embd": 64},
        "block_size": 64, "batch_size": 16, "max_steps": 300, "learning_rate": 3e-3, "min_learning_rate": 3e-4,
        "warmup_steps": 30, "eval_interval": 100, "eval_batches": 8, "checkpoint_interval": 1000, "device": "cpu",
    }
    return TrainConfig.model_validate({**values, **changes})


def unigram_entropy(shards: Path) -> float:
    """Entropy (nats per token) of the training tokens' unigram distribution: the loss of the best model that
    ignores context."""
    manifest = read_manifest(shards)
    counts = np.zeros(manifest["vocab_size"], dtype=np.int64)
    for shard in manifest["splits"]["train"]["shards"]:
        counts += np.bincount(map_tokens(shards / shard["files"]["arrow"]), minlength=len(counts))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def test_a_tiny_model_learns_well_below_the_unigram_entropy_and_samples_text(shakespeare_shards, tmp_path):
    entropy = unigram_entropy(shakespeare_shards)
    lines: list[str] = []
    figures = train(tiny_config(shakespeare_shards, tmp_path / "out"), log=lines.append)
    print(f"unigram entropy {entropy:.3f} nats; validation loss {figures['val_loss']:.3f} after 300 steps")
    assert figures["step"] == 300 and math.isfinite(figures["val_loss"])
    assert figures["val_loss"] < entropy - 0.75, (figures["val_loss"], entropy)  # measured: 4.57 against 5.69
    assert figures["val_perplexity"] == pytest.approx(math.exp(figures["val_loss"]))
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == list(range(1, 301)) and all(e["tokens_per_s"] > 0 for e in log)
    assert any("val loss" in line for line in lines)
    texts = sample(tmp_path / "out", prompt="ROMEO:", max_new_tokens=40, samples=2, seed=1)
    assert len(texts) == 2 and all(sum(ch.isalpha() for ch in text) >= 20 for text in texts)
    assert texts[0] != texts[1]


def test_stopping_and_resuming_ends_exactly_where_an_uninterrupted_run_does(shakespeare_shards, tmp_path):
    with_dropout = {"n_layer": 2, "n_head": 2, "n_embd": 64, "dropout": 0.1}  # so the random state matters too
    straight = train(tiny_config(shakespeare_shards, tmp_path / "straight", max_steps=60, eval_interval=30,
                                 model=with_dropout), log=lambda _: None)
    config = tiny_config(shakespeare_shards, tmp_path / "resumed", max_steps=60, eval_interval=30, model=with_dropout)
    halfway = train(config, log=lambda _: None, stop_at=30)
    assert halfway["step"] == 30 and (tmp_path / "resumed" / "checkpoint.pt").exists()
    lines: list[str] = []
    resumed = train(config, log=lines.append)
    assert lines[0].startswith("resumed from") and resumed["step"] == 60
    assert resumed["loss"] == pytest.approx(straight["loss"], rel=1e-5)
    assert resumed["val_loss"] == pytest.approx(straight["val_loss"], rel=1e-5)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 61))


def test_the_loader_maps_the_shards_and_copies_only_its_batches(shakespeare_shards):
    blocks = TokenBlocks(shakespeare_shards, "train", block_size=64, seed=0)
    manifest = read_manifest(shakespeare_shards)
    files = {str((shakespeare_shards / s["files"]["arrow"]).resolve()) for s in manifest["splits"]["train"]["shards"]}
    for array in blocks.tokens:
        assert not array.flags.owndata and not array.flags.writeable
        assert mapping_of(array.__array_interface__["data"][0], array.nbytes) in files
    x, y = blocks.batch(7, 4)
    assert x.shape == y.shape == (4, 64) and torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(blocks.batch(7, 4)[0], x) and not torch.equal(blocks.batch(8, 4)[0], x)
    halves = [TokenBlocks(shakespeare_shards, "train", block_size=64, seed=0, rank=rank, world_size=2)
              for rank in (0, 1)]
    assert torch.equal(torch.cat([half.batch(7, 4)[0] for half in halves]), x)  # each rank its rows of batch 7


def test_blocks_are_drawn_from_every_shard_and_cross_shard_boundaries(tmp_path):
    """A split is its shards back to back: a block that starts near a shard's end continues in the next one, and
    shards shorter than a block still give tokens."""
    import pyarrow as pa

    from pipeline.token_shards import write_manifest, write_shard

    pieces = [np.arange(0, 5), np.arange(5, 8), np.arange(8, 40)]  # the first two shorter than a block
    entries = [write_shard(tmp_path, f"train-{i:05d}", [f"d{i}"], pa.array([piece.tolist()], pa.list_(pa.uint16())),
                           np.dtype(np.uint16)) for i, piece in enumerate(pieces)]
    write_manifest(tmp_path, {"vocab_size": 64, "splits": {"train": {"shards": entries}}})
    blocks = TokenBlocks(tmp_path, "train", block_size=8, seed=0)
    assert blocks._block(3).tolist() == list(range(3, 12))  # shard 0's end, all of shard 1, the start of shard 2
    seen = set()
    for step in range(50):
        x, y = blocks.batch(step, 4)
        assert torch.equal(x[:, 1:], y[:, :-1]) and all(row.tolist() == list(range(row[0], row[0] + 8)) for row in x)
        seen.update(x[:, 0].tolist())
    assert seen == set(range(0, 40 - 8))  # every start of the split is drawn, none past its end


def test_the_model_is_causal_tied_and_counts_its_flops():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=100, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()
    assert model.lm_head.weight is model.wte.weight
    idx = torch.randint(0, 100, (1, 16))
    changed = idx.clone()
    changed[0, 10] = (idx[0, 10] + 1) % 100
    logits, _ = model(idx, idx)
    logits_changed, _ = model(changed, changed)
    assert torch.allclose(logits[0, :10], logits_changed[0, :10], atol=1e-6)  # the future does not leak back
    assert not torch.allclose(logits[0, 10:], logits_changed[0, 10:])
    n = model.num_parameters()
    assert model.flops_per_token() == 6 * n + 12 * 2 * 32 * 16


def test_learning_rate_warms_up_then_decays_to_its_minimum():
    config = TrainConfig(shards=".", out_dir=".", max_steps=100, warmup_steps=10, learning_rate=1.0,
                         min_learning_rate=0.1)
    rates = [learning_rate(step, config) for step in range(101)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:])) and rates[100] == pytest.approx(0.1)


def test_pipeline_train_and_sample_commands(shakespeare_shards, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(tiny_config(shakespeare_shards, tmp_path / "out", max_steps=20,
                                                 eval_interval=10).model_dump()))
    cli = [sys.executable, "-m", "pipeline.cli"]
    trained = subprocess.run(cli + ["train", "--config", str(config), "--set", "log_interval=5"], cwd=REPO,
                             capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr
    assert "step 20:" in trained.stdout and "val loss" in trained.stdout and "tokens/s" in trained.stdout
    sampled = subprocess.run(cli + ["sample", "--checkpoint", str(tmp_path / "out"), "--prompt", "KING", "--tokens",
                                    "20"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert sampled.returncode == 0 and sampled.stdout.startswith("--- sample 1\nKING"), sampled.stderr
    bad = subprocess.run(cli + ["train", "--config", str(config), "--set", "batch_size=0"], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "batch_size" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def write_train_config(path: Path, config: TrainConfig) -> Path:
    path.write_text(yaml.safe_dump(config.model_dump()))
    return path


def pipeline_train(config: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "train", "--config", str(config), *options],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


def test_a_block_size_longer_than_every_shard_says_what_to_change(shakespeare_shards, tmp_path):
    with pytest.raises(TrainSetupError, match=r"the train split is not longer than block_size 10000000 "
                       r"\(it has [\d,]+ tokens\): lower block_size, or give it more data"):
        TokenBlocks(shakespeare_shards, "train", block_size=10_000_000)
    config = write_train_config(tmp_path / "train.yaml", tiny_config(shakespeare_shards, tmp_path / "out"))
    completed = pipeline_train(config, "--set", "block_size=10000000")
    assert completed.returncode == 2
    [line] = completed.stderr.strip().splitlines()
    assert line.startswith("error: ") and "lower block_size, or give it more data" in line


def test_a_train_stage_that_does_not_fit_its_data_says_to_change_it_not_to_retry(shakespeare_shards, tmp_path,
                                                                                  capsys):
    try:
        TokenBlocks(shakespeare_shards, "train", block_size=10_000_000)
    except TrainSetupError as exc:
        error = error_text(exc)  # as the runner records a failed stage
    print_result(RunResult(tmp_path, [], units_total=1, units_resumed=0, failed_stages={"train": error}))
    out = capsys.readouterr().out
    assert "FAILED STAGE train: TrainSetupError: " in out and "lower block_size, or give it more data" in out
    assert "A retry fails the same way" in out and "retry the failed stage" not in out


def test_resuming_with_another_max_steps_says_what_happens_to_the_learning_rate(shakespeare_shards, tmp_path):
    before = tiny_config(shakespeare_shards, tmp_path / "out", max_steps=20, warmup_steps=5, eval_interval=10)
    train(before, log=lambda _: None)
    after = tiny_config(shakespeare_shards, tmp_path / "out", max_steps=40, warmup_steps=5, eval_interval=10)
    lines: list[str] = []
    figures = train(after, log=lines.append)
    assert lines[0] == (
        f"resumed from {tmp_path / 'out' / 'checkpoint.pt'} at step 20 of a run that had max_steps 20; continuing "
        "to max_steps 40: the cosine decay is recomputed to end at step 40, so the learning rate goes from "
        f"{learning_rate(19, before):.2e} at step 20 to {learning_rate(20, after):.2e} at step 21")
    log = {entry["step"]: entry for entry in map(json.loads, (tmp_path / "out" / "log.jsonl").read_text().splitlines())}
    assert log[20]["lr"] == learning_rate(19, before) and log[21]["lr"] == learning_rate(20, after)  # as said
    assert figures["step"] == 40


def test_training_again_a_finished_run_does_nothing_and_says_so(shakespeare_shards, tmp_path):
    config = tiny_config(shakespeare_shards, tmp_path / "out", max_steps=20, eval_interval=10)
    finished = train(config, log=lambda _: None)
    log = (tmp_path / "out" / "log.jsonl").read_text()
    lines: list[str] = []
    again = train(config, log=lines.append)
    assert lines == [f"already trained to step 20 (max_steps 20): nothing to do; checkpoint: "
                     f"{tmp_path / 'out' / 'checkpoint.pt'}"]
    assert again == finished and (tmp_path / "out" / "log.jsonl").read_text() == log
    completed = pipeline_train(write_train_config(tmp_path / "train.yaml", config))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("already trained to step 20 (max_steps 20): nothing to do")


def test_ctrl_c_ends_training_with_one_line_and_status_130(shakespeare_shards, tmp_path):
    config = write_train_config(tmp_path / "train.yaml", tiny_config(shakespeare_shards, tmp_path / "out",
                                                                      max_steps=100_000))
    log = tmp_path / "out" / "log.jsonl"
    status, _, stderr = interrupted_cli(["train", "--config", str(config)], wait_s=300,
                                        ready=lambda process: log.is_file() and bool(log.read_text()))
    assert status == 130
    assert stderr.strip().splitlines()[-1] == "interrupted" and "Traceback" not in stderr, stderr
