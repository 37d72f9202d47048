"""Hostile inputs beside good ones, through every per-document stage and dedup: does anything hang, blow up, or
lose a good file's records?

Generates (never ships) a corpus under a temporary folder: good files (the project's demo crawl, and JSONL and
Parquet made from its pages' text) and hostile ones: a gzip bomb, a zero-filled .warc, a text file named .warc,
good WARCs cut at random offsets, with garbage appended or a range zeroed, records whose Content-Length is too
long or too short, pages of deeply nested tags, a one-line page of megabytes, binary sent as text/html, every
charset undeclared, a quadratic-regex page, bad JSONL lines (invalid JSON, not an object, a number as text,
invalid UTF-8, an over-long line) and bad Parquet (cut short, not Parquet at all, a huge cell, a text column of
numbers). Then it runs `pipeline run` twice, on the good files alone and on all of them, and prints per run: the
inputs, records in / kept / dropped / failed, failed units, the slowest unit's seconds, the peak memory of one
worker (its resident high-water mark), and the good files' records lost between the two runs (must be 0: each
good file's records are read, counted and kept exactly as when it is alone).

    python scripts/fuzz_inputs.py [--quick] [--seed N] [--keep DIR] [--json PATH]

`--quick` uses small bombs and pages (the version tests/test_fuzz_inputs.py runs); without it the bomb is 1 GB of
zeros and the zero-filled file 300 MB.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
MB = 1024 * 1024


@dataclass(frozen=True)
class Sizes:
    bomb_bytes: int
    zeros_bytes: int
    one_line_page_bytes: int
    long_jsonl_line_bytes: int
    demo_pages: int


QUICK = Sizes(bomb_bytes=64 * MB, zeros_bytes=32 * MB, one_line_page_bytes=2 * MB, long_jsonl_line_bytes=8 * MB,
              demo_pages=60)
FULL = Sizes(bomb_bytes=1024 * MB, zeros_bytes=300 * MB, one_line_page_bytes=10 * MB,
             long_jsonl_line_bytes=200 * MB, demo_pages=300)


# ------------------------------------------------------------------------------------------------ good files

def good_files(folder: Path, sizes: Sizes, seed: int) -> list[Path]:
    """The demo crawl's WARCs, and its pages' first sentences as JSONL and Parquet documents."""
    from pipeline.demo_crawl import TRUTH_NAME, write_demo_crawl

    crawl = folder / "demo"
    warcs = write_demo_crawl(crawl, pages=sizes.demo_pages, files=2, seed=seed)
    truth = [json.loads(line) for line in (crawl / TRUTH_NAME).read_text().splitlines()]
    documents = [{"id": f"good-{index}", "url": row["url"], "text": " ".join(
        str(row.get(key) or "") for key in ("title", "first_sentence", "topic", "site")) * 20}
        for index, row in enumerate(truth)]
    good = folder / "good"
    good.mkdir()
    files = []
    for path in warcs:
        files.append(good / f"good-{path.name}")
        shutil.copyfile(path, files[-1])
    files.append(good / "good.jsonl")
    files[-1].write_text("".join(json.dumps(document) + "\n" for document in documents))
    files.append(good / "good.parquet")
    pq.write_table(pa.Table.from_pylist(documents), files[-1], row_group_size=max(1, len(documents) // 4))
    return files


# --------------------------------------------------------------------------------------------- hostile files

def _warc_header(url: str, length: int) -> bytes:
    return (f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: {url}\r\nWARC-Date: 2024-01-01T00:00:00Z\r\n"
            f"WARC-Record-ID: <urn:uuid:{random.getrandbits(128):032x}>\r\nContent-Type: application/http; "
            f"msgtype=response\r\nContent-Length: {length}\r\n\r\n").encode()


def _http_header(content_type: str, length: int) -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n".encode()


def _warc_record(url: str, payload: bytes, content_type: str = "text/html", declared_length: int | None = None) -> bytes:
    """One WARC response record, uncompressed; `declared_length` overrides the true Content-Length."""
    block = _http_header(content_type, len(payload)) + payload
    return _warc_header(url, len(block) if declared_length is None else declared_length) + block + b"\r\n\r\n"


def _member(record: bytes) -> bytes:
    return gzip.compress(record, mtime=0)


def _article(words: int = 300) -> str:
    sentence = "The committee met on Tuesday to discuss the new budget for the public library and its staff."
    return "<p>" + " ".join([sentence] * (words // 16)) + "</p>"


def hostile_files(folder: Path, good: list[Path], sizes: Sizes, seed: int) -> list[Path]:
    rng = random.Random(seed)
    random.seed(seed)
    folder.mkdir()
    made: list[Path] = []

    def file(name: str, data: bytes) -> None:
        made.append(folder / name)
        made[-1].write_bytes(data)

    # a gzip bomb: one member holding a WARC header and a payload of zeros
    bomb = folder / "bomb.warc.gz"
    with open(bomb, "wb") as out:
        compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
        http = _http_header("text/html", sizes.bomb_bytes)
        out.write(compressor.compress(_warc_header("http://bomb.example/", len(http) + sizes.bomb_bytes) + http))
        chunk = bytes(MB)
        for _ in range(sizes.bomb_bytes // MB):
            out.write(compressor.compress(chunk))
        out.write(compressor.flush())
    made.append(bomb)
    with open(folder / "zeros.warc", "wb") as out:
        out.truncate(sizes.zeros_bytes)
    made.append(folder / "zeros.warc")
    file("notes.warc", ("This is a text file, not a web archive.\n" * 50).encode())

    warc = next(path for path in good if path.name.endswith(".warc.gz")).read_bytes()
    for index in range(3):
        file(f"cut-{index}.warc.gz", warc[:rng.randrange(len(warc) // 10, len(warc))])
    file("garbage-appended.warc.gz", warc + rng.randbytes(50_000))
    start = rng.randrange(len(warc) // 4, len(warc) // 2)
    file("zeroed-range.warc.gz", warc[:start] + bytes(4096) + warc[start + 4096:])

    pages = [
        ("nested", ("<div>" * 100_000 + "text" + "</div>" * 100_000).encode(), "text/html"),
        ("tables", ("<table><tr><td>" * 20_000 + "cell").encode(), "text/html"),
        ("one-line", ("<p>" + "word " * (sizes.one_line_page_bytes // 5) + "</p>").encode(), "text/html"),
        ("regex", ("a<b " * 80_000).encode(), "text/html"),
        ("binary", rng.randbytes(200_000), "text/html"),
        ("nul-bytes", b"<html><body>" + b"\x00" * 100_000 + _article().encode() + b"</body></html>", "text/html"),
        ("script-only", b"<html><script>" + b"var x = 1;" * 20_000 + b"</script></html>", "text/html"),
        ("huge-attribute", b'<p title="' + b"x" * 1_000_000 + b'">' + _article().encode() + b"</p>", "text/html"),
    ]
    for charset, text in (("cp1251", "Привет, мир. Это статья о библиотеке и её бюджете. " * 40),
                          ("shift_jis", "図書館の予算についての記事です。委員会は火曜日に会合しました。" * 40),
                          ("gb18030", "这是一篇关于图书馆预算的文章。委员会星期二开会讨论。" * 40),
                          ("latin-1", "Le comité s'est réuni mardi à la bibliothèque municipale. " * 40),
                          ("utf-16", "The committee met on Tuesday at the public library. " * 40)):
        pages.append((f"undeclared-{charset}", f"<html><body><p>{text}</p></body></html>".encode(charset),
                      "text/html"))
    records = [_warc_record(f"http://hostile.example/{name}", payload, kind) for name, payload, kind in pages]
    file("pages.warc.gz", b"".join(_member(record) for record in records))
    file("pages.warc", b"".join(records))

    fine = [_warc_record(f"http://length.example/{i}", f"<html><body>{_article()}</body></html>".encode())
            for i in range(4)]
    too_long = _warc_record("http://length.example/long", f"<html>{_article()}</html>".encode(),
                            declared_length=len(fine[0]) * 3)
    too_short = _warc_record("http://length.example/short", f"<html>{_article()}</html>".encode(),
                             declared_length=200)
    file("content-length.warc", fine[0] + too_long + fine[1] + too_short + fine[2])
    file("content-length.warc.gz", b"".join(_member(r) for r in (fine[0], too_long, fine[1], too_short, fine[2])))

    lines = [b'{"id": "ok-1", "text": "A fine line of text about the library budget."}', b"{not json",
             b"[1, 2, 3]", b'{"id": "number", "text": 42}', b'{"id": "bad-utf8", "text": "caf\xc3"}', b"",
             b'{"id": "long", "text": "' + b"word " * (sizes.long_jsonl_line_bytes // 5) + b'"}',
             b'{"id": "ok-2", "text": "Another fine line, after the long one."}']
    file("bad.jsonl", b"\n".join(lines) + b"\n")

    table = pa.table({"id": [f"p{i}" for i in range(100)], "text": [_article(50) for _ in range(100)]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    file("cut.parquet", sink.getvalue()[: len(sink.getvalue()) // 2])
    file("not-parquet.parquet", b"PAR1 this is not parquet at all " * 100)
    huge = pa.table({"id": ["huge", "small"], "text": ["word " * (sizes.long_jsonl_line_bytes // 5), "small text"]})
    pq.write_table(huge, folder / "huge-cell.parquet")
    made.append(folder / "huge-cell.parquet")
    pq.write_table(pa.table({"id": ["n1", "n2"], "text": [1, 2]}), folder / "numbers.parquet")
    made.append(folder / "numbers.parquet")
    return made


# ---------------------------------------------------------------------------------------------------- runs

STAGES = ["html_langid", "extract", "langid", "gopher_repetition", "gopher_quality", "c4", "fineweb", "pii", "dedup"]


class WorkerPeak:
    """The largest resident-memory high-water mark (VmHWM) of a document worker under `root` (a process Ray
    names ray::UnitActor...), read every 0.2 s."""

    def __init__(self, root: int):
        self.root, self.peak_bytes = root, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from process_tree import descendants

        while not self._stop.wait(0.2):
            for pid in descendants(self.root):
                try:
                    if not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::UnitActor"):
                        continue
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_bytes = max(self.peak_bytes, int(line.split()[1]) * 1024)

    def __enter__(self) -> "WorkerPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run(files: list[Path], output: Path, workdir: Path) -> dict:
    """`pipeline run` over `files` (on Ray, so that units run in workers); its statistics and peak worker memory."""
    config = workdir / f"{output.name}.yaml"
    config.write_text(json.dumps({"name": output.name, "input": {"paths": [str(path) for path in files]},
                                  "stages": STAGES, "rejects": True, "ray": {"in_process_max_mb": 0}}))
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "--config", str(config), "--output",
                                str(output), "--quiet"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    with WorkerPeak(process.pid) as peak:
        stdout, stderr = process.communicate()
    if not (output / "stats" / "summary.json").exists():
        raise RuntimeError(f"{output}: the run wrote no statistics (exit {process.returncode}): {stderr[-3000:]}")
    summary = json.loads((output / "stats" / "summary.json").read_text())
    units = pq.read_table(output / "stats" / "units.parquet").to_pandas()
    reads = units[units["stage"] == "read"]
    read = next(stage for stage in summary["stages"] if stage["stage"] == "read")
    return {
        "exit": process.returncode, "seconds": round(time.monotonic() - started, 1), "inputs": len(files),
        "records": summary["records_read"], "stages": {stage["stage"]: {key: stage[key] for key in ("rows_in", "kept")}
                                                       | {"dropped": sum(stage["dropped"].values()),
                                                          "failed": sum(stage["failed"].values())}
                                                       for stage in summary["stages"]},
        "failed_units": summary["failed_units"], "accounting_problems": summary["accounting_problems"],
        "read_failed": read["failed"], "read_dropped": read["dropped"],
        "slowest_unit_s": float(units.groupby("unit")["seconds"].sum().max()) if len(units) else 0.0,
        "peak_worker_mb": round(peak.peak_bytes / MB, 1),
        "read_per_file": reads.groupby("path")["rows_in"].sum().to_dict(),
        "stderr_tail": stderr[-2000:] if process.returncode else "",
    }


def good_records_lost(good: list[Path], alone: Path, mixed: Path, alone_stats: dict, mixed_stats: dict) -> int:
    """How many of the good files' records the mixed run did not read, or read into other documents."""
    import pyarrow.dataset as ds

    lost = 0
    for path in good:
        lost += abs(alone_stats["read_per_file"].get(str(path), 0) - mixed_stats["read_per_file"].get(str(path), 0))

    def ids(run: Path) -> set[tuple[str, str]]:
        table = ds.dataset(run / "documents", format="parquet").to_table(columns=["source", "id", "text"])
        return {(source, f"{doc}:{hash(text)}") for source, doc, text in zip(*(table.column(c).to_pylist()
                                                                               for c in ("source", "id", "text")))
                if Path(source).name in {path.name for path in good}}

    lost += len(ids(alone) ^ ids(mixed))
    return lost


def fuzz(workdir: Path, sizes: Sizes, seed: int) -> dict:
    good = good_files(workdir, sizes, seed)
    hostile = hostile_files(workdir / "hostile", good, sizes, seed)
    alone = run(good, workdir / "alone", workdir)
    mixed = run(good + hostile, workdir / "mixed", workdir)
    return {"good_files": len(good), "hostile_files": len(hostile), "alone": alone, "mixed": mixed,
            "good_records_lost": good_records_lost(good, workdir / "alone", workdir / "mixed", alone, mixed)}


def _print(report: dict) -> None:
    print(f"{report['good_files']} good files, {report['hostile_files']} hostile files")
    for name in ("alone", "mixed"):
        run_stats = report[name]
        print(f"\n{name}: exit {run_stats['exit']}, {run_stats['seconds']} s, {run_stats['inputs']} inputs, "
              f"{run_stats['records']:,} records read; slowest unit {run_stats['slowest_unit_s']:.1f} s; peak worker "
              f"memory {run_stats['peak_worker_mb']:.0f} MiB; failed units {len(run_stats['failed_units'])}")
        for stage, counts in run_stats["stages"].items():
            print(f"  {stage:<18} in {counts['rows_in']:>7,}  kept {counts['kept']:>7,}  dropped "
                  f"{counts['dropped']:>7,}  failed {counts['failed']:>5,}")
        print(f"  read failed by reason: {run_stats['read_failed']}")
        for unit, error in run_stats["failed_units"].items():
            print(f"  FAILED UNIT {unit}: {error.splitlines()[0]}")
        for problem in run_stats["accounting_problems"]:
            print(f"  ACCOUNTING ERROR: {problem}")
    print(f"\ngood records lost: {report['good_records_lost']} (must be 0)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small bombs and pages (what the test suite runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="generate and run in this folder (kept) instead of a temporary one")
    parser.add_argument("--json", help="also write the report as JSON here")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.keep:
        workdir = Path(args.keep)
        workdir.mkdir(parents=True, exist_ok=False)
        report = fuzz(workdir, sizes, args.seed)
    else:
        with tempfile.TemporaryDirectory(prefix="fuzz-inputs-") as temporary:
            report = fuzz(Path(temporary), sizes, args.seed)
    _print(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0 if report["good_records_lost"] == 0 and report["mixed"]["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
