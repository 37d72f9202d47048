"""Benchmark: our pipeline against datatrove 0.10.1 (FineWeb's pipeline), same machine, same input, same run.

1. Input: a benchmark crawl of at least `--records` WARC response records, made from the 879 real pages of
   ../shared/data/warc/derived_real_html: every page is copied `ceil(records / 879)` times, each copy with a new URL
   (`?bench_copy=K`) and a small change (a short paragraph naming the copy before </body>), shuffled into
   `--files` gzipped WARC files. Records carry `WARC-Identified-Payload-Type: text/html`, as Common Crawl's do.
   Nothing is kept: the files live in a temporary directory.
2. Filtering, one after the other on the same files, 2 workers each (`--workers`):
   (a) datatrove, installed in a throwaway virtualenv (`--venv`, created once): WarcReader → Trafilatura
       (favour_precision, no fallback, no trafilatura dedup, tables kept) → LanguageFilter (the local lid.176, the
       same file our langid uses) → GopherRepetitionFilter → GopherQualityFilter → C4QualityFilter →
       FineWebQualityFilter → PIIFormatter → JsonlWriter, on a LocalPipelineExecutor with one task per file;
   (b) ours: `pipeline run` with html_langid (lid.176 on a sample of each raw page's visible text: pages plainly
       in another language are not extracted) → extract (favor: precision) → langid → gopher_repetition →
       gopher_quality → c4 → fineweb → pii, writing Parquet, on its embedded local Ray;
   (c) ours without html_langid, the same stages as datatrove's (not with --screen-only).
   Thresholds are the same on both sides (our defaults are datatrove's; scripts/compare_datatrove.py shows that
   the rules agree document by document), and ours measure table rows as written (`tables: as_written`), as
   datatrove does. Each side runs as its own process tree, start-up included.
3. MinHash deduplication of the documents our filtering kept (written as JSONL.gz, the same files for both):
   (a) datatrove's four MinHash steps (signatures, buckets, clusters, filter), 5-grams, 14 bands x 8 rows,
   (b) ours: `pipeline run` with only the dedup stage, same shingles, bands and rows.
   That is about 1,200 documents (2 MB), where start-up decides: ours runs it in its own process without starting
   Ray (ray.in_process_max_mb), as `pipeline run` does for any input that small; so the same again on
   `--dedup-documents` (100,000)
   documents generated as in scripts/bench_dedup.py (real words, 10% near and 3% exact copies planted), in 16
   Parquet files, compared by id.

For each: records (or documents) per second end to end, CPU seconds per 1,000 records (user + system of every
process of the tree, sampled from /proc), peak memory of the whole tree (PSS, shared pages counted once), documents
kept, and the overlap of the kept documents' URLs. Speed and CPU come from `--repeat N` timed runs of each side in
turn (medians, with the slowest and fastest rate and the ratio of rates in each round: a noisy round shows), memory
from one more run of each (reading PSS slows the processes it reads, so the timed runs sample only CPU times), with
the peak split by kind of process (datatrove's workers; Ray's raylet, GCS, agents and workers, our sandbox
children). This is a benchmark: it prints figures and asserts nothing.

Differences that remain, and are printed: datatrove 0.10.1 pins trafilatura < 1.12 (we use 2.x), and its PII
formatter masks e-mails and IPs with two regexes where our pii stage finds six entity types with checksums and
context; its MinHash normalisation also strips diacritics.

    python scripts/bench_vs_datatrove.py [--records N] [--files N] [--workers N] [--repeat N] [--languages en ...]
                                         [--venv DIR] [--keep DIR] [--screen-only] [--skip-dedup] [--dedup-documents N]
                                         [--json PATH]
Needs libmagic (Debian: libmagic1) for datatrove's WARC reader.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import io
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.dataset as ds
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_datatrove import datatrove_python, datatrove_specs  # noqa: E402
from process_tree import TreeMonitor  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
PAGES = DATA / "warc" / "derived_real_html" / "*.warc.gz"
LID_MODEL = DATA / "models" / "lid176" / "lid.176.ftz"

FILTER_DRIVER = '''
import json, sys
spec = json.load(open(sys.argv[1]))
from datatrove.utils.lid import FT176LID
FT176LID.MODEL_URL = spec["lid_model"]  # a local file: copied into datatrove's cache, nothing is downloaded
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline import filters
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.formatters import PIIFormatter
from datatrove.pipeline.readers import WarcReader
from datatrove.pipeline.writers import JsonlWriter

if __name__ == "__main__":  # datatrove's workers start by forkserver and import this file again
    steps = [
        WarcReader(spec["input"], glob_pattern="*.warc.gz"),
        Trafilatura(favour_precision=True, deduplicate=False, include_tables=True, no_fallback=True,
                    timeout=spec["time_limit_s"]),
        filters.LanguageFilter(languages=spec["languages"], language_threshold=spec["min_score"]),
    ]
    steps += [getattr(filters, f["class"])(**f["kwargs"]) for f in spec["filters"]]
    steps += [PIIFormatter(), JsonlWriter(spec["output"])]
    LocalPipelineExecutor(steps, tasks=spec["tasks"], workers=spec["workers"], logging_dir=spec["logs"]).run()
'''

MINHASH_DRIVER = '''
import json, sys
spec = json.load(open(sys.argv[1]))
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import (MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
                                      MinhashDedupSignature)
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.pipeline.readers import JsonlReader, ParquetReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig

Reader = ParquetReader if spec["format"] == "parquet" else JsonlReader

if __name__ == "__main__":  # datatrove's workers start by forkserver and import this file again
    config = MinhashConfig(n_grams=spec["ngram"], num_buckets=spec["bands"], hashes_per_bucket=spec["rows"],
                           seed=spec["seed"], hash_config=HashConfig(precision=64))
    work, tasks, workers = spec["work"], spec["tasks"], spec["workers"]
    signatures = LocalPipelineExecutor(
        [Reader(spec["input"]), MinhashDedupSignature(output_folder=f"{work}/signatures", config=config)],
        tasks=tasks, workers=workers, logging_dir=f"{work}/logs/signatures")
    buckets = LocalPipelineExecutor(
        [MinhashDedupBuckets(input_folder=f"{work}/signatures", output_folder=f"{work}/buckets", config=config)],
        tasks=config.num_buckets, workers=workers, logging_dir=f"{work}/logs/buckets", depends=signatures)
    clusters = LocalPipelineExecutor(
        [MinhashDedupCluster(input_folder=f"{work}/buckets", output_folder=f"{work}/remove_ids", config=config)],
        tasks=1, logging_dir=f"{work}/logs/clusters", depends=buckets)
    kept = LocalPipelineExecutor(
        [Reader(spec["input"]), MinhashDedupFilter(input_folder=f"{work}/remove_ids"), JsonlWriter(spec["output"])],
        tasks=tasks, workers=workers, logging_dir=f"{work}/logs/filter", depends=clusters)
    kept.run()
'''


@dataclass
class Measured:
    """One run of one side: its process tree's wall time and CPU, and (memory runs) its peak PSS, by kind of
    process at the peak."""

    wall_s: float
    cpu_s: float
    peak_pss_mib: float = 0.0
    peak_by_kind_mib: dict = field(default_factory=dict)


@dataclass
class Runs:
    """A side's timed runs, in round order, and its memory run."""

    timed: list[Measured]
    memory: Measured | None = None


def build_benchmark_crawl(directory: Path, records: int, files: int, seed: int = 0) -> int:
    """Write the multiplied pages as `files` WARC files; returns how many response records they hold."""
    from warcio.archiveiterator import ArchiveIterator
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    pages = []
    for path in sorted(glob.glob(str(PAGES))):
        with open(path, "rb") as stream:
            for record in ArchiveIterator(stream):
                if record.rec_type == "response":
                    content_type = record.http_headers.get_header("Content-Type") or "text/html"
                    pages.append((record.rec_headers.get_header("WARC-Target-URI"), content_type,
                                  record.content_stream().read()))
    copies = math.ceil(records / len(pages))
    order = [(copy, index) for copy in range(copies) for index in range(len(pages))]
    random.Random(seed).shuffle(order)
    directory.mkdir(parents=True, exist_ok=True)
    streams = [open(directory / f"bench-{n:05d}.warc.gz", "wb") for n in range(files)]
    writers = [WARCWriter(stream, gzip=True) for stream in streams]
    for position, (copy, index) in enumerate(order):
        url, content_type, payload = pages[index]
        url = f"{url}{'&' if '?' in url else '?'}bench_copy={copy}"
        note = f"<p>This is copy {copy} of this page, kept for the benchmark.</p>".encode()
        cut = payload.lower().rfind(b"</body>")
        payload = payload[:cut] + note + payload[cut:] if cut >= 0 else payload + note
        http = StatusAndHeaders("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(payload)))],
                                protocol="HTTP/1.1")
        record = writers[position % files].create_warc_record(
            url, "response", payload=io.BytesIO(payload), http_headers=http,
            warc_headers_dict={"WARC-Date": "2024-01-01T00:00:00Z", "WARC-Identified-Payload-Type": "text/html"})
        writers[position % files].write_record(record)
    for stream in streams:
        stream.close()
    return len(order)


def measure(command: list[str], env: dict | None = None, memory: bool = False) -> Measured:
    """Run a command to completion as its own process tree and measure it: wall and CPU time, or (memory=True)
    its peak PSS, sampled in a run of its own because reading PSS slows the processes down."""
    started = time.perf_counter()
    environment = {**os.environ, **(env or {})}
    environment.pop("RAY_ADDRESS", None)  # ours starts its own embedded Ray, as on a fresh machine
    process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    with TreeMonitor(process.pid, interval_s=0.5 if memory else 0.25, memory=memory) as monitor:
        output, _ = process.communicate()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"error: {' '.join(command)} exited {process.returncode}:\n{output[-4000:]}")
    by_kind = {label: round(size / 2**20) for label, size in sorted(monitor.peak_by_label.items(),
                                                                      key=lambda item: -item[1])}
    return Measured(round(wall, 2), round(monitor.cpu_seconds, 2), round(monitor.peak_tree / 2**20), by_kind)


def datatrove_command(python: Path, driver: str, spec: dict, work: Path, name: str) -> tuple[list[str], dict, list]:
    """The command that runs a datatrove driver, its environment, and the outputs to clear before a repeat."""
    (work / f"{name}.py").write_text(driver)
    (work / f"{name}.json").write_text(json.dumps(spec))
    # datatrove's cache for the language model goes under the work directory, so every run starts alike
    return ([str(python), str(work / f"{name}.py"), str(work / f"{name}.json")],
            {"HF_HOME": str(work / "hf-home"), "HF_HUB_OFFLINE": "1"},
            [Path(spec[key]) for key in ("output", "logs", "work") if key in spec])


def our_command(config: dict, work: Path, name: str) -> tuple[list[str], dict, list]:
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return ([sys.executable, "-m", "pipeline.cli", "run", "--config", str(path), "--quiet"],
            {"RAY_USAGE_STATS_ENABLED": "0"}, [Path(config["output"])])


def run_sides(repeat: int, *sides: tuple[list[str], dict, list]) -> list[Runs]:
    """`repeat` rounds of timed runs, each round running every side in turn (outputs cleared before each run, so
    that a slow spell of the machine weighs on all sides alike), then one memory run of each side."""
    runs = [Runs([]) for _ in sides]
    for round_number in range(repeat + 1):
        memory_run = round_number == repeat
        print(f"{'memory run' if memory_run else f'round {round_number + 1} of {repeat}'}...", flush=True)
        for side, (command, env, outputs) in zip(runs, sides):
            for output in outputs:
                shutil.rmtree(output, ignore_errors=True)
            measured = measure(command, env, memory=memory_run)
            if memory_run:
                side.memory = measured
            else:
                side.timed.append(measured)
    return runs


def jsonl_column(directory: Path, key: str) -> list[str]:
    """A field of every document datatrove wrote (id at the top, the rest under metadata)."""
    values = []
    for path in sorted(directory.glob("*.jsonl.gz")):
        with gzip.open(path, "rt") as lines:
            rows = [json.loads(line) for line in lines if line.strip()]
        values += [row[key] if key == "id" else row["metadata"][key] for row in rows]
    return values


def parquet_column(directory: Path, key: str) -> list[str]:
    return ds.dataset(str(directory), format="parquet").to_table(columns=[key]).column(key).to_pylist()


def overlap(ours: list[str], theirs: list[str]) -> dict:
    a, b = set(ours), set(theirs)
    return {"both": len(a & b), "only_ours": len(a - b), "only_datatrove": len(b - a),
            "jaccard": round(len(a & b) / len(a | b), 4) if a | b else 1.0}


def filtering(args: argparse.Namespace, python: Path, work: Path, crawl: Path, records: int) -> dict:
    specs, _ = datatrove_specs()
    datatrove_filters = [specs[name] for name in ("gopher_repetition", "gopher_quality", "c4", "fineweb")]
    files = len(list(crawl.glob("*.warc.gz")))
    print(f"filtering {records:,} records in {files} files, {args.workers} workers each", flush=True)
    stages = [{"extract": {"favor": "precision", "include_comments": False, "time_limit_s": 5.0}},
              {"langid": {"model": str(LID_MODEL), "languages": args.languages, "min_score": 0.65}},
              *({name: {"tables": "as_written"}} for name in ("gopher_repetition", "gopher_quality", "c4", "fineweb")),
              "pii"]
    screen = {"html_langid": {"model": str(LID_MODEL), "languages": args.languages}}
    sides = [datatrove_command(python, FILTER_DRIVER, {
        "input": str(crawl), "output": str(work / "datatrove-out"), "logs": str(work / "datatrove-logs"),
        "lid_model": str(LID_MODEL), "languages": args.languages, "min_score": 0.65, "time_limit_s": 5.0,
        "filters": datatrove_filters, "tasks": files, "workers": args.workers,
    }, work, "datatrove_filter")]
    for name, our_stages in (("ours", [screen, *stages]), ("ours-unscreened", stages)):
        if name == "ours-unscreened" and args.screen_only:
            continue
        sides.append(our_command({"name": f"bench-vs-datatrove-{name}", "output": str(work / name),
                                  "input": {"paths": [str(crawl / "*.warc.gz")]}, "stages": our_stages,
                                  "ray": {"workers": args.workers}}, work, name.replace("-", "_")))
    measured = run_sides(args.repeat, *sides)
    their_urls = jsonl_column(work / "datatrove-out", "url")
    figures = {"records": records, "files": files, "workers": args.workers,
               "datatrove": _figures(measured[0], records, len(their_urls)), "key": "url"}
    for name, side in zip(("ours", "ours-unscreened"), measured[1:]):
        summary = json.loads((work / name / "stats" / "summary.json").read_text())
        assert summary["records_read"] >= records, summary["records_read"]
        our_urls = parquet_column(work / name / "documents", "url")
        figures[name] = {**_figures(side, records, len(our_urls), measured[0]),
                         "kept_overlap": overlap(our_urls, their_urls)}
    figures["kept"] = figures["ours"]["kept_overlap"]
    return figures


def dedup_kept(args: argparse.Namespace, python: Path, work: Path) -> dict:
    """Both MinHash deduplications on the documents our filtering kept (as JSONL.gz), compared by URL."""
    corpus = work / "dedup-input"
    corpus.mkdir()
    table = ds.dataset(str(work / "ours" / "documents"), format="parquet").to_table(columns=["id", "url", "text"])
    rows = table.to_pylist()
    shards = max(1, min(args.files, len(rows)))
    for shard in range(shards):
        with gzip.open(corpus / f"kept-{shard:05d}.jsonl.gz", "wt") as out:
            for row in rows[shard::shards]:
                out.write(json.dumps(row) + "\n")
    return minhash_pair(args, python, work, "kept", corpus, "jsonl", len(rows), shards, key="url")


def dedup_generated(args: argparse.Namespace, python: Path, work: Path) -> dict:
    """Both MinHash deduplications at a size where throughput, not start-up, decides: scripts/bench_dedup.py's
    generated documents (real words, 10% near and 3% exact copies planted) in 16 Parquet files, compared by id."""
    from bench_dedup import SHARDS, generate_corpus

    planted = generate_corpus(work / "generated", args.dedup_documents)
    print(f"generated {args.dedup_documents:,} documents ({planted['near']:,} near and {planted['exact']:,} exact "
          "copies planted)", flush=True)
    figures = minhash_pair(args, python, work, "generated", work / "generated", "parquet", args.dedup_documents,
                           SHARDS, key="id")
    return {**figures, "planted": planted}


def minhash_pair(args: argparse.Namespace, python: Path, work: Path, name: str, corpus: Path, fmt: str,
                 documents: int, shards: int, key: str) -> dict:
    """datatrove's four MinHash steps and our dedup stage on the same files: 5-grams, 14 bands x 8 rows."""
    print(f"MinHash dedup of {documents:,} documents in {shards} files", flush=True)
    pattern = "*.parquet" if fmt == "parquet" else "*.jsonl.gz"
    theirs, ours = run_sides(args.repeat, datatrove_command(python, MINHASH_DRIVER, {
        "input": str(corpus), "format": fmt, "output": str(work / f"datatrove-dedup-{name}"),
        "work": str(work / f"datatrove-minhash-{name}"), "ngram": 5, "bands": 14, "rows": 8, "seed": 1,
        "tasks": shards, "workers": args.workers,
    }, work, f"datatrove_minhash_{name}"), our_command({
        "name": f"bench-vs-datatrove-dedup-{name}", "output": str(work / f"ours-dedup-{name}"),
        "input": {"paths": [str(corpus / pattern)], "fields": {"text": "text", "id": "id", "url": "url"}},
        "stages": [{"dedup": {"minhash": {"ngram": 5, "bands": 14, "rows": 8, "seed": 1,
                                          "normalization": {"mask_digits": True}}}}],
        "ray": {"workers": args.workers},
    }, work, f"ours_dedup_{name}"))
    our_keys = parquet_column(work / f"ours-dedup-{name}" / "dedup" / "documents", key)
    their_keys = jsonl_column(work / f"datatrove-dedup-{name}", key)
    return {"documents": documents, "files": shards, "datatrove": _figures(theirs, documents, len(their_keys)),
            "ours": _figures(ours, documents, len(our_keys), theirs), "kept": overlap(our_keys, their_keys), "key": key}


def _figures(runs: Runs, records: int, kept: int, reference: Runs | None = None) -> dict:
    """A side's figures: medians of its timed runs, the range of its rate, its memory run's peak; against a
    reference side (datatrove), the ratio of rates in each round."""
    rates = [records / run.wall_s for run in runs.timed]
    figures = {"wall_s": round(statistics.median(run.wall_s for run in runs.timed), 2),
               "cpu_s": round(statistics.median(run.cpu_s for run in runs.timed), 2),
               "per_s": round(statistics.median(rates), 1), "per_s_range": [round(min(rates), 1), round(max(rates), 1)],
               "peak_pss_mib": runs.memory.peak_pss_mib, "peak_by_kind_mib": runs.memory.peak_by_kind_mib,
               "kept": kept}
    figures["cpu_s_per_1000"] = round(figures["cpu_s"] / records * 1000, 2)
    if reference is not None:
        figures["rate_ratio_by_round"] = [round(theirs.wall_s / ours.wall_s, 2)
                                          for ours, theirs in zip(runs.timed, reference.timed)]
    return figures


def print_table(title: str, unit: str, figures: dict) -> None:
    theirs = figures["datatrove"]
    ours = [name for name in ("ours", "ours-unscreened") if name in figures]
    print(f"\n{title}")
    print(f"{'':28}{'datatrove 0.10.1':>18}" + "".join(f"{name:>17}{'/ datatrove':>13}" for name in ours))
    rows = [(f"{unit}/s end to end", "per_s", ",.1f"), ("wall seconds", "wall_s", ",.1f"),
            (f"CPU s per 1,000 {unit}", "cpu_s_per_1000", ",.2f"), ("CPU seconds", "cpu_s", ",.1f"),
            ("peak memory (PSS, MiB)", "peak_pss_mib", ",.0f"), ("documents kept", "kept", ",")]
    for label, key, fmt in rows:
        line = f"{label:28}{format(theirs[key], fmt):>18}"
        for name in ours:
            ratio = figures[name][key] / theirs[key] if theirs[key] else float("nan")
            line += f"{format(figures[name][key], fmt):>17}{ratio:>12.2f}x"
        print(line)
    print(f"{unit + '/s, slowest-fastest':28}{_range(theirs):>18}" + "".join(f"{_range(figures[name]):>17}{'':13}"
                                                                               for name in ours))
    for name in ours:
        ratios = ", ".join(f"{ratio:.2f}x" for ratio in figures[name]["rate_ratio_by_round"])
        print(f"{name} / datatrove, {unit}/s in each round: {ratios}")
    for name in ("datatrove", *ours):
        kinds = ", ".join(f"{kind} {mib:,}" for kind, mib in figures[name]["peak_by_kind_mib"].items())
        print(f"peak memory of {name} by process (PSS, MiB): {kinds}")
    for name in ours:
        shared = figures[name].get("kept_overlap", figures["kept"])
        print(f"kept {figures['key']}s, {name}: {shared['both']:,} kept by both, {shared['only_ours']:,} only by "
              f"ours, {shared['only_datatrove']:,} only by datatrove (Jaccard {shared['jaccard']:.3f})")


def _range(side: dict) -> str:
    low, high = side["per_s_range"]
    return f"{low:,.1f}-{high:,.1f}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5000, help="at least this many WARC response records")
    parser.add_argument("--files", type=int, default=8, help="WARC files the records are spread over")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds, each running every side once in turn; "
                        "the figures are medians, with the range of rates and each round's ratio")
    parser.add_argument("--languages", nargs="+", default=["en"], help="languages kept by both language filters")
    parser.add_argument("--venv", default=str(Path(tempfile.gettempdir()) / "datatrove-0.10.1-venv"))
    parser.add_argument("--keep", help="work in this directory and keep it (default: a temporary one)")
    parser.add_argument("--screen-only", action="store_true",
                        help="run ours only with the html_langid screen, not also without it")
    parser.add_argument("--skip-dedup", action="store_true")
    parser.add_argument("--dedup-documents", type=int, default=100_000,
                        help="also deduplicate this many generated documents (0: not)")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)

    python = datatrove_python(Path(args.venv))
    with tempfile.TemporaryDirectory(prefix="bench-vs-datatrove-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        records = build_benchmark_crawl(work / "crawl", args.records, args.files)
        figures = {"filtering": filtering(args, python, work, work / "crawl", records)}
        print_table(f"Filtering: {records:,} WARC records, {args.workers} workers each", "records",
                    figures["filtering"])
        if not args.skip_dedup:
            figures["dedup_kept"] = dedup_kept(args, python, work)
            print_table(f"MinHash dedup of the kept documents: {figures['dedup_kept']['documents']:,}", "documents",
                        figures["dedup_kept"])
        if not args.skip_dedup and args.dedup_documents:
            figures["dedup_generated"] = dedup_generated(args, python, work)
            print_table(f"MinHash dedup of {args.dedup_documents:,} generated documents", "documents",
                        figures["dedup_generated"])
    print("\nNot the same on both sides: trafilatura 1.11 (datatrove pins < 1.12) vs 2.x here; PII: datatrove masks "
          "e-mails and IPs by regex, ours six entity types with checksums and context; MinHash: datatrove also "
          "strips diacritics before shingling.")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
