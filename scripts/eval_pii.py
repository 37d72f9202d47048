"""Evaluate the PII stage: span precision, recall and F1 per type on Presidio's own labelled sentences, and
(with --pages) its throughput on real extracted pages against a plain-regex baseline.

Data: ../shared/data/pii/presidio_research/synth_dataset_v2.dev.json (750 synthetic sentences from
microsoft/presidio-research, MIT; every value is fake). Each gold span has an `entity_type` (EMAIL_ADDRESS,
PHONE_NUMBER, IP_ADDRESS, CREDIT_CARD, IBAN_CODE, US_SSN, and types this stage does not look for, such as PERSON)
and end-exclusive character offsets.

The stage's `Pii.find` gives the spans it would replace (after overlap resolution) for each sentence, and for each
of our types:
- overlap rule (the acceptance figure): a predicted span is correct when it overlaps a gold span of the same type;
  a gold span is found when a predicted span of the same type overlaps it.
- exact rule: the same, with identical start and end.
precision = correct predicted / predicted, recall = found gold / gold (support), F1 their harmonic mean. A span we
predict over text the data labels with another type (a driver's licence read as a phone) counts against precision.

Throughput (--pages GLOB: Parquet files with a `text` column, e.g. a run's documents/*.parquet after `extract`):
documents per second of `Pii.process` on Arrow batches of 256 (Arrow conversions included, as the pipeline calls
it), and of the baseline, a plain-regex pass that replaces e-mails and IPv4 addresses in the same texts, as Python
strings (no Arrow, which favours the baseline). One process, one core, best of --repeat runs, stage built first.

    python scripts/eval_pii.py [--data PATH] [--errors] [--pages GLOB] [--repeat N]
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schema import TEXT
from stages.pii import OUR_ENTITIES, PRESIDIO_ENTITIES, Match, Pii, PiiConfig

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pii" / "presidio_research"
    / "synth_dataset_v2.dev.json"
)
BASELINE_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
BASELINE_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
BATCH_ROWS = 256


@dataclass
class TypeScore:
    """Counts for one type under one matching rule."""

    support: int = 0  # gold spans
    predicted: int = 0
    correct: int = 0  # predicted spans that match a gold span
    found: int = 0  # gold spans matched by a predicted span
    misses: list[str] = field(default_factory=list)  # gold values not found
    false_alarms: list[str] = field(default_factory=list)  # predicted values matching no gold span

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.found / self.support if self.support else 1.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def score(examples: list[dict], predictions: list[list[Match]]) -> dict[str, dict[str, TypeScore]]:
    """{"overlap" | "exact": {type: TypeScore}} for our six types, from gold examples and the stage's matches."""
    rules = {"overlap": overlaps, "exact": lambda a, b: a == b}
    scores = {rule: {name: TypeScore() for name in PRESIDIO_ENTITIES} for rule in rules}
    for example, matches in zip(examples, predictions, strict=True):
        text = example["full_text"]
        for name in PRESIDIO_ENTITIES:
            gold = [
                (span["start_position"], span["end_position"])
                for span in example["spans"]
                if OUR_ENTITIES.get(span["entity_type"]) == name
            ]
            predicted = [(match.start, match.end) for match in matches if match.entity == name]
            for rule, same in rules.items():
                tally = scores[rule][name]
                tally.support += len(gold)
                tally.predicted += len(predicted)
                for span in predicted:
                    if any(same(span, g) for g in gold):
                        tally.correct += 1
                    else:
                        tally.false_alarms.append(text[span[0] : span[1]])
                for g in gold:
                    if any(same(span, g) for span in predicted):
                        tally.found += 1
                    else:
                        tally.misses.append(text[g[0] : g[1]])
    return scores


def load_examples(path: Path = DEFAULT_DATA) -> list[dict]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def evaluate(path: Path = DEFAULT_DATA, config: PiiConfig | None = None) -> dict[str, dict[str, TypeScore]]:
    """Run the stage (default settings unless given) over the labelled sentences and score it."""
    examples = load_examples(path)
    stage = Pii(config or PiiConfig())
    try:
        predictions = [stage.find(example["full_text"]) or [] for example in examples]
    finally:
        stage.close()
    return score(examples, predictions)


def report(scores: dict[str, dict[str, TypeScore]], errors: bool = False) -> str:
    lines = [f"{'type':<12} {'support':>7}  {'overlap P':>9} {'R':>6} {'F1':>6}   {'exact P':>7} {'R':>6} {'F1':>6}"]
    for name in PRESIDIO_ENTITIES:
        loose, exact = scores["overlap"][name], scores["exact"][name]
        lines.append(
            f"{name:<12} {loose.support:>7}  {loose.precision:>9.3f} {loose.recall:>6.3f} {loose.f1:>6.3f}"
            f"   {exact.precision:>7.3f} {exact.recall:>6.3f} {exact.f1:>6.3f}"
        )
    if errors:
        for name in PRESIDIO_ENTITIES:
            loose = scores["overlap"][name]
            lines += [f"{name} missed: {loose.misses}", f"{name} false alarms: {loose.false_alarms}"]
    return "\n".join(lines)


def regex_baseline(texts: list[str]) -> list[str]:
    return [BASELINE_IPV4.sub("<IP_ADDRESS>", BASELINE_EMAIL.sub("<EMAIL>", text)) for text in texts]


def throughput(texts: list[str], config: PiiConfig | None = None, repeat: int = 3) -> dict[str, float]:
    """Documents per second of the stage and of the regex baseline on the same texts (best of `repeat`), and how
    many of the texts reach Presidio at all."""
    stage = Pii(config or PiiConfig())
    batches = [
        pa.table({TEXT: pa.array(texts[start : start + BATCH_ROWS], pa.string())})
        for start in range(0, len(texts), BATCH_ROWS)
    ]
    stage_seconds, baseline_seconds = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        for batch in batches:
            stage(batch)
        stage_seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        regex_baseline(texts)
        baseline_seconds.append(time.perf_counter() - started)
    reaching = 0
    for text in texts:
        calls = stage.analyzer_calls
        stage.find(text)
        reaching += stage.analyzer_calls > calls
    stage.close()
    return {
        "documents": len(texts),
        "characters": sum(len(text) for text in texts),
        "documents_reaching_presidio": reaching,
        "stage_docs_per_s": round(len(texts) / min(stage_seconds), 1),
        "baseline_docs_per_s": round(len(texts) / min(baseline_seconds), 1),
        "ratio": round(min(baseline_seconds) / min(stage_seconds), 3),
    }


def read_texts(pattern: str) -> list[str]:
    """The non-empty `text` values of the Parquet files matching a glob."""
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise SystemExit(f"no Parquet files match {pattern}")
    return [text for path in paths for text in pq.read_table(path, columns=[TEXT]).column(TEXT).to_pylist() if text]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labelled JSON (presidio-research format)")
    parser.add_argument("--errors", action="store_true", help="also list missed and falsely predicted values")
    parser.add_argument("--pages", help="glob of Parquet files with a text column: also measure throughput on them")
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs; the best is reported")
    args = parser.parse_args()
    print(report(evaluate(args.data), errors=args.errors))
    if args.pages:
        print(json.dumps(throughput(read_texts(args.pages), repeat=args.repeat), indent=2))


if __name__ == "__main__":
    main()
