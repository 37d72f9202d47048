"""Evaluate the PII stage: span precision, recall and F1 per type on Presidio's own labelled sentences, on sentences
made from the same templates with fresh fake values (--templates), and (with --pages) its throughput on real extracted
pages against a plain-regex baseline.

Data: ../shared/data/pii/presidio_research/synth_dataset_v2.dev.json (750 synthetic sentences from
microsoft/presidio-research, MIT; every value is fake). Each gold span has an `entity_type` (EMAIL_ADDRESS,
PHONE_NUMBER, IP_ADDRESS, CREDIT_CARD, IBAN_CODE, US_SSN, and types this stage does not look for, such as PERSON)
and end-exclusive character offsets.

--templates N: N more sentences from the templates beside it (templates.txt), each filled by Faker (pip install
faker; seeded) in one of TEMPLATE_LOCALES: phone numbers, addresses, postcodes and IBANs of that country, cards and
SSNs as Faker makes them. Held out from the tuning on the dev sentences; scored twice, on the text alone and with
the locale's language and a URL under its country's TLD as the document's `lang` and `url` (the phone regions the
stage infers). Faker writes some phone numbers that no numbering plan holds (libphonenumber calls them invalid);
they count as phones all the same.

The stage's `Pii.find` gives the spans it would replace (after overlap resolution) for each sentence, and for each
of our types:
- overlap rule (the acceptance figure): a predicted span is correct when it overlaps a gold span of the same type;
  a gold span is found when a predicted span of the same type overlaps it.
- exact rule: the same, with identical start and end.
precision = correct predicted / predicted, recall = found gold / gold (support), F1 their harmonic mean. A span we
predict over text the data labels with another type (a driver's licence read as a phone) counts against precision.

Throughput (--pages GLOB: Parquet files with a `text` column, e.g. a run's documents/*.parquet after `extract`;
their `lang` and `url` columns go along when present): documents per second of `Pii.process` on Arrow batches of 256
(Arrow conversions included, as the pipeline calls it), and of the baseline, a plain-regex pass that replaces
e-mails and IPv4 addresses in the same texts, as Python strings (no Arrow, which favours the baseline). One process,
one core, best of --repeat runs, stage built first.

    python scripts/eval_pii.py [--data PATH] [--errors] [--templates N] [--seed S] [--pages GLOB] [--repeat N]
"""

from __future__ import annotations

import argparse
import glob
import json
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.schema import TEXT
from stages.pii import LANGUAGE_COLUMN, OUR_ENTITIES, PRESIDIO_ENTITIES, URL_COLUMN, Match, Pii, PiiConfig

DEFAULT_DATA = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pii" / "presidio_research"
    / "synth_dataset_v2.dev.json"
)
TEMPLATES = DEFAULT_DATA.parent / "templates.txt"
TEMPLATE_LOCALES = (
    "en_US", "en_GB", "en_AU", "en_IE", "de_DE", "de_AT", "de_CH", "fr_FR", "fr_CH", "nl_NL", "nl_BE", "it_IT",
    "es_ES", "pt_PT", "pt_BR", "pl_PL", "da_DK", "sv_SE", "no_NO", "fi_FI", "cs_CZ",
)
GOLD_TYPES = {  # template placeholders that hold one of our types, and the type's name in the labelled data
    "email": "EMAIL_ADDRESS",
    "phone_number": "PHONE_NUMBER",
    "ip_address": "IP_ADDRESS",
    "credit_card_number": "CREDIT_CARD",
    "iban": "IBAN_CODE",
    "ssn": "US_SSN",
}
# Placeholders that are no Faker provider of that name; the rest are (name, city, postcode, building_number, ...).
FAKER_CALLS = {
    "person": lambda fake: fake.name(),
    "organization": lambda fake: fake.company(),
    "ip_address": lambda fake: fake.ipv4_public(),
    "ssn": lambda fake: fake.ssn(),  # called on the en_US faker: US SSNs
    "age": lambda fake: str(fake.random_int(18, 90)),
    "date_time": lambda fake: fake.date_time().strftime("%Y-%m-%d %H:%M:%S"),  # as in the dev sentences
    "zipcode": lambda fake: fake.postcode(),
    "nationality": lambda fake: fake.country(),
    "nation_woman": lambda fake: fake.country(),
    "nation_plural": lambda fake: fake.country(),
    "us_driver_license": lambda fake: fake.bothify("?#######").upper(),
}
PLACEHOLDER = re.compile(r"{{(\w+)}}")
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
    """Run the stage (default settings unless given) over the labelled sentences of a file and score it."""
    return evaluate_examples(load_examples(path), config)


def evaluate_examples(
    examples: list[dict], config: PiiConfig | None = None, with_regions: bool = False
) -> dict[str, dict[str, TypeScore]]:
    """Score the stage on labelled sentences; `with_regions`: each sentence's `language` and `url` give the phone
    regions, as a document's lang and url columns do."""
    stage = Pii(config or PiiConfig())
    try:
        predictions = [
            stage.find(
                example["full_text"],
                stage.document_regions(example.get("language"), example.get("url")) if with_regions else None,
            )
            or []
            for example in examples
        ]
    finally:
        stage.close()
    return score(examples, predictions)


def template_examples(count: int, seed: int = 0, path: Path = TEMPLATES) -> list[dict]:
    """`count` labelled sentences from presidio-research's templates, filled by Faker in TEMPLATE_LOCALES (one
    locale a sentence, seeded): the dev file's format, plus the locale's `language` and a `url` under its TLD."""
    try:
        from faker import Faker
    except ImportError:
        raise SystemExit("--templates needs Faker: pip install faker") from None
    templates = [line.strip().replace("\\n", "\n") for line in Path(path).read_text(encoding="utf-8").splitlines()]
    templates = [template for template in templates if template]
    choose = random.Random(seed)
    fakers = {locale: Faker(locale) for locale in TEMPLATE_LOCALES}
    for offset, fake in enumerate(fakers.values()):
        fake.seed_instance(seed + offset)
    examples = []
    for _ in range(count):
        locale = choose.choice(TEMPLATE_LOCALES)
        fake, template = fakers[locale], choose.choice(templates)
        pieces, spans, position = [], [], 0
        for placeholder in PLACEHOLDER.finditer(template):
            pieces.append(template[position : placeholder.start()])
            name = placeholder.group(1).lower()
            value = fake_value(fakers["en_US"] if name == "ssn" else fake, fakers["en_US"], name)
            start = sum(len(piece) for piece in pieces)
            if name in GOLD_TYPES:
                spans.append({"entity_type": GOLD_TYPES[name], "entity_value": value, "start_position": start,
                              "end_position": start + len(value)})
            pieces.append(value)
            position = placeholder.end()
        pieces.append(template[position:])
        language, country = locale.split("_")
        examples.append({"full_text": "".join(pieces), "spans": spans, "language": language,
                         "url": f"https://www.example.{'uk' if country == 'GB' else country.lower()}/"})
    return examples


def fake_value(fake, fallback, name: str) -> str:
    """A value for a template placeholder: FAKER_CALLS, or the Faker provider of that name in the sentence's locale,
    or in en_US where the locale has none (state_abbr, secondary_address, ...)."""
    if name in FAKER_CALLS:
        return FAKER_CALLS[name](fake)
    provider = getattr(fake, name, None) or getattr(fallback, name)
    return str(provider())


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


def throughput(table: pa.Table, config: PiiConfig | None = None, repeat: int = 3) -> dict[str, float]:
    """Documents per second of the stage and of the regex baseline on the same documents (best of `repeat`), and
    how many of them have stretches to analyse at all."""
    stage = Pii(config or PiiConfig())
    texts = table.column(TEXT).to_pylist()
    batches = [table.slice(start, BATCH_ROWS) for start in range(0, table.num_rows, BATCH_ROWS)]
    stage_seconds, baseline_seconds = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        for batch in batches:
            stage(batch)
        stage_seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        regex_baseline(texts)
        baseline_seconds.append(time.perf_counter() - started)
    analysed = 0
    for text in texts:
        calls = stage.analyzer_calls
        stage.find(text)
        analysed += stage.analyzer_calls > calls
    stage.close()
    return {
        "documents": len(texts),
        "characters": sum(len(text) for text in texts),
        "columns": table.column_names,
        "documents_analysed": analysed,
        "stage_docs_per_s": round(len(texts) / min(stage_seconds), 1),
        "baseline_docs_per_s": round(len(texts) / min(baseline_seconds), 1),
        "ratio": round(min(baseline_seconds) / min(stage_seconds), 3),
    }


def read_documents(pattern: str) -> pa.Table:
    """The rows with a non-empty `text` of the Parquet files matching a glob, with their `lang` and `url` where the
    files have them."""
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise SystemExit(f"no Parquet files match {pattern}")
    tables = []
    for path in paths:
        names = pq.read_schema(path).names
        columns = [name for name in (TEXT, LANGUAGE_COLUMN, URL_COLUMN) if name in names]
        tables.append(pq.read_table(path, columns=columns))
    table = pa.concat_tables(tables, promote_options="default")
    texts = table.column(TEXT)
    return table.filter(pc.fill_null(pc.greater(pc.utf8_length(texts), 0), False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labelled JSON (presidio-research format)")
    parser.add_argument("--errors", action="store_true", help="also list missed and falsely predicted values")
    parser.add_argument("--templates", type=int, default=0, help="also score N sentences filled from the templates")
    parser.add_argument("--seed", type=int, default=0, help="seed of the template sentences")
    parser.add_argument("--pages", help="glob of Parquet files with a text column: also measure throughput on them")
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs; the best is reported")
    args = parser.parse_args()
    print(f"{args.data.name}:")
    print(report(evaluate(args.data), errors=args.errors))
    if args.templates:
        examples = template_examples(args.templates, args.seed)
        for with_regions, how in ((False, "text only"), (True, "with the locale's lang and url")):
            print(f"\n{args.templates} template sentences (seed {args.seed}), {how}:")
            print(report(evaluate_examples(examples, with_regions=with_regions), errors=args.errors))
    if args.pages:
        print(json.dumps(throughput(read_documents(args.pages), repeat=args.repeat), indent=2))


if __name__ == "__main__":
    main()
