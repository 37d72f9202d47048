"""Benchmark: training throughput (tokens/s) and, on CUDA, model FLOPs utilisation of the included GPT.

Runs `--steps` optimizer steps of a training config (default configs/train-gpt2-124m.yaml: GPT-2 small, bf16,
torch.compile) and reports the median tokens/s and MFU over the steps after `--skip` (compilation and warm-up).
The data: the config's shards, or with `--synthetic`, shards of random tokens written here with the pipeline's own
shard writer (vocabulary 50,304, as GPT-2 padded), so the GPU benchmark needs no corpus.

    python scripts/bench_train.py [--config configs/train-gpt2-124m.yaml] [--steps 300] [--skip 20] [--synthetic]
        [--set key.path=value ...] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]


def synthetic_shards(directory: Path, vocab_size: int = 50_304, tokens: int = 20_000_000) -> Path:
    """Train and validation shards of uniformly random tokens, with a manifest, as the tokenize stage writes."""
    from pipeline.token_shards import FORMAT, write_manifest, write_shard

    rng = np.random.default_rng(0)
    splits = {}
    for split, count in (("train", tokens), ("validation", tokens // 100)):
        flat = rng.integers(0, vocab_size, size=count, dtype=np.uint32).astype(np.uint16)
        documents = count // 1_000
        offsets = pa.array(np.arange(0, documents * 1_000 + 1, 1_000, dtype=np.int64))
        array = pa.LargeListArray.from_arrays(offsets, pa.array(flat[:documents * 1_000]))
        entry = write_shard(directory, f"{split}-00000", [f"{split}-{i}" for i in range(documents)], array,
                            np.dtype(np.uint16))
        splits[split] = {"documents": documents, "tokens": entry["tokens"], "shards": [entry]}
    write_manifest(directory, {"format": FORMAT, "dtype": "uint16", "vocab_size": vocab_size, "eos_id": 2,
                               "tokenizer": {"path": "", "sha256": ""}, "seed": 0, "validation_fraction": 0.01,
                               "documents": sum(s["documents"] for s in splits.values()),
                               "tokens": sum(s["tokens"] for s in splits.values()), "splits": splits})
    return directory


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "train-gpt2-124m.yaml"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--skip", type=int, default=20, help="first steps left out of the medians")
    parser.add_argument("--synthetic", action="store_true", help="random-token shards instead of the config's")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    import torch

    from pipeline.train.train import load_train_config, train

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        overrides = [f"max_steps={args.steps}", f"out_dir={tmp}/out", "checkpoint_interval=1000000",
                     f"eval_interval={args.steps}", *args.overrides]
        if args.synthetic:
            overrides.append(f"shards={synthetic_shards(Path(tmp) / 'shards')}")
        config = load_train_config(args.config, overrides)
        train(config, log=lambda line: print(line, flush=True))
        log = [json.loads(line) for line in (Path(tmp) / "out" / "log.jsonl").read_text().splitlines()]
    measured = log[args.skip:] or log
    figures = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "config": args.config, "overrides": args.overrides, "steps": args.steps,
        "tokens_per_s": round(statistics.median(entry["tokens_per_s"] for entry in measured)),
        "final_loss": log[-1]["loss"],
    }
    if "mfu" in measured[0]:
        figures["mfu"] = round(statistics.median(entry["mfu"] for entry in measured), 4)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
