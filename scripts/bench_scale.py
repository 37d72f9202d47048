"""Benchmark: do the global stages scale flat? dedup + tokenizer + tokenize on two corpus sizes (default 300,000 and
3,000,000 generated documents), each in a fresh driver process on the embedded local Ray.

The corpus: real English words in random order, 100 to 300 words each, 16 Parquet files; planted duplicates:
near copies (one or two words changed), exact copies, and chains of drifting near copies (each link a small edit
of the one before, so the chain's ends share little, and only connected components join them). Per size it prints:
wall time and documents/s of the run (the read pass, the three stages), the driver's peak RSS (its own
getrusage), the peak PSS of the whole process tree (driver, Raylet, workers, object store; sampled every second),
the most object references the driver held at once (sampled from its core worker's reference table), the
duplicates removed against those planted, and the rounds of connected components. Then the ratios the scale
targets are stated in (the larger size against the smaller, same machine, same run).

    python scripts/bench_scale.py [--sizes 300000 3000000] [--repeat N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from process_tree import TreeMonitor  # noqa: E402

FILES = 16
CHAIN_LENGTH = (8, 33)  # documents per drifting chain, drawn uniformly


def generate_corpus(directory: Path, documents: int, seed: int = 0) -> dict[str, int]:
    """Write the generated documents as Parquet files; returns the duplicates planted by kind: a planted copy is a
    document that dedup should remove (its original, or the chain's first link, is kept)."""
    from bench_dedup import vocabulary

    rng = np.random.default_rng(seed)
    words = vocabulary()
    texts: list[str] = []
    planted = {"near": 0, "exact": 0, "chain": 0}

    def fresh() -> list[str]:
        return list(words[rng.integers(0, len(words), size=int(rng.integers(100, 301)))])

    def edit(source: list[str]) -> list[str]:
        copy = list(source)
        for _ in range(int(rng.integers(1, 3))):
            copy[int(rng.integers(0, len(copy)))] = words[int(rng.integers(0, len(words)))]
        return copy

    while len(texts) < documents:
        kind = rng.choice(4, p=[0.868, 0.10, 0.03, 0.002])  # original, near copy, exact copy, chain
        if kind == 0 or not texts:
            texts.append(" ".join(fresh()))
        elif kind == 1:
            texts.append(" ".join(edit(texts[int(rng.integers(0, len(texts)))].split())))
            planted["near"] += 1
        elif kind == 2:
            texts.append(texts[int(rng.integers(0, len(texts)))])
            planted["exact"] += 1
        else:
            link = fresh()
            length = min(int(rng.integers(*CHAIN_LENGTH)), documents - len(texts))
            for number in range(length):
                texts.append(" ".join(link))
                link = edit(link)
                planted["chain"] += number > 0
    order = rng.permutation(documents)  # a chain's links spread over the files and the input order
    directory.mkdir(parents=True, exist_ok=True)
    for number in range(FILES):
        rows = order[number::FILES]
        table = pa.table({"id": [f"gen-{i:08d}" for i in rows.tolist()], "text": [texts[i] for i in rows.tolist()]})
        pq.write_table(table, directory / f"generated-{number:03d}.parquet", row_group_size=16_384)
    return planted


class DriverReferences:
    """The most object references this driver process held at once, sampled every `interval_s` from its core
    worker's reference table (what `ray memory` lists for the driver); and the CPU time of the process tree at each
    sample (`cpu`: the TreeMonitor's), to split it by stage afterwards."""

    def __init__(self, cpu: TreeMonitor, interval_s: float = 1.0):
        self.interval_s, self.peak, self.monitor = interval_s, 0, cpu
        self.timeline: list[tuple[float, float, int]] = []  # (time.time(), CPU seconds of the tree, driver RSS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.timeline.append((time.time(), self.monitor.cpu_seconds, _rss_bytes()))
            ray = sys.modules.get("ray")  # not imported here: the run imports it, this thread only looks
            if ray is not None and hasattr(ray, "is_initialized") and ray.is_initialized():
                try:
                    references = ray._private.worker.global_worker.core_worker.get_all_reference_counts()
                except Exception:  # between Ray's start and its worker's set-up
                    continue
                self.peak = max(self.peak, len(references))

    def __enter__(self) -> "DriverReferences":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def one_size(documents: int, workdir: Path) -> dict:
    """Generate the corpus in a child process, then run the pipeline in this one (the driver) and measure it."""
    from pipeline.config import RunConfig
    from pipeline.runner import run_pipeline

    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        planted = pool.apply(generate_corpus, (workdir / "corpus", documents))
    generated_s = time.perf_counter() - started
    config = RunConfig.model_validate({
        "name": "bench-scale", "output": str(workdir / "run"),
        "input": {"paths": [str(workdir / "corpus" / "*.parquet")]},
        "stages": ["dedup", {"tokenizer": {"vocab_size": 8_000, "sample_documents": 50_000}},
                   {"tokenize": {"shard_tokens": 20_000_000}}],
    })
    with TreeMonitor(interval_s=1.0) as memory, DriverReferences(memory) as references:
        started, started_at = time.perf_counter(), time.time()
        result = run_pipeline(config, show_progress=False)
        seconds = time.perf_counter() - started
    if not result.ok:
        raise SystemExit(f"the run failed: {result.failed_units or result.failed_stages}")
    stages = {tally.stage: tally for tally in result.funnel}
    spans = _stage_spans(workdir / "run", started_at, stages)
    dedup_done = json.loads((workdir / "run" / "dedup" / "_done.json").read_text())
    shards = json.loads((workdir / "run" / "shards" / "_done.json").read_text())
    return {
        "stage_cpu_s": _stage_cpu(spans, references.timeline),
        "stage_driver_rss_gib": _stage_rss(spans, references.timeline),
        "documents": documents, "generated_s": round(generated_s, 1), "seconds": round(seconds, 1),
        "docs_per_s": round(documents / seconds), "planted": planted,
        "planted_total": sum(planted.values()), "removed": dict(stages["dedup"].dropped),
        "removed_total": sum(stages["dedup"].dropped.values()), "rounds": dedup_done.get("rounds"),
        "stage_seconds": {name: round(tally.seconds, 1) for name, tally in stages.items()},
        "tokens": shards["tokens"], "shards": shards["shards"],
        "driver_peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30, 3),
        "tree_peak_pss_gib": round(memory.peak_tree / 2**30, 2), "driver_peak_references": references.peak,
        "tree_cpu_s": round(memory.cpu_seconds, 1),
    }


def _rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))


def _stage_spans(run: Path, started_at: float, stages: dict) -> dict[str, tuple[float, float]]:
    """(start, end) of each global stage (from its _done.json's time and its duration) and of what came before
    them (Ray's start, the read pass)."""
    spans = {}
    for name, folder in (("dedup", "dedup"), ("tokenizer", "tokenizer"), ("tokenize", "shards")):
        end = (run / folder / "_done.json").stat().st_mtime
        spans[name] = (end - stages[name].seconds, end)
    return {"start and read": (started_at, spans["dedup"][0]), **spans}


def _stage_rss(spans: dict, timeline: list[tuple[float, float, int]]) -> dict:
    """The driver's largest sampled RSS (GiB) in each span."""
    return {name: round(max((rss for at, _, rss in timeline if start <= at <= end), default=0) / 2**30, 3)
            for name, (start, end) in spans.items()}


def _stage_cpu(spans: dict, timeline: list[tuple[float, float, int]]) -> dict:
    """CPU seconds of the whole process tree in each span."""
    def cpu_at(moment: float) -> float:
        before = [cpu for at, cpu, _ in timeline if at <= moment]
        return before[-1] if before else 0.0

    return {name: round(cpu_at(end) - cpu_at(start), 1) for name, (start, end) in spans.items()}


def measured(documents: int) -> dict:
    """one_size in a fresh Python process (so that each size's driver peak is its own), in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        out = Path(tmp) / "figures.json"
        subprocess.run([sys.executable, __file__, "--one", str(documents), "--workdir", tmp, "--json", str(out)],
                       check=True)
        return json.loads(out.read_text())


def spread(values: list[float]) -> str:
    return f"{min(values):.3g}-{max(values):.3g}" if len(values) > 1 else f"{values[0]:.3g}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300_000, 3_000_000])
    parser.add_argument("--repeat", type=int, default=1, help="runs per size; ratios are given for each repetition")
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one size in this process
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        Path(args.json_path).write_text(json.dumps(one_size(args.one, Path(args.workdir)), indent=2) + "\n")
        return
    runs: list[dict[int, dict]] = []
    for repetition in range(args.repeat):
        runs.append({})
        for documents in args.sizes:
            figures = measured(documents)
            runs[-1][documents] = figures
            print(f"[{repetition + 1}] {documents:,} documents: {figures['seconds']:.0f} s, {figures['docs_per_s']:,} "
                  f"docs/s; driver peak RSS {figures['driver_peak_rss_gib']} GiB; tree peak PSS "
                  f"{figures['tree_peak_pss_gib']} GiB; driver references at most {figures['driver_peak_references']:,};"
                  f" removed {figures['removed_total']:,} of {figures['planted_total']:,} planted "
                  f"({figures['removed']}); {figures['rounds']} rounds; stage seconds {figures['stage_seconds']}, "
                  f"CPU seconds {figures['stage_cpu_s']}, driver RSS {figures['stage_driver_rss_gib']}", flush=True)
    small, large = min(args.sizes), max(args.sizes)
    rss = [run[large]["driver_peak_rss_gib"] / run[small]["driver_peak_rss_gib"] for run in runs]
    speed = [run[large]["docs_per_s"] / run[small]["docs_per_s"] for run in runs]
    found = [run[size]["removed_total"] / run[size]["planted_total"] for run in runs for size in args.sizes]
    print(f"driver peak RSS at {large:,} / at {small:,}: {spread(rss)} (target <= 1.3)")
    print(f"docs/s at {large:,} / at {small:,}: {spread(speed)} (target >= 0.8)")
    print(f"duplicates removed / planted: {spread(found)}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"runs": [{str(k): v for k, v in run.items()} for run in runs],
                                                    "rss_ratio": rss, "speed_ratio": speed}, indent=2) + "\n")


if __name__ == "__main__":
    main()
