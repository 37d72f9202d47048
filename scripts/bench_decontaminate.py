"""Benchmark: documents/s of the decontaminate stage with GSM8K loaded, against the langid stage in the same run, on
one core; and the index's size and build time for 100,000 evaluation items.

Input: the texts our extract stage gets from the 879 real pages of ../shared/data/warc/derived_real_html (extracted
here first, not timed, as scripts/bench_filters.py does), or `--documents DIR`. Three sets of the same texts:
as they are; with a GSM8K problem planted in every tenth page (those documents take the stage's closer look); and
as they are against the large index below. Each stage is built once, as a worker builds it (set-up not timed), then
run over all documents in batches of 256 in this one process; a pass is timed by the process's CPU time, and the
stages take turns pass by pass, so that both see the same machine. Each pass is printed, then the median and the
spread.

The large index: `--items` synthetic problems (default 100,000) written as JSON lines, each made of the sentences of
three random GSM8K problems, its question from their questions and its answer from their answers, every number
drawn anew; the time of `prepare` (reading the file, hashing, sorting, writing the index) and the size of the file.

    python scripts/bench_decontaminate.py [--documents DIR] [--repeat K] [--items N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_filters import DATA, batches, build, extracted_texts  # noqa: E402

from stages.base import Stage  # noqa: E402
from stages.decontaminate import Decontaminate  # noqa: E402
from stages.decontaminate.index import load_index  # noqa: E402

GSM8K = DATA / "benchmarks" / "gsm8k" / "test.jsonl"
_NUMBER = re.compile(r"\d+")
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")


def synthetic_items(problems: list[dict], count: int, rng: random.Random) -> list[dict]:
    """Problems made of the sentences of three GSM8K problems each, numbers drawn anew."""
    def renumbered(text: str) -> str:
        return _NUMBER.sub(lambda number: str(rng.randint(1, 10 ** len(number.group()))), text)

    items = []
    for _ in range(count):
        sources = rng.sample(problems, 3)
        question = [sentence for source in sources for sentence in _SENTENCE_END.split(source["question"])]
        answer = [line for source in sources for line in source["answer"].split("\n")[:-1]]
        items.append({"question": renumbered(" ".join(rng.sample(question, min(len(question), 6)))),
                      "answer": renumbered("\n".join(rng.sample(answer, min(len(answer), 5))))})
    return items


def timed_pass(stage: Stage, tables: list[pa.Table]) -> tuple[float, int]:
    """CPU seconds of one pass over the batches, and the documents the stage found contaminated."""
    started = time.process_time()
    outcomes = [stage(table) for table in tables]
    seconds = time.process_time() - started
    found = sum(bool(items) for outcome in outcomes if "decon_items" in outcome.column_names
                for items in outcome.column("decon_items").to_pylist())
    return seconds, found


def race(stages: dict[str, Stage], tables: list[pa.Table], documents: int, repeat: int) -> None:
    """Time the stages in turn, pass after pass; print each pass, then the median and spread of each."""
    rates: dict[str, list[float]] = {name: [] for name in stages}
    for attempt in range(repeat):
        for name, stage in stages.items():
            seconds, found = timed_pass(stage, tables)
            rates[name].append(documents / seconds)
            print(f"  pass {attempt + 1} {name:<16}{rates[name][-1]:>9,.0f} docs/s"
                  + (f"  ({found:,} documents contaminated)" if name.startswith("decontaminate") else ""))
    for name, values in rates.items():
        print(f"  {name:<23}median {statistics.median(values):>7,.0f} docs/s, spread {min(values):,.0f}-"
              f"{max(values):,.0f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", help="a run's documents/ directory (default: extract the real pages now)")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes of each stage (default 3)")
    parser.add_argument("--items", type=int, default=100_000, help="synthetic evaluation items (default 100,000)")
    args = parser.parse_args(argv)
    rng = random.Random(0)
    problems = [json.loads(line) for line in GSM8K.read_text().splitlines()]
    with tempfile.TemporaryDirectory(prefix="bench-decontaminate-") as tmp:
        workdir = Path(tmp)
        os.environ["CCPIPELINE_CACHE"] = str(workdir / "cache")  # where prepare writes its index
        texts = extracted_texts(args.documents, workdir)
        planted = [f"{text}\n{problems[number]['question']}\n{problems[number]['answer']}" if number % 10 == 0
                   else text for number, text in enumerate(texts)]
        gsm8k = {"name": "gsm8k", "paths": [str(GSM8K)], "fields": ["question", "answer"]}
        langid = build("langid", {"model": str(DATA / "models" / "lid176" / "lid.176.ftz")}, workdir)
        decontaminate = build("decontaminate", {"eval_sets": [gsm8k]}, workdir)
        print(f"{len(texts):,} documents, {sum(map(len, texts)) / len(texts):,.0f} characters on average; "
              f"{len(problems):,} GSM8K problems indexed; {args.repeat} passes, one core")
        print("the texts as they are:")
        race({"langid": langid, "decontaminate": decontaminate}, batches(texts), len(texts), args.repeat)
        print("a GSM8K problem planted in every tenth page:")
        race({"langid": langid, "decontaminate": decontaminate}, batches(planted), len(texts), args.repeat)

        eval_file = workdir / "synthetic.jsonl"
        eval_file.write_text("".join(json.dumps(item) + "\n" for item in synthetic_items(problems, args.items, rng)))
        settings = Decontaminate.Config(eval_sets=[{**gsm8k, "name": "synthetic", "paths": [str(eval_file)]}])
        started = time.perf_counter()
        config = Decontaminate.prepare(settings, workdir)
        prepared_s = time.perf_counter() - started
        started = time.perf_counter()
        large = Decontaminate(config)
        loaded_s = time.perf_counter() - started
        index = Path(config.index)
        print(f"{args.items:,} synthetic items ({eval_file.stat().st_size / 2**20:,.1f} MiB of JSON lines): prepare "
              f"(read, hash, sort, write) {prepared_s:.1f} s, index {index.stat().st_size / 2**20:,.1f} MiB "
              f"({len(load_index(index).hashes):,} n-gram entries), loaded by a worker in {loaded_s:.2f} s")
        race({"decontaminate 100k": large}, batches(texts), len(texts), args.repeat)
        langid.close()


if __name__ == "__main__":
    main()
