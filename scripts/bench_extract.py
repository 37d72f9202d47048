"""Benchmark: text extraction through the Ray pipeline against a plain trafilatura loop in one process.

What is measured, in one run of this script, on the same WARC input (by default the 879 real HTML pages of
../shared/data/warc/derived_real_html/*.warc.gz, plus their warcinfo records):

1. The pipeline: a `RunConfig` with `stages: [extract]`, written to a temporary directory by `run_pipeline`.
   - "incl. start-up": wall time of `run_pipeline` called with no Ray running, so it starts (and stops) its own
     embedded Ray, plans the units, starts the actor pool and processes everything.
   - "excl. start-up": Ray is started first, exactly as the runner starts it (the runner then skips `ray.init`),
     and only `run_pipeline` is timed. Planning, actor-pool start-up, each worker's sandboxed extraction child,
     reading, extraction, Parquet writing and statistics are still inside the timing: that is the framework.
   Rates: HTML pages/s (records that reached the extract stage) and records/s (every WARC record read), both from
   the run's funnel.
2. The plain loop: the same records are read into memory first with the project's own reader (not timed); then one
   process calls, page after page, exactly what the extract stage calls per page (`stages.extract.make_extractor`:
   `decode_html` then `trafilatura.extract` with the same arguments), with no sandbox, no Ray, no output.

How to read the ratio (pipeline pages/s / plain-loop pages/s): it is the speed-up the framework buys over one
process. With N workers on N otherwise idle cores the ideal is about N; the gap to N is the framework's overhead
(start-up, per-document sandbox round trips, reading, writing) plus the machine's own limits (hyper-threads,
turbo, memory bandwidth). A ratio below 1 means the framework costs more than the parallelism brings.
With `--repeat K` each side is run K times and the best (fastest) time is reported.

Both sides should find about the same number of documents with non-empty text; the pipeline may differ by a page
or two (a per-document time limit applies there only). This is a benchmark, not a test: it asserts nothing.

    python scripts/bench_extract.py [--input GLOB] [--workers N] [--favor precision|balanced|recall]
                                    [--fallback] [--repeat K] [--copies N] [--json PATH]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, TypeVar

import ray

from pipeline.config import RunConfig
from pipeline.io.archive_reader import ReadOptions, probe_layout, read_archive
from pipeline.ray_session import connect_ray, disconnect_ray
from pipeline.runner import RunResult, run_pipeline
from pipeline.stats import StageTally, accounting_problems
from pipeline.summary import records_read
from stages.extract import ExtractConfig, make_extractor

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = str(REPO_ROOT.parent / "shared" / "data" / "warc" / "derived_real_html" / "*.warc.gz")
EXTRACT_STAGE = "extract"


@dataclass(frozen=True)
class Page:
    """One HTML payload as the extract stage receives it."""

    payload: bytes
    charset: str | None
    url: str | None


@dataclass
class PipelineFigures:
    seconds: float
    records: int
    pages: int
    non_empty: int
    failed_pages: int
    units: int
    workers: int
    failed_units: int

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds > 0 else 0.0

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


@dataclass
class LoopFigures:
    seconds: float
    records: int
    pages: int
    non_empty: int

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds > 0 else 0.0


Figures = TypeVar("Figures", PipelineFigures, LoopFigures)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", default=DEFAULT_INPUT, help=f"WARC files (glob); default: {DEFAULT_INPUT}")
    parser.add_argument("--workers", type=int, default=None, help="ray.workers (default: one per CPU)")
    parser.add_argument("--favor", choices=("precision", "balanced", "recall"), default="precision")
    parser.add_argument("--fallback", action="store_true", help="extract.fallback: also run readability/jusText")
    parser.add_argument("--repeat", type=int, default=1, help="runs per side; the best is reported (default 1)")
    parser.add_argument("--copies", type=int, default=1,
                        help="read each input file this many times (copies under new names, so new document ids): "
                        "a bigger job, where start-up weighs less (default 1)")
    parser.add_argument("--json", dest="json_path", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.copies < 1:
        parser.error("--copies must be at least 1")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    return args


def resolve_inputs(pattern: str) -> list[str]:
    files = sorted(os.path.abspath(path) for path in glob.glob(pattern, recursive=True) if os.path.isfile(path))
    if not files:
        sys.exit(f"error: --input {pattern!r} matches no file")
    return files


def multiply_inputs(files: list[str], copies: int, directory: Path) -> list[str]:
    """The inputs plus `copies - 1` hard links (or copies) of each under new names: same pages, new ids."""
    if copies == 1:
        return files
    directory.mkdir()
    multiplied = list(files)
    for copy in range(1, copies):
        for path in files:
            target = directory / f"copy{copy}-{os.path.basename(path)}"
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)
            multiplied.append(str(target))
    return multiplied


def extract_settings(args: argparse.Namespace) -> ExtractConfig:
    return ExtractConfig(favor=args.favor, fallback=args.fallback)


def build_config(files: list[str], output: Path, settings: ExtractConfig, workers: int | None) -> RunConfig:
    return RunConfig.model_validate(
        {
            "name": "bench-extract",
            "input": {"paths": files, "format": "warc"},
            "output": str(output),
            "stages": [{EXTRACT_STAGE: settings.model_dump()}],
            "ray": {"workers": workers},
        }
    )


def stage_tally(result: RunResult, name: str) -> StageTally:
    for tally in result.funnel:
        if tally.stage == name:
            return tally
    return StageTally(name)


def pipeline_figures(result: RunResult, seconds: float, workers: int) -> PipelineFigures:
    extract = stage_tally(result, EXTRACT_STAGE)
    for problem in accounting_problems(result.funnel):
        print(f"  warning: accounting problem: {problem}")
    for unit_id, error in result.failed_units.items():
        print(f"  warning: unit {unit_id} failed: {error.splitlines()[0] if error else '?'}")
    return PipelineFigures(
        seconds=seconds,
        records=records_read(result.funnel),
        pages=extract.rows_in,
        non_empty=extract.kept,
        failed_pages=extract.failed_total,
        units=result.units_total,
        workers=workers,
        failed_units=len(result.failed_units),
    )


def pool_size(config: RunConfig, units: int, cpus: int) -> int:
    """The actor-pool size the runner picks: ray.workers, else one per cluster CPU, never more than the units."""
    return min(units, config.ray.workers or max(1, cpus))


def time_pipeline_with_startup(
    files: list[str], settings: ExtractConfig, args: argparse.Namespace, tmp: Path, run: int
) -> PipelineFigures:
    """run_pipeline with no Ray running: it starts its embedded Ray, and stops it, inside the timing."""
    if ray.is_initialized():
        ray.shutdown()
    config = build_config(files, tmp / f"cold-{run}", settings, args.workers)
    started = time.perf_counter()
    result = run_pipeline(config, show_progress=False)
    seconds = time.perf_counter() - started
    return pipeline_figures(result, seconds, pool_size(config, result.units_total, os.cpu_count() or 1))


def time_pipeline_without_startup(
    files: list[str], settings: ExtractConfig, args: argparse.Namespace, tmp: Path, run: int
) -> PipelineFigures:
    """run_pipeline on an already started Ray (started as the runner would): only the run itself is timed."""
    config = build_config(files, tmp / f"warm-{run}", settings, args.workers)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    started = time.perf_counter()
    result = run_pipeline(config, show_progress=False)
    seconds = time.perf_counter() - started
    return pipeline_figures(result, seconds, pool_size(config, result.units_total, cpus))


def start_ray_like_runner(files: list[str], settings: ExtractConfig, args: argparse.Namespace, tmp: Path) -> float:
    """Start Ray with the runner's own connect function (same arguments); returns the seconds it took."""
    config = build_config(files, tmp / "unused", settings, args.workers)
    started = time.perf_counter()
    connect_ray(None, config.ray.object_store_mb)
    return time.perf_counter() - started


def load_pages(files: list[str], config: RunConfig) -> tuple[list[Page], int]:
    """(HTML pages as the extract stage gets them, number of records read), with the project's reader."""
    options = ReadOptions(
        html_content_types=tuple(config.input.html_content_types),
        max_payload_bytes=int(config.input.max_payload_mb * 1024 * 1024),
    )
    pages: list[Page] = []
    records = 0
    for path in files:
        with open(path, "rb") as fh:
            layout = probe_layout(fh)
            for row in read_archive(fh, path, layout, 0, os.path.getsize(path), options):
                records += 1
                if row["html"] is not None and row["drop_reason"] is None and row["error"] is None:
                    pages.append(Page(row["html"], row["charset"], row["url"]))
    return pages, records


def build_extractor(settings: ExtractConfig) -> Callable:
    return make_extractor(
        favor=settings.favor,
        include_tables=settings.include_tables,
        include_comments=settings.include_comments,
        fallback=settings.fallback,
    )


def time_plain_loop(pages: list[Page], records: int, extract: Callable, min_chars: int) -> LoopFigures:
    """One process, one page after the other, exactly the per-page call of the extract stage."""
    non_empty = 0
    started = time.perf_counter()
    for page in pages:
        text, _encoding = extract(page.payload, page.charset, page.url)
        if text is not None and len(text.strip()) >= min_chars:
            non_empty += 1
    seconds = time.perf_counter() - started
    return LoopFigures(seconds=seconds, records=records, pages=len(pages), non_empty=non_empty)


def best(runs: list[Figures]) -> Figures:
    """The fastest of repeated runs."""
    return min(runs, key=lambda figures: figures.seconds)


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def print_report(
    args: argparse.Namespace,
    files: list[str],
    settings: ExtractConfig,
    cold: PipelineFigures,
    warm: PipelineFigures,
    loop: LoopFigures,
    ray_init_s: float,
) -> None:
    cpus = os.cpu_count() or 1
    print()
    print(f"Input: {len(files)} file(s), {cold.records:,} records, {cold.pages:,} HTML pages "
          f"(plain-loop reader: {loop.records:,} records, {loop.pages:,} pages)")
    print(f"Extraction: favor={settings.favor}, fallback={settings.fallback}, "
          f"include_tables={settings.include_tables}, include_comments={settings.include_comments}; "
          f"best of {args.repeat} run(s) per side")
    print()
    header = f"{'':<34}{'seconds':>10}{'pages/s':>10}{'records/s':>11}{'non-empty':>11}"
    print(header)
    print("-" * len(header))
    print(f"{'pipeline, incl. Ray start-up':<34}{cold.seconds:>10.2f}{cold.pages_per_s:>10.1f}"
          f"{cold.records_per_s:>11.1f}{cold.non_empty:>11,}")
    print(f"{'pipeline, excl. Ray start-up':<34}{warm.seconds:>10.2f}{warm.pages_per_s:>10.1f}"
          f"{warm.records_per_s:>11.1f}{warm.non_empty:>11,}")
    print(f"{'plain loop, 1 process':<34}{loop.seconds:>10.2f}{loop.pages_per_s:>10.1f}{'-':>11}{loop.non_empty:>11,}")
    print()
    print(f"ratio pipeline/plain, excl. start-up: {ratio(warm.pages_per_s, loop.pages_per_s):.2f}")
    print(f"ratio pipeline/plain, incl. start-up: {ratio(cold.pages_per_s, loop.pages_per_s):.2f}")
    print(f"ray.init alone (as the runner does it): {ray_init_s:.2f} s")
    print(f"workers: {warm.workers} (units of work: {warm.units}); CPUs on this machine: {cpus}")
    print(f"documents with non-empty text: pipeline {warm.non_empty:,}, plain loop {loop.non_empty:,} "
          f"(difference {warm.non_empty - loop.non_empty:+d}); pipeline extraction failures: {warm.failed_pages}")
    if warm.failed_units or cold.failed_units:
        print(f"WARNING: failed units: {cold.failed_units} (incl. start-up run), "
              f"{warm.failed_units} (excl. start-up run)")
    ideal = min(warm.workers, cpus)
    print(f"Note: with N workers on N cores the ideal ratio is about N (here {warm.workers} worker(s) on {cpus} "
          f"CPU(s), so about {ideal}); the gap to it is the framework's overhead.")


def figures_json(
    args: argparse.Namespace, files: list[str], settings: ExtractConfig,
    cold: PipelineFigures, warm: PipelineFigures, loop: LoopFigures, ray_init_s: float,
) -> dict:
    def with_rates(figures: PipelineFigures | LoopFigures) -> dict:
        values = asdict(figures)
        values["seconds"] = round(figures.seconds, 3)
        values["pages_per_s"] = round(figures.pages_per_s, 3)
        if isinstance(figures, PipelineFigures):
            values["records_per_s"] = round(figures.records_per_s, 3)
        return values

    return {
        "input": files,
        "extract": settings.model_dump(),
        "repeat": args.repeat,
        "cpu_count": os.cpu_count(),
        "workers": warm.workers,
        "ray_init_seconds": round(ray_init_s, 3),
        "pipeline_incl_startup": with_rates(cold),
        "pipeline_excl_startup": with_rates(warm),
        "plain_loop": with_rates(loop),
        "ratio_excl_startup": round(ratio(warm.pages_per_s, loop.pages_per_s), 4),
        "ratio_incl_startup": round(ratio(cold.pages_per_s, loop.pages_per_s), 4),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = extract_settings(args)
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp_name:
        tmp = Path(tmp_name)
        files = multiply_inputs(resolve_inputs(args.input), args.copies, tmp / "copies")
        print(f"Pipeline incl. Ray start-up ({args.repeat} run(s))...", flush=True)
        cold = best([time_pipeline_with_startup(files, settings, args, tmp, run) for run in range(args.repeat)])
        print(f"Pipeline excl. Ray start-up ({args.repeat} run(s))...", flush=True)
        ray_init_s = start_ray_like_runner(files, settings, args, tmp)
        try:
            warm = best([time_pipeline_without_startup(files, settings, args, tmp, run) for run in range(args.repeat)])
        finally:
            disconnect_ray()
        print(f"Plain loop ({args.repeat} run(s))...", flush=True)
        pages, records = load_pages(files, build_config(files, tmp / "unused", settings, args.workers))
        extract = build_extractor(settings)
        loop = best([time_plain_loop(pages, records, extract, settings.min_chars) for _ in range(args.repeat)])
    print_report(args, files, settings, cold, warm, loop, ray_init_s)
    if args.json_path:
        figures = figures_json(args, files, settings, cold, warm, loop, ray_init_s)
        Path(args.json_path).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"Figures written to {args.json_path}")


if __name__ == "__main__":
    main()
