"""Benchmark: documents/s of every filter stage on real extracted web pages, and of the PII stage against a
plain-regex email/IPv4 baseline in the same run.

Input: the texts our extract stage gets from the 879 real pages of ../shared/data/warc/derived_real_html (extracted
here first, not timed), or `--documents DIR` with the documents/ of an earlier run. Each stage is built once (as a
worker does) and then timed over all documents in batches of 256, in this one process; the figure is docs/s on one
core. The regex baseline does what the cheapest possible PII pass does: find and replace emails and IPv4 addresses
with two compiled regular expressions. The issue's target: the PII stage reaches at least a third of its speed.

    python scripts/bench_filters.py [--documents DIR] [--repeat K] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.dataset as ds

from pipeline.config import RunConfig
from pipeline.demo_crawl import write_demo_labels
from pipeline.runner import run_pipeline
from pipeline.schema import RECORD_SCHEMA, empty_row
from stages import STAGES
from stages.base import Stage

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT.parent / "shared" / "data"
BATCH = 256
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
IPV4 = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")


def extracted_texts(documents: str | None, workdir: Path) -> list[str]:
    """Texts of a run's documents, or of a fresh extract-only run over the real pages."""
    if documents is None:
        config = RunConfig.model_validate({
            "name": "bench-filters", "output": str(workdir / "extract-run"), "stages": ["extract"],
            "input": {"paths": [str(DATA / "warc" / "derived_real_html" / "*.warc.gz")]},
        })
        documents = str(run_pipeline(config, show_progress=False).run_dir / "documents")
    return [text for text in ds.dataset(documents, format="parquet").to_table(columns=["text"])
            .column("text").to_pylist() if text]


def batches(texts: list[str]) -> list[pa.Table]:
    tables = []
    for start in range(0, len(texts), BATCH):
        rows = []
        for index, text in enumerate(texts[start:start + BATCH], start):
            row = empty_row()
            row.update(id=str(index), text=text)
            rows.append(row)
        tables.append(pa.Table.from_pylist(rows, schema=RECORD_SCHEMA))
    return tables


def stage_settings(workdir: Path) -> dict[str, dict]:
    """Settings for every filter stage: the real lid.176 and LDNOOBW list, small classifiers trained on the demo
    crawl's labelled examples (training is not timed)."""
    labels = write_demo_labels(workdir / "labels")
    return {
        "langid": {"model": str(DATA / "models" / "lid176" / "lid.176.ftz")},
        "gopher_repetition": {},
        "gopher_quality": {},
        "c4": {},
        "fineweb": {},
        "toxic_words": {"word_list": str(DATA / "toxicity" / "ldnoobw" / "lists" / "en")},
        "toxicity_classifier": {"model": str(workdir / "toxicity.bin"), "train_from": str(labels["toxicity"])},
        "quality_classifier": {"model": str(workdir / "quality.bin"), "train_from": str(labels["quality"])},
        "pii": {},
    }


def build(name: str, settings: dict, workdir: Path) -> Stage:
    stage_class = STAGES[name]
    config = stage_class.prepare(stage_class.Config.model_validate(settings), workdir)
    return stage_class(config)


def best_rate(work: Callable[[], None], documents: int, repeat: int) -> float:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
    return documents / min(seconds)


def regex_baseline(texts: list[str]) -> None:
    for text in texts:
        IPV4.sub("<IP_ADDRESS>", EMAIL.sub("<EMAIL>", text))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", help="a run's documents/ directory (default: extract the real pages now)")
    parser.add_argument("--repeat", type=int, default=2, help="timed passes per stage; the best is reported")
    parser.add_argument("--json", dest="json_path", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-filters-") as tmp:
        workdir = Path(tmp)
        texts = extracted_texts(args.documents, workdir)
        tables = batches(texts)
        chars = sum(len(text) for text in texts)
        print(f"{len(texts):,} documents, {chars / len(texts):,.0f} characters on average; best of {args.repeat}")
        rates: dict[str, float] = {}
        for name, settings in stage_settings(workdir).items():
            if name not in STAGES:
                print(f"{name:<22}(not available)")
                continue
            stage = build(name, settings, workdir)
            try:
                rates[name] = best_rate(lambda: [stage(table) for table in tables], len(texts), args.repeat)
            finally:
                stage.close()
            print(f"{name:<22}{rates[name]:>10,.0f} docs/s")
        rates["regex_email_ipv4"] = best_rate(lambda: regex_baseline(texts), len(texts), args.repeat)
        print(f"{'regex email+IPv4':<22}{rates['regex_email_ipv4']:>10,.0f} docs/s (baseline)")
    if "pii" in rates:
        ratio = rates["pii"] / rates["regex_email_ipv4"]
        print(f"\nPII stage / regex baseline: {ratio:.2f} (target: at least 0.33)")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"documents": len(texts), "docs_per_s": rates}, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
