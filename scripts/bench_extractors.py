"""Benchmark: the extract stage's engines side by side, for speed and for quality on trafilatura's evaluation set.

Input: ../shared/data/extraction/trafilatura_eval. evaldata.json maps each page's URL to its file, the "with"
snippets that must be in the main text and the "without" snippets (boilerplate) that must not. The 990 HTML files
are read from trafilatura-eval.tar.xz into memory when the script starts (never unpacked to disk), from cache/
first, then eval/, as trafilatura's own evaluation finds them.

Every configuration (each engine with favor precision, balanced and recall; the other settings at the stage's
defaults) runs through the stage's own per-page function, `stages.extract.make_extractor` (decode_html, then the
engine), in this one single-threaded process: one core, no sandbox, no time limit, no Ray.

- Speed: pages per second over all pages, the fastest of --passes passes, by this process's CPU time (pages/CPU-s:
  the rate on a core of its own, far less disturbed than the wall clock by other work on the machine) and by the
  wall clock (pages/s).
- Quality, as trafilatura's evaluation scores it (tests/eval_common.py there): a snippet counts as found when it is
  a substring of the text, both with white space collapsed. A "with" snippet found is a true positive, missing a
  false negative; a "without" snippet found is a false positive, absent a true negative (a page without text
  counts all its "with" snippets missing, all its "without" absent). precision = tp / (tp + fp),
  recall = tp / (tp + fn), F1 their harmonic mean, accuracy = (tp + tn) / all snippets.
- no_text: pages the stage would drop as no_text (text shorter than min_chars).
- The stage runs trafilatura with stand-ins for its XPath selectors (stages/trafilatura_selectors.py); each
  trafilatura configuration is also run as plain trafilatura (engine `trafilatura-xpath`, its own selectors, the same
  settings), and `differ` counts the pages whose text is not the same as the stage's.

This is a benchmark, not a test: it asserts nothing.

    python scripts/bench_extractors.py [--engines trafilatura resiliparse] [--passes N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, get_args

from stages.extract import ExtractConfig, make_extractor
from stages.trafilatura_selectors import install, uninstall

EVAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "extraction" / "trafilatura_eval"
ENGINES = get_args(ExtractConfig.model_fields["engine"].annotation)
FAVORS = get_args(ExtractConfig.model_fields["favor"].annotation)
_WHITE_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class EvalPage:
    """One page of the evaluation set: its bytes and its gold snippets."""

    url: str
    payload: bytes
    with_snippets: tuple[str, ...]
    without_snippets: tuple[str, ...]


@dataclass
class Figures:
    engine: str
    favor: str
    pages: int
    cpu_seconds: float  # of this process: the time on one core, whatever else the machine runs
    seconds: float  # wall clock
    no_text: int
    differ: int = 0  # pages whose text differs from the stage's (plain trafilatura rows)
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @property
    def pages_per_cpu_s(self) -> float:
        return quotient(self.pages, self.cpu_seconds)

    @property
    def pages_per_s(self) -> float:
        return quotient(self.pages, self.seconds)

    @property
    def precision(self) -> float:
        return quotient(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return quotient(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return quotient(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def accuracy(self) -> float:
        return quotient(self.tp + self.tn, self.tp + self.fp + self.fn + self.tn)


def quotient(numerator: float, denominator: float) -> float:
    """numerator / denominator, 0 for an empty denominator (no pages timed, no snippets of a kind)."""
    return numerator / denominator if denominator > 0 else 0.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval-dir", type=Path, default=EVAL_DIR, help=f"default: {EVAL_DIR}")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--passes", type=int, default=3, help="timed passes per configuration; the best counts")
    parser.add_argument("--json", dest="json_path", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.passes < 1:
        parser.error("--passes must be at least 1")
    return args


def load_eval_pages(eval_dir: Path) -> list[EvalPage]:
    """The evaluation pages in evaldata.json's order, their HTML read from the tar archive."""
    gold = json.loads((eval_dir / "evaldata.json").read_text(encoding="utf-8"))
    with tarfile.open(eval_dir / "trafilatura-eval.tar.xz", "r:xz") as archive:
        html_by_member = {member.name: archive.extractfile(member).read() for member in archive if member.isfile()}
    pages = []
    for url, item in gold.items():
        payload = html_by_member.get(f"cache/{item['file']}", html_by_member.get(f"eval/{item['file']}"))
        if payload is None:
            raise SystemExit(f"error: {item['file']} (for {url}) is not in the archive")
        pages.append(EvalPage(url, payload, tuple(item["with"]), tuple(item["without"])))
    return pages


def collapse(text: str) -> str:
    return _WHITE_SPACE.sub(" ", text).strip()


def score(figures: Figures, pages: list[EvalPage], texts: list[str | None]) -> None:
    """Add the snippet counts of every page to `figures`."""
    for page, text in zip(pages, texts):
        found_in = collapse(text or "")
        kept = sum(collapse(snippet) in found_in for snippet in page.with_snippets)
        leaked = sum(collapse(snippet) in found_in for snippet in page.without_snippets)
        figures.tp += kept
        figures.fn += len(page.with_snippets) - kept
        figures.fp += leaked
        figures.tn += len(page.without_snippets) - leaked


def extract_all(extract: Callable, pages: list[EvalPage],
                own_selectors: bool = False) -> tuple[list[str | None], float, float]:
    """(texts, CPU seconds, wall seconds) of one pass of the stage's per-page function over all pages;
    `own_selectors`: as plain trafilatura, with its own XPath selectors for the whole pass."""
    if own_selectors:
        uninstall()
    try:
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        texts = [extract(page.payload, None, page.url)[0] for page in pages]
        return texts, time.process_time() - cpu_started, time.perf_counter() - wall_started
    finally:
        install()


def measure(configurations: list[ExtractConfig], pages: list[EvalPage], passes: int) -> list[Figures]:
    """`passes` rounds, each one pass of every configuration in turn (so that a busy spell of the machine weighs on
    all of them alike); the fastest pass of each counts. The texts of the first pass are scored; each trafilatura
    configuration is followed by plain trafilatura with the same settings."""
    runs: list[tuple[str, ExtractConfig, Callable]] = []
    for settings in configurations:
        extract = make_extractor(**settings.extractor_options())
        runs.append((settings.engine, settings, extract))
        if settings.engine == "trafilatura":
            runs.append(("trafilatura-xpath", settings, extract))
    for _, _, extract in runs:  # lazy imports and caches, outside the timing
        extract(b"<html><body><p>warm-up</p></body></html>", None, None)
    rows = []
    stage_texts: dict[str, list] = {}
    for engine, settings, extract in runs:
        print(f"{engine}, favor={settings.favor}: pass 1 of {passes}...", flush=True)
        texts, cpu_seconds, seconds = extract_all(extract, pages, own_selectors=engine == "trafilatura-xpath")
        no_text = sum(text is None or len(text.strip()) < settings.min_chars for text in texts)
        reference = stage_texts.setdefault(settings.favor, texts) if engine.startswith("trafilatura") else texts
        differ = sum(ours != theirs for ours, theirs in zip(reference, texts))
        rows.append(Figures(engine, settings.favor, len(pages), cpu_seconds, seconds, no_text, differ))
        score(rows[-1], pages, texts)
    for round_number in range(2, passes + 1):
        print(f"round {round_number} of {passes}...", flush=True)
        for row, (engine, _, extract) in zip(rows, runs):
            _, cpu_seconds, seconds = extract_all(extract, pages, own_selectors=engine == "trafilatura-xpath")
            row.cpu_seconds, row.seconds = min(row.cpu_seconds, cpu_seconds), min(row.seconds, seconds)
    return rows


def print_table(rows: list[Figures], passes: int) -> None:
    header = (f"{'engine':<19}{'favor':<11}{'pages/CPU-s':>12}{'pages/s':>9}{'precision':>11}{'recall':>8}{'F1':>7}"
              f"{'accuracy':>10}{'no_text':>9}{'differ':>8}")
    print()
    print(f"{rows[0].pages} pages, one process on one core, fastest of {passes} pass(es)")
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row.engine:<19}{row.favor:<11}{row.pages_per_cpu_s:>12.1f}{row.pages_per_s:>9.1f}"
              f"{row.precision:>11.3f}{row.recall:>8.3f}{row.f1:>7.3f}{row.accuracy:>10.3f}{row.no_text:>9}"
              f"{row.differ:>8}")


def figures_json(rows: list[Figures], passes: int) -> dict:
    def with_scores(row: Figures) -> dict:
        values = asdict(row)
        for name in ("cpu_seconds", "seconds"):
            values[name] = round(values[name], 3)
        for name in ("pages_per_cpu_s", "pages_per_s", "precision", "recall", "f1", "accuracy"):
            values[name] = round(getattr(row, name), 4)
        return values

    return {"passes": passes, "cpu_count": os.cpu_count(), "configurations": [with_scores(row) for row in rows]}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    pages = load_eval_pages(args.eval_dir)
    print(f"{len(pages)} pages, {sum(len(p.with_snippets) for p in pages)} 'with' and "
          f"{sum(len(p.without_snippets) for p in pages)} 'without' snippets", flush=True)
    configurations = [ExtractConfig(engine=engine, favor=favor) for engine in args.engines for favor in FAVORS]
    rows = measure(configurations, pages, args.passes)
    print_table(rows, args.passes)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(figures_json(rows, args.passes), indent=2) + "\n", encoding="utf-8")
        print(f"Figures written to {args.json_path}")


if __name__ == "__main__":
    main()
