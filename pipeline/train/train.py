"""Train the GPT of model.py on a run's token shards: `pipeline train --config configs/train-*.yaml`.

One loop, top to bottom: config -> device and precision -> data -> model (optionally compiled) -> AdamW with linear
warmup and cosine decay -> steps of `grad_accum` micro-batches with bf16 autocast on CUDA and gradient clipping ->
validation loss and perplexity every `eval_interval` steps -> an atomic checkpoint every `checkpoint_interval` steps
and at the end. Each step's batches are a function of (seed, step) (data.py) and the checkpoint holds model,
optimizer and random states, so a run resumed from a checkpoint ends exactly where an uninterrupted one does.

Logs go to stdout and <out_dir>/log.jsonl: per step the loss, learning rate, tokens/s and, on CUDA, the model FLOPs
utilisation against the GPU's bf16 dense peak. A resumed run first cuts log.jsonl back to the checkpoint's step, so
that the steps a killed run logged after its last checkpoint are not logged twice.

Data parallel under torchrun (`torchrun --standalone --nproc_per_node N -m pipeline.cli train ...`): the RANK,
LOCAL_RANK and WORLD_SIZE it sets make each process one rank, on cuda:LOCAL_RANK with NCCL (or on the CPU with gloo);
the model is wrapped in DistributedDataParallel, gradients are averaged on the last micro-batch of a step only, and
rank 0 alone prints, logs and checkpoints. Each rank takes an equal slice of every global batch (data.py), so the
losses equal a one-process run's with the same settings up to the order of float sums.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from pipeline.config import apply_override, read_yaml_mapping, validated
from pipeline.io.atomic import publish_file, replace, temporary_path
from pipeline.io.storage import StoragePath, local_copy, storage_path
from pipeline.token_shards import local_shards
from pipeline.train.data import TokenBlocks, TrainSetupError, rows_of_rank
from pipeline.train.model import GPT, GPTConfig
from pipeline.train.settings import TrainConfig

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"
SCHEDULE = ("max_steps", "warmup_steps", "learning_rate", "min_learning_rate")  # what learning_rate() reads
# bf16 dense peak FLOP/s by GPU name, for MFU (tensor cores, no sparsity).
BF16_PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12,
                   "RTX 4090": 165e12, "RTX 3090": 71e12}


@dataclass(frozen=True)
class Ranks:
    """This process's place among the data-parallel processes: the one and only when not started by torchrun."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def from_environment(cls) -> Ranks:
        """From the variables torchrun sets for each process it starts."""
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
                   int(os.environ.get("WORLD_SIZE", 1)))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """The rank that prints, logs and writes checkpoints."""
        return self.rank == 0


def load_train_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    """Read a training config, apply `key.path=value` overrides, validate. Raises ConfigError in one line."""
    raw = read_yaml_mapping(str(path))
    for override in overrides:
        apply_override(raw, override, str(path))
    return validated(TrainConfig, raw, str(path))


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warmup to learning_rate, then cosine decay to min_learning_rate at max_steps."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
    return config.min_learning_rate + 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))) * (
        config.learning_rate - config.min_learning_rate)


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in BF16_PEAK_FLOPS.items() if key in name), None)


def _device_and_dtype(config: TrainConfig, ranks: Ranks) -> tuple[torch.device, torch.dtype]:
    """The device of this rank (cuda:LOCAL_RANK: one GPU per process) and the compute dtype."""
    device_type = config.device if config.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = config.dtype if config.dtype != "auto" else ("bfloat16" if device_type == "cuda" else "float32")
    if device_type == "cpu":
        return torch.device("cpu"), getattr(torch, dtype_name)
    gpus = torch.cuda.device_count()
    if ranks.local_rank >= gpus:
        raise TrainSetupError(f"device cuda: this machine has {gpus} GPUs, none for process {ranks.local_rank} on "
                              f"it: set device to auto or cpu, or start at most {gpus} per machine (torchrun "
                              "--nproc_per_node)")
    device = torch.device("cuda", ranks.local_rank)
    torch.cuda.set_device(device)
    return device, getattr(torch, dtype_name)


@contextmanager
def _process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
    """The ranks' process group for the time of the run (NCCL between GPUs, gloo between CPU processes), left at
    the end; nothing to do for one process, or when the caller has joined a group already."""
    if not ranks.distributed or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def _mean_over_ranks(value: float, ranks: Ranks, device: torch.device) -> float:
    """The mean of every rank's `value`: of equal slices' mean losses, the mean loss of the whole batch."""
    if not ranks.distributed:
        return value
    total = torch.tensor(value, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.item() / ranks.world_size


def _random_states(ranks: Ranks, device: torch.device) -> list[dict] | None:
    """Every rank's random state (dropout draws differ between ranks), gathered on rank 0; None on the others."""
    state = {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
    if not ranks.distributed:
        return [state]
    states: list | None = [None] * ranks.world_size if ranks.main else None
    dist.gather_object(state, states, dst=0)
    return states


def _restore_random_state(states: list[dict], ranks: Ranks, device: torch.device) -> None:
    """This rank's random state from a checkpoint. A run resumed on more ranks than it was saved from keeps the
    seeded state on the new ones: the same batches, other dropout draws."""
    if ranks.rank >= len(states):
        return
    torch.set_rng_state(states[ranks.rank]["cpu"])
    if device.type == "cuda" and states[ranks.rank]["cuda"] is not None:
        torch.cuda.set_rng_state(states[ranks.rank]["cuda"], device)


def _save_checkpoint(path: Path, state: dict) -> None:
    temporary = temporary_path(path)
    try:
        torch.save(state, temporary)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    replace(temporary, path)


def _working_dir(out: StoragePath, prepare: bool = True) -> Path:
    """Where checkpoints are written: `out` itself when local. When `out` is on an object store, a local folder
    that starts as a copy of what `out` holds (the store is the truth: a run resumed on another machine resumes
    from there) and is pushed to `out` after every checkpoint. Only one process per machine prepares it: the
    others (`prepare` False) get its name."""
    if isinstance(out, Path):
        out.mkdir(parents=True, exist_ok=True)
        return out
    from pipeline.io.download import cache_base

    local = cache_base() / "train" / hashlib.sha256(str(out).encode()).hexdigest()[:16]
    if not prepare:
        return local
    shutil.rmtree(local, ignore_errors=True)
    local.mkdir(parents=True)
    for name in (CHECKPOINT, LOG):
        if (out / name).exists():
            local_copy(out / name, local / name)
    return local


def _push(local: Path, out: StoragePath) -> None:
    """The log, then the checkpoint: a checkpoint in the store always has its log up to its step (or beyond)."""
    for name in (LOG, CHECKPOINT):
        publish_file(local / name, out / name, keep_local=True)


def resumed_line(path: Path, step: int, previous: dict, config: TrainConfig) -> str:
    """What resuming from a checkpoint at `step` does; when the checkpoint's run had another max_steps, what that
    does to the learning rate: the schedule is the current config's (learning_rate()), so the cosine decay is
    recomputed to end at the new max_steps and the rate changes at once at the step resumed from."""
    line = f"resumed from {path} at step {step}"
    if previous["max_steps"] == config.max_steps:
        return line
    before = config.model_copy(update={key: previous[key] for key in SCHEDULE})
    return (f"{line} of a run that had max_steps {previous['max_steps']}; continuing to max_steps "
            f"{config.max_steps}: the cosine decay is recomputed to end at step {config.max_steps}, so the learning "
            f"rate goes from {learning_rate(step - 1, before):.2e} at step {step} to "
            f"{learning_rate(step, config):.2e} at step {step + 1}")


def truncate_log(log_path: Path, step: int) -> None:
    """Keep the lines of log.jsonl up to `step` (the checkpoint's): a run killed after its last checkpoint logged
    steps that the resumed run trains and logs again. Rewritten atomically (a temporary file, fsync, rename), so a
    kill now leaves the old log or the new one."""
    if not log_path.exists():
        return
    kept = []
    for line in log_path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:  # a line cut short by a kill
            continue
        if entry.get("step", 0) <= step:
            kept.append(line + "\n")
    temporary = temporary_path(log_path)
    temporary.write_text("".join(kept))
    replace(temporary, log_path)


def figures_at(log_path: Path, step: int) -> dict:
    """The figures log.jsonl holds for `step` (its last line for that step), or only the step where it has none."""
    found: dict = {"step": step}
    for line in log_path.read_text().splitlines() if log_path.exists() else []:
        try:
            entry = json.loads(line)
        except ValueError:  # a line cut short by a kill
            continue
        if entry.get("step") == step:
            found = entry
    return found


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: TokenBlocks, config: TrainConfig, autocast, device: torch.device,
             ranks: Ranks) -> float:
    """Mean validation loss over eval_batches fixed batches (the same ones at every evaluation), each rank on its
    slice of them: the same figure as one process computes alone."""
    model.eval()
    losses = []
    for index in range(config.eval_batches):
        x, y = (t.to(device) for t in data.batch(index, config.batch_size))
        with autocast:
            _, loss = model(x, y)
        losses.append(loss.item())
    model.train()
    return _mean_over_ranks(sum(losses) / len(losses), ranks, device)


def train(config: TrainConfig, log=print, stop_at: int | None = None) -> dict:
    """Train (or resume) to max_steps, or stop early at step `stop_at` with a checkpoint (as a job killed at its
    time limit would, after its last checkpoint); returns the last step's figures. A checkpoint already there
    trains nothing more and returns its step's figures from the log. Under torchrun, this process is one rank of
    a data-parallel run; only rank 0 calls `log`."""
    ranks = Ranks.from_environment()
    rows_of_rank(config.batch_size, ranks.rank, ranks.world_size)  # a batch that does not split fails first
    device, dtype = _device_and_dtype(config, ranks)
    with _process_group(ranks, device):
        return _train(config, ranks, device, dtype, log if ranks.main else lambda _: None, stop_at)


def _train(config: TrainConfig, ranks: Ranks, device: torch.device, dtype: torch.dtype, log,
           stop_at: int | None) -> dict:
    torch.manual_seed(config.seed + ranks.rank)  # rank 0's initialisation is broadcast; dropout differs by rank
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    shards = local_shards(config.shards_dir())
    train_data = TokenBlocks(shards, "train", config.block_size, config.seed, ranks.rank, ranks.world_size)
    val_data = TokenBlocks(shards, "validation", config.block_size, config.seed, ranks.rank, ranks.world_size)
    out = storage_path(config.out_dir)
    out_dir = _working_dir(out, prepare=ranks.local_rank == 0)
    if ranks.distributed:
        dist.barrier()  # the working folder is ready before any rank looks for a checkpoint in it
    gpt_config = GPTConfig(vocab_size=train_data.vocab_size, block_size=config.block_size,
                           **config.model.model_dump())
    model = GPT(gpt_config).to(device)
    optimizer = model.optimizer(config.weight_decay, config.learning_rate, (config.beta1, config.beta2), device.type)
    step = 0
    last = min(config.max_steps, stop_at or config.max_steps)
    checkpoint_path = out_dir / CHECKPOINT
    if checkpoint_path.exists():
        checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=False)
        if checkpoint["model_config"] != gpt_config.to_dict():
            raise TrainSetupError(f"{checkpoint_path} holds a different model ({checkpoint['model_config']}); "
                                  "use another out_dir")
        step = checkpoint["step"]
        if step >= last:
            until = f"max_steps {config.max_steps}" if last == config.max_steps else f"stop at {stop_at}"
            log(f"already trained to step {step} ({until}): nothing to do; checkpoint: {out / CHECKPOINT}")
            return figures_at(out_dir / LOG, step)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        # a checkpoint from before data parallelism holds one process's state as "rng" and "cuda_rng"
        states = checkpoint.get("random_states") or [{"cpu": checkpoint["rng"], "cuda": checkpoint.get("cuda_rng")}]
        _restore_random_state(states, ranks, device)
        log(resumed_line(checkpoint_path, step, checkpoint["train_config"], config))
    if ranks.main:
        truncate_log(out_dir / LOG, step)
    runner = torch.compile(model) if config.compile else model
    trainer = (DistributedDataParallel(runner, device_ids=[device.index] if device.type == "cuda" else None)
               if ranks.distributed else runner)
    tokens_per_step = config.batch_size * config.block_size * config.grad_accum
    flops_per_step = model.flops_per_token() * tokens_per_step
    peak = peak_flops(device)
    peak = peak * ranks.world_size if peak else None
    per_rank = (f" on {ranks.world_size} ranks ({config.batch_size // ranks.world_size} sequences per micro-batch "
                "each)" if ranks.distributed else "")
    log(f"{model.num_parameters() / 1e6:.2f}M parameters, {device.type} {str(dtype).removeprefix('torch.')}, "
        f"{tokens_per_step:,} tokens per step{per_rank}; train {train_data.total_tokens:,} tokens, "
        f"validation {val_data.total_tokens:,}")
    figures: dict = {}
    with (open(out_dir / LOG, "a") if ranks.main else nullcontext()) as log_file:
        while step < last:
            started = time.perf_counter()
            rate = learning_rate(step, config)
            for group in optimizer.param_groups:
                group["lr"] = rate
            total_loss = 0.0
            for micro in range(config.grad_accum):
                x, y = (t.to(device, non_blocking=True)
                        for t in train_data.batch(step * config.grad_accum + micro, config.batch_size))
                if ranks.distributed:  # average the gradients across ranks once, after the last micro-batch
                    trainer.require_backward_grad_sync = micro == config.grad_accum - 1
                with autocast:
                    _, loss = trainer(x, y)
                (loss / config.grad_accum).backward()
                total_loss += loss.item() / config.grad_accum
            total_loss = _mean_over_ranks(total_loss, ranks, device)
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip) if config.grad_clip else None
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            step += 1
            figures = {"step": step, "loss": total_loss, "lr": rate, "tokens_per_s": tokens_per_step / seconds,
                       "grad_norm": float(norm) if norm is not None else None}
            if peak:
                figures["mfu"] = flops_per_step / seconds / peak
            if step % config.eval_interval == 0 or step == config.max_steps:
                figures["val_loss"] = evaluate(runner, val_data, config, autocast, device, ranks)
                figures["val_perplexity"] = math.exp(figures["val_loss"])
            if step % config.log_interval == 0 or "val_loss" in figures or step == 1:
                mfu = f", MFU {figures['mfu']:.1%}" if "mfu" in figures else ""
                val = (f", val loss {figures['val_loss']:.4f} (perplexity {figures['val_perplexity']:.1f})"
                       if "val_loss" in figures else "")
                log(f"step {step}: loss {total_loss:.4f}, lr {rate:.2e}, {figures['tokens_per_s']:,.0f} tokens/s"
                    f"{mfu}{val}")
            if ranks.main:
                log_file.write(json.dumps(figures) + "\n")
            if step % config.checkpoint_interval == 0 or step == last:
                random_states = _random_states(ranks, device)  # every rank takes part; rank 0 writes
                if ranks.main:
                    _save_checkpoint(checkpoint_path, {
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                        "model_config": gpt_config.to_dict(), "train_config": config.model_dump(),
                        "tokenizer": str((shards / train_data.manifest["tokenizer"]["path"]).resolve()),
                        "eos_id": train_data.manifest["eos_id"], "random_states": random_states,
                        "world_size": ranks.world_size,
                    })
                if ranks.main and out is not out_dir:
                    log_file.flush()
                    _push(out_dir, out)
    return figures
