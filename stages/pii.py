"""PII: e-mails, phones, public IPs, cards, IBANs and US SSNs replaced by typed placeholders, counted per document.

The entities are found with Presidio's pattern recognizers and replaced by `<EMAIL>`, `<PHONE>`, ...; the counts per
type are columns, and a document holding more than `max_pii` of them is dropped as `too_much_pii`.

No spaCy model is needed: Presidio's analyzer runs its pattern recognizers on the NoOp NLP engine (an installed spaCy
pipeline can be configured instead; nothing is ever downloaded, and the public-suffix list is tldextract's bundled
copy). Validation is Presidio's: Luhn for cards, the ISO 13616 checksum and country format for IBANs, `ipaddress`
for IPs, a known top-level domain for e-mails, libphonenumber for phones. On top of it this stage keeps only public
IPs, grades phone numbers (one that is valid and grouped as written in one of `phone_regions` passes alone, one that
is only possible needs a phone word near it), and resolves overlaps between types so that each character is
replaced at most once.

Speed: most web pages hold no PII, and Presidio is slow on long text. Cheap regular expressions first find the
stretches of text that could hold an entity ('@' before a word character, 7+ digits with separators that are not a
date, dotted quads, colon-separated hex groups, an upper-case country code with check digits and groups). Presidio
analyses only those stretches, widened to whole words, and only for the types they can hold; a document without any
never reaches it. The context words Presidio's enhancer looks for ("tel", "ssn", ...) are taken from the stretch and
`CONTEXT_REACH` characters around it and passed to it explicitly. A document whose stretches add up to more than
`max_candidate_chars` (a table of numbers, a dump) is dropped unanalysed: phone matching reads about 15,000 such
characters a second.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import regex
from pydantic import Field, field_validator

from pipeline.schema import TEXT
from stages.base import Decision, Stage, StageConfig, StageSetupError, set_columns, with_outcome

EntityName = Literal["email", "phone", "ip", "credit_card", "iban", "us_ssn"]

# Our names for the types, and Presidio's.
PRESIDIO_ENTITIES: dict[str, str] = {
    "email": "EMAIL_ADDRESS",
    "phone": "PHONE_NUMBER",
    "ip": "IP_ADDRESS",
    "credit_card": "CREDIT_CARD",
    "iban": "IBAN_CODE",
    "us_ssn": "US_SSN",
}
OUR_ENTITIES = {presidio: ours for ours, presidio in PRESIDIO_ENTITIES.items()}
DEFAULT_PLACEHOLDERS: dict[str, str] = {
    "email": "<EMAIL>",
    "phone": "<PHONE>",
    "ip": "<IP_ADDRESS>",
    "credit_card": "<CREDIT_CARD>",
    "iban": "<IBAN>",
    "us_ssn": "<US_SSN>",
}
COUNT_COLUMNS = {name: f"pii_{name}" for name in PRESIDIO_ENTITIES}
TOTAL_COLUMN = "pii_total"

_SEPARATOR = r"[ \t\u00a0().\-/\u2013]"  # what may stand between the digits of a phone, card or SSN


@dataclass(frozen=True)
class CandidateKind:
    """Stretches of text that may hold entities of `types`: matches of `pattern` that do not fully match `unless`.

    A match must hold enough of an entity that, widened to whole words, it holds all of it; and the pattern must be
    cheap on text without any, as it reads every document (the `regex` module scans these faster than `re`).
    """

    pattern: regex.Pattern
    types: tuple[str, ...]
    unless: regex.Pattern | None = None


CANDIDATES: dict[str, CandidateKind] = {
    "email": CandidateKind(regex.compile(r"@\w"), ("email",)),
    # 7+ digits with at most 3 separators between two of them, unless a date (13.10.2021, 2021-10-13) or years.
    "digits": CandidateKind(
        regex.compile(rf"\d(?:{_SEPARATOR}{{0,3}}\d){{6,}}"),
        ("phone", "credit_card", "us_ssn"),
        unless=regex.compile(
            r"\d{1,2}([./-])\d{1,2}\1(?:19|20)\d\d|(?:19|20)\d\d([./-])\d{1,2}\2\d{1,2}"
            r"|(?:19|20)\d\d ?[-/\u2013] ?(?:19|20)\d\d"
        ),
    ),
    "ipv4": CandidateKind(regex.compile(r"\.\d{1,3}\.\d{1,3}\."), ("ip",)),  # the middle of a dotted quad
    # '::' or three colons around hex groups (a time, 12:30:45, has two).
    "ipv6": CandidateKind(regex.compile(r":(?::|[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:)"), ("ip",)),
    "iban": CandidateKind(regex.compile(r"[A-Z]{2}\d\d(?:[ -]?[A-Z0-9]{4}){2,7}(?:[ -]?[A-Z0-9]{1,3})?"), ("iban",)),
}
WORD_REACH = 100  # a stretch widens to whole words, by at most this many characters on each side
CONTEXT_REACH = 40  # context words are looked for in a stretch and this many characters around it
MIN_PHONE_DIGITS = 7  # shorter "possible numbers" are house numbers, years and prices
WELL_FORMED_PHONE_SCORE = 0.5  # valid in a region, national prefix where it writes one, grouped as it groups digits
POSSIBLE_PHONE_SCORE = 0.4  # Presidio's PhoneRecognizer.SCORE: a possible number (right length) in a region
PREFERENCE = ("credit_card", "iban", "email", "ip", "us_ssn", "phone")  # the last tie-break between overlapping types
WORDS = regex.compile(r"[^\W\d_]+")


class PiiConfig(StageConfig):
    entities: list[EntityName] = Field(
        default_factory=lambda: list(PRESIDIO_ENTITIES),
        min_length=1,
        description="Types to find: email, phone, ip (public addresses only), credit_card (Luhn-checked), iban "
        "(checksum-checked), us_ssn. Counts of the others stay 0.",
    )
    placeholders: dict[EntityName, str] = Field(
        default_factory=lambda: dict(DEFAULT_PLACEHOLDERS),
        description="Replacement text per type; types not listed keep their default (<EMAIL>, <PHONE>, "
        "<IP_ADDRESS>, <CREDIT_CARD>, <IBAN>, <US_SSN>).",
    )
    max_pii: int | None = Field(
        20,
        ge=0,
        description="Documents with more matches than this (all types together) are dropped as too_much_pii "
        "(contact lists, leaked dumps); null: never drop.",
    )
    max_candidate_chars: int | None = Field(
        50_000,
        ge=0,
        description="Documents whose candidate stretches add up to more characters than this are dropped as "
        "too_many_pii_candidates without analysis (number tables, dumps: about 3 s each at this size); their counts "
        "are null. Null: analyse every document, however long it takes.",
    )
    phone_regions: list[str] = Field(
        default_factory=lambda: ["US", "GB", "DE", "FR", "ES", "IT"],
        min_length=1,
        description="Regions (ISO 3166 codes) whose national number formats are recognised (Presidio "
        "PhoneRecognizer supported_regions); numbers written with +country code are found whatever the list, and "
        "so are numbers of other regions with a phone word near them. Each region costs one more libphonenumber "
        "pass over every phone candidate, and a region without a "
        "national trunk prefix (PL, ...) makes many plain digit groups valid numbers.",
    )
    phone_context: list[str] = Field(
        default_factory=lambda: [
            "phone", "telephone", "cellphone", "mobile", "cell", "call", "fax", "sms", "whatsapp", "hotline",
            "contact", "tel", "tél", "tlf", "tfn", "telefon", "telefonnummer", "rufnummer", "handy", "mobil",
            "mobilnummer", "festnetz", "telefax", "téléphone", "portable", "teléfono", "móvil", "celular", "telefone",
            "telefono", "cellulare", "telefoon", "mobiel", "komórka", "kom", "телефон", "тел",
        ],
        description="Whole words (any case) that, in a phone candidate's stretch or within 40 characters of it, "
        "raise its score by 0.35: a number that is only possible (not valid and grouped as written in one of "
        "phone_regions) needs one to pass the default threshold.",
    )
    score_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Presidio score a match needs. Checksum-validated cards and IBANs and TLD-checked e-mails score "
        "1.0, IPs 0.6, SSNs 0.5, well-formed phones 0.5, possible phones 0.4; a context word adds 0.35.",
    )
    replace: bool = Field(True, description="Replace matches in `text` by their placeholder; false: only count.")
    ner_model: str | None = Field(
        None,
        description="An installed spaCy pipeline (package name or directory) to use as Presidio's NLP engine, for "
        "its tokens and lemmas as context; never downloaded. Null: no NLP model (Presidio's NoOp engine).",
    )

    @field_validator("placeholders")
    @classmethod
    def _keep_default_placeholders(cls, placeholders: dict[str, str]) -> dict[str, str]:
        return {**DEFAULT_PLACEHOLDERS, **placeholders}

    @field_validator("phone_regions")
    @classmethod
    def _known_regions(cls, regions: list[str]) -> list[str]:
        import phonenumbers

        regions = [region.upper() for region in regions]
        unknown = sorted(set(regions) - phonenumbers.SUPPORTED_REGIONS)
        if unknown:
            raise ValueError(f"unknown regions {unknown} (libphonenumber's region codes: US, GB, DE, ...)")
        return regions


@dataclass(frozen=True)
class Match:
    """One entity found in a document: `text[start:end]` is of type `entity` (our name)."""

    entity: str
    start: int
    end: int
    score: float


def is_public_ip(address: str) -> bool:
    """A globally routable unicast address (a CIDR suffix is allowed); IPv4-mapped IPv6 is judged as its IPv4."""
    try:
        ip = ipaddress.ip_interface(address).ip
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def ner_model_problem(ner_model: str) -> str | None:
    """Why a configured spaCy pipeline cannot be used (it is never downloaded), or None."""
    import spacy

    if spacy.util.is_package(ner_model) or Path(ner_model).is_dir():
        return None
    return f"{ner_model} is neither an installed spaCy package nor a directory; install it or leave ner_model unset"


def build_analyzer(config: PiiConfig):
    """Presidio's AnalyzerEngine with the recognizers of the configured types only, working offline."""
    # Presidio needs no torch here (pattern recognizers on the NoOp engine), but with torch installed (the train
    # extra) its import pulled torch into every worker twice over: presidio's device detection for its
    # transformer engines, and spaCy's thinc, which imports torch whenever it can: seconds of start-up and
    # hundreds of MB per worker (and CUDA initialised on a GPU node). A device the user set is kept, and a
    # configured spaCy pipeline (ner_model) gets torch as usual.
    os.environ.setdefault("PRESIDIO_DEVICE", "cpu")
    with _torch_hidden(config.ner_model is None):
        return _build_analyzer(config)


@contextmanager
def _torch_hidden(hide: bool):
    """While inside, `import torch` fails as if torch were not installed (unless it is imported already): thinc
    then goes without it for good in this process, which the pattern recognizers never miss."""
    if not hide or "torch" in sys.modules:
        yield
        return
    sys.modules["torch"] = None  # an import of torch raises ImportError meanwhile
    try:
        yield
    finally:
        if "torch" in sys.modules and sys.modules["torch"] is None:
            del sys.modules["torch"]


def _build_analyzer(config: PiiConfig):
    import phonenumbers
    import tldextract
    from phonenumbers import Leniency
    from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerRegistry
    from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
    from presidio_analyzer.nlp_engine import NoOpNlpEngine, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )

    # Presidio's EmailRecognizer uses tldextract's module-level extractor, which fetches the suffix list on first use.
    offline_suffixes = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return offline_suffixes(pattern_text).fqdn != ""

    class PublicIpRecognizer(IpRecognizer):
        def invalidate_result(self, pattern_text: str) -> bool:
            return not is_public_ip(pattern_text)

    class GradedPhoneRecognizer(PhoneRecognizer):
        """Presidio's phone recognizer: libphonenumber's matcher once per region, at leniency 0 (possible numbers).
        It keeps numbers of 7+ digits and scores a well-formed one higher: valid, with the national prefix where
        the region writes one and digits grouped as the region groups them (libphonenumber's strict grouping, which
        dates and page ranges fail)."""

        def analyze(self, text, entities, nlp_artifacts=None):
            best = {}  # (start, end) -> the best-scored result for that span
            for region in self.supported_regions:
                for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=Leniency.POSSIBLE):
                    if sum(c.isdigit() for c in match.raw_string) < MIN_PHONE_DIGITS:
                        continue
                    kept = best.get((match.start, match.end))
                    if kept is not None and kept.score == WELL_FORMED_PHONE_SCORE:
                        continue
                    result = self._get_recognizer_result(match, text, region, nlp_artifacts)
                    result.score = WELL_FORMED_PHONE_SCORE if is_well_formed(match, region) else POSSIBLE_PHONE_SCORE
                    if kept is None or kept.score < result.score:
                        best[match.start, match.end] = result
            return EntityRecognizer.remove_duplicates(list(best.values()))

    def is_well_formed(match, region: str) -> bool:
        return phonenumbers.is_valid_number(match.number) and any(
            found.raw_string == match.raw_string
            for found in phonenumbers.PhoneNumberMatcher(match.raw_string, region, leniency=Leniency.STRICT_GROUPING)
        )

    recognizers = {
        "email": OfflineEmailRecognizer,
        "phone": lambda: GradedPhoneRecognizer(
            context=config.phone_context, supported_regions=tuple(config.phone_regions), leniency=Leniency.POSSIBLE
        ),
        "ip": PublicIpRecognizer,
        "credit_card": CreditCardRecognizer,
        "iban": IbanRecognizer,
        "us_ssn": UsSsnRecognizer,
    }
    registry = RecognizerRegistry(recognizers=[recognizers[name]() for name in config.entities])
    if config.ner_model is None:
        nlp_engine = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    else:
        problem = ner_model_problem(config.ner_model)
        if problem:
            raise StageSetupError("ner_model", problem)
        nlp_engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": config.ner_model}])
    nlp_engine.load()
    with warnings.catch_warnings():  # "NoOp engine: only context passed to analyze() is used": that is the design
        warnings.simplefilter("ignore", UserWarning)
        return AnalyzerEngine(
            registry=registry,
            nlp_engine=nlp_engine,
            supported_languages=["en"],
            context_aware_enhancer=LemmaContextAwareEnhancer(context_matching_mode="whole_word"),
        )


def candidate_stretches(text: str, candidates: dict[str, CandidateKind]) -> list[tuple[int, int, set[str]]]:
    """`(start, end, types)` of the text that may hold PII, widened to whole words and merged, in text order."""
    found = sorted(
        (word_start(text, match.start()), word_end(text, match.end()), kind.types)
        for kind in candidates.values()
        for match in kind.pattern.finditer(text)
        if kind.unless is None or not kind.unless.fullmatch(match.group())
    )
    stretches: list[tuple[int, int, set[str]]] = []
    for start, end, types in found:
        if stretches and start <= stretches[-1][1]:
            last_start, last_end, last_types = stretches[-1]
            stretches[-1] = (last_start, max(last_end, end), last_types | set(types))
        else:
            stretches.append((start, end, set(types)))
    return stretches


def word_start(text: str, position: int) -> int:
    """`position`, moved back to the start of the word it is in (by at most WORD_REACH characters)."""
    limit = max(0, position - WORD_REACH)
    while position > limit and not text[position - 1].isspace():
        position -= 1
    return position


def word_end(text: str, position: int) -> int:
    """`position`, moved forward to the end of the word it is in (by at most WORD_REACH characters)."""
    limit = min(len(text), position + WORD_REACH)
    while position < limit and not text[position].isspace():
        position += 1
    return position


def resolve_overlaps(matches: list[Match]) -> list[Match]:
    """Non-overlapping matches in text order: higher score first, then the longer span, then PREFERENCE."""
    ranked = sorted(matches, key=lambda m: (-m.score, m.start - m.end, PREFERENCE.index(m.entity), m.start))
    kept: list[Match] = []
    for match in ranked:
        if all(match.end <= other.start or other.end <= match.start for other in kept):
            kept.append(match)
    return sorted(kept, key=lambda m: m.start)


def redact(text: str, matches: list[Match], placeholders: dict[str, str]) -> str:
    """`text` with each of the (non-overlapping, ordered) matches replaced by its type's placeholder."""
    pieces, position = [], 0
    for match in matches:
        pieces += [text[position : match.start], placeholders[match.entity]]
        position = match.end
    pieces.append(text[position:])
    return "".join(pieces)


class Pii(Stage):
    name = "pii"
    Config = PiiConfig
    decisions = (Decision(TOTAL_COLUMN, "too_much_pii", "max_pii", "above"),)
    output_fields = (
        pa.field(TEXT, pa.string()),
        *(pa.field(column, pa.int32()) for column in COUNT_COLUMNS.values()),
        pa.field(TOTAL_COLUMN, pa.int32()),
    )

    @classmethod
    def prepare(cls, config: PiiConfig, workspace: Path) -> PiiConfig:
        if config.ner_model is not None:
            problem = ner_model_problem(config.ner_model)
            if problem:
                raise StageSetupError("ner_model", problem)
        return config

    def __init__(self, config: PiiConfig):
        super().__init__(config)
        self._analyzer = build_analyzer(config)
        self._enabled = set(config.entities)
        self._candidates = {name: kind for name, kind in CANDIDATES.items() if self._enabled & set(kind.types)}
        self._context_words = {
            word.lower() for recognizer in self._analyzer.registry.recognizers for word in recognizer.context or ()
        }
        self.analyzer_calls = 0  # texts given to Presidio so far; a document without candidates adds none

    def find(self, text: str) -> list[Match] | None:
        """The non-overlapping PII matches of a text, in text order; None when its candidate stretches add up to
        more than `max_candidate_chars` (then it is not analysed)."""
        stretches = candidate_stretches(text, self._candidates)
        limit = self.config.max_candidate_chars
        if limit is not None and sum(end - start for start, end, _ in stretches) > limit:
            return None
        matches = []
        for start, end, types in stretches:
            around = text[max(0, start - CONTEXT_REACH) : end + CONTEXT_REACH].lower()
            self.analyzer_calls += 1
            results = self._analyzer.analyze(
                text[start:end],
                language="en",
                entities=[PRESIDIO_ENTITIES[name] for name in sorted(types & self._enabled)],
                score_threshold=self.config.score_threshold,
                context=[word for word in WORDS.findall(around) if word in self._context_words],
            )
            matches += [Match(OUR_ENTITIES[r.entity_type], start + r.start, start + r.end, r.score) for r in results]
        return resolve_overlaps(matches)

    def process(self, docs: pa.Table) -> pa.Table:
        texts = docs.column(TEXT).to_pylist()
        counts: dict[str, list[int | None]] = {name: [0] * len(texts) for name in PRESIDIO_ENTITIES}
        totals: list[int | None] = [0] * len(texts)
        drops: list[str | None] = [None] * len(texts)
        for row, text in enumerate(texts):
            matches = self.find(text or "")
            if matches is None:
                drops[row], totals[row] = "too_many_pii_candidates", None
                for values in counts.values():
                    values[row] = None
                continue
            for match in matches:
                counts[match.entity][row] += 1
            totals[row] = len(matches)
            if self.config.max_pii is not None and len(matches) > self.config.max_pii:
                drops[row] = "too_much_pii"
            if self.config.replace and matches:
                texts[row] = redact(text, matches, self.config.placeholders)
        columns = {COUNT_COLUMNS[name]: values for name, values in counts.items()} | {TOTAL_COLUMN: totals}
        types = {column: pa.int32() for column in columns}
        if self.config.replace:
            columns[TEXT], types[TEXT] = texts, pa.string()
        none = [None] * len(texts)
        return with_outcome(set_columns(docs, columns, types), drops, none, none)
