"""Benchmark: MinHash-LSH deduplication.

1. Signatures: our vectorised MinHash against datasketch's MinHash (update_batch, one document at a time) on the
   same 20,000 real-text documents, in this run (scripts/bench_minhash.py; the issue's target: at least 10x).
2. End to end: `pipeline run` with only the dedup stage over 1,000,000 generated documents (real English words in
   random order, 50 to 250 words each; 10% near copies with one or two words changed and 3% exact copies of earlier
   documents, spread over 16 Parquet files), on the embedded local Ray. Reports documents/s, the duplicates found
   against those planted, and the peak memory of the whole process tree (driver, Raylet, workers, object store),
   sampled every 0.2 s as PSS so that shared memory is counted once, and of the driver alone.

    python scripts/bench_dedup.py [--documents N] [--signature-documents N] [--skip-signatures] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from process_tree import TreeMonitor, pss_bytes  # noqa: E402

SHARDS = 16


def vocabulary() -> np.ndarray:
    """Distinct real words from the public-domain texts in ../shared/data/text."""
    from bench_minhash import corpus_texts

    words = {word for text in corpus_texts() for word in text.split() if word.isalpha() and len(word) < 20}
    return np.array(sorted(words), dtype=object)


def generate_corpus(directory: Path, documents: int, seed: int = 0) -> dict[str, int]:
    """Write the generated documents as Parquet shards; returns how many copies were planted."""
    rng = np.random.default_rng(seed)
    words = vocabulary()
    lengths = rng.integers(50, 251, size=documents)
    kind = rng.choice(3, size=documents, p=[0.87, 0.10, 0.03])  # 0 original, 1 near copy, 2 exact copy
    kind[0] = 0
    texts: list[str] = []
    planted = {"near": 0, "exact": 0}
    for index in range(documents):
        if kind[index] == 0 or index == 0:
            texts.append(" ".join(words[rng.integers(0, len(words), size=lengths[index])]))
            continue
        source = texts[int(rng.integers(0, index))].split()
        if kind[index] == 1:
            for _ in range(int(rng.integers(1, 3))):
                source[int(rng.integers(0, len(source)))] = words[int(rng.integers(0, len(words)))]
            planted["near"] += 1
        else:
            planted["exact"] += 1
        texts.append(" ".join(source))
    directory.mkdir(parents=True, exist_ok=True)
    for shard in range(SHARDS):
        rows = range(shard, documents, SHARDS)
        table = pa.table({"id": [f"gen-{i}" for i in rows], "text": [texts[i] for i in rows]})
        pq.write_table(table, directory / f"generated-{shard:03d}.parquet", row_group_size=16_384)
    return planted


def end_to_end(documents: int, workdir: Path) -> dict:
    from pipeline.config import RunConfig
    from pipeline.runner import run_pipeline

    started = time.perf_counter()
    # In a child process, so that the driver's memory figures are the run's, not the generator's leftovers.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        planted = pool.apply(generate_corpus, (workdir / "corpus", documents))
    print(f"generated {documents:,} documents in {time.perf_counter() - started:.0f} s "
          f"({planted['near']:,} near copies, {planted['exact']:,} exact copies planted)", flush=True)
    config = RunConfig.model_validate({
        "name": "bench-dedup", "output": str(workdir / "run"), "stages": ["dedup"],
        "input": {"paths": [str(workdir / "corpus" / "*.parquet")]},
    })
    driver_before = pss_bytes(os.getpid())
    with TreeMonitor() as memory:
        started = time.perf_counter()
        result = run_pipeline(config, show_progress=False)
        seconds = time.perf_counter() - started
    dedup = {tally.stage: tally for tally in result.funnel}["dedup"]
    figures = {
        "documents": documents, "seconds": round(seconds, 1), "docs_per_s": round(documents / seconds),
        "dedup_stage_seconds": round(dedup.seconds, 1), "removed": dict(dedup.dropped),
        "planted": planted, "peak_pss_tree_gib": round(memory.peak_tree / 2**30, 2),
        "peak_pss_driver_gib": round(memory.peak_root / 2**30, 2),
        "driver_before_gib": round(driver_before / 2**30, 2),
    }
    print(f"end to end: {documents:,} documents in {seconds:.0f} s = {figures['docs_per_s']:,} docs/s "
          f"(dedup stage {dedup.seconds:.0f} s); removed {dict(dedup.dropped)}; "
          f"peak PSS {figures['peak_pss_tree_gib']} GiB for all processes, {figures['peak_pss_driver_gib']} GiB driver "
          f"({figures['driver_before_gib']} GiB before the run)")
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=1_000_000, help="generated documents for the end-to-end run")
    parser.add_argument("--signature-documents", type=int, default=20_000)
    parser.add_argument("--skip-signatures", action="store_true")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    figures: dict = {}
    if not args.skip_signatures:
        from bench_minhash import main as signature_benchmark

        figures["signatures"] = signature_benchmark(["--documents", str(args.signature_documents)])
    with tempfile.TemporaryDirectory(prefix="bench-dedup-") as tmp:
        figures["end_to_end"] = end_to_end(args.documents, Path(tmp))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(figures, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
