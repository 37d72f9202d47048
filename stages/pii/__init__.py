"""PII: e-mails, phones, public IPs, cards, IBANs and US SSNs replaced by typed placeholders, counted per document.

The entities are replaced by `<EMAIL>`, `<PHONE>`, ...; the counts per type are columns, and a document holding more
than `max_pii` of them is dropped as `too_much_pii`. Overlaps between types are resolved so that each character is
replaced at most once (matches.py).

- E-mails, IPs, IBANs and SSNs: Presidio's pattern recognizers on the NoOp NLP engine (no spaCy model is needed; an
  installed spaCy pipeline can be configured instead; nothing is ever downloaded, and the public-suffix list is
  tldextract's bundled copy), validated as Presidio validates them: a known top-level domain for e-mails, the ISO
  13616 checksum and country format for IBANs, `ipaddress` for IPs, of which this stage keeps only public ones
  (presidio.py).
- Cards: digit groups (as written: one run, or groups split by spaces or dashes) whose prefix and length are those
  of a card network's issuer identification numbers (`CARD_RANGES`) and that pass the Luhn check (cards.py).
- Phones: libphonenumber directly, for each phone candidate and each of the document's regions: those inferred from
  its `lang` column (the langid stage's) and the country-code TLD of its `url`, then `phone_regions`. A number that is
  valid in one of them and written as that region writes numbers passes alone (`is_well_formed`); one that is only
  possible there (right length), or possible in one of `FALLBACK_REGIONS`, needs a phone word near it; one labelled
  as another kind of number (ISBN, order number, ...: `non_phone_labels`) is no phone (phones.py).

Speed: most web pages hold no PII, and the recognizers are slow on long text. Cheap regular expressions first find
the stretches of text that could hold an entity ('@' before a word character, 7+ digits with separators that are not
a date, dotted quads, colon-separated hex groups, an upper-case country code with check digits and groups:
candidates.py). Only those stretches, widened to whole words, are analysed, and only for the types they can hold; a
document without any never is. Context words ("tel", "ssn", ...) are looked for in the stretch and `CONTEXT_REACH`
characters around it. A document whose stretches add up to more than `max_candidate_chars` (a table of numbers, a
dump) is dropped unanalysed.

This module holds the stage and its config; importing it stays cheap (Presidio and libphonenumber are imported when
the stage is built or first used).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import pyarrow as pa
import regex
from pydantic import Field, field_validator

from pipeline.schema import TEXT
from stages.base import Decision, Stage, StageConfig, StageSetupError, set_columns, with_outcome
from stages.pii.candidates import CANDIDATES, candidate_stretches
from stages.pii.cards import CARD_SCORE, card_spans
from stages.pii.matches import Match, redact, resolve_overlaps
from stages.pii.phones import LABEL_REACH, inferred_regions, non_phone_label_pattern, phone_spans
from stages.pii.presidio import build_analyzer, ner_model_problem

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

CONTEXT_REACH = 40  # context words are looked for in a stretch and this many characters around it
WORDS = regex.compile(r"[^\W\d_]+")
LANGUAGE_COLUMN = "lang"  # the langid stage's column: lid.176's language codes
URL_COLUMN = "url"


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
        description="Regions (ISO 3166 codes) whose national number formats are recognised on every page, after "
        "those inferred for the page from its lang column (de: DE, AT, CH; ...) and its URL's country-code TLD. A "
        "number valid in one of them and written as it writes numbers is a phone; one only possible there needs a "
        "phone word near it, as does a number of any other region; numbers written with +country code are found "
        "whatever the list. Each region costs one more libphonenumber pass over every phone candidate.",
    )
    phone_context: list[str] = Field(
        default_factory=lambda: [
            "phone", "telephone", "cellphone", "mobile", "cell", "call", "fax", "sms", "whatsapp", "hotline",
            "contact", "tel", "tél", "tlf", "tfn", "telefon", "telefonnummer", "rufnummer", "handy", "mobil",
            "mobilnummer", "festnetz", "telefax", "téléphone", "portable", "teléfono", "móvil", "celular", "telefone",
            "telefono", "cellulare", "telefoon", "mobiel", "komórka", "kom", "телефон", "тел",
        ],
        description="Whole words (any case) that, in a phone candidate's stretch or within 40 characters of it, "
        "raise its score by 0.35: a number that is only possible (not valid and written as numbers are written in "
        "one of the page's regions) needs one to pass the default threshold.",
    )
    non_phone_labels: list[str] = Field(
        default_factory=lambda: [
            "isbn", "issn", "ean", "gtin", "upc", "sku", "order", "invoice", "receipt", "customer", "article", "item",
            "serial", "ref", "reference", "ticket", "tracking", "zip", "postcode", "bestellnummer", "bestellung",
            "rechnungsnummer", "rechnung", "kundennummer", "auftragsnummer", "artikelnummer", "commande", "facture",
            "référence", "pedido", "factura", "ordine", "fattura",
        ],
        description="Whole words (any case) that label another kind of number: a number right after one (within "
        "30 characters, only punctuation, no/nr/number and the like between) is not a phone, phone word or not.",
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
        self._analyzer = build_analyzer(config.entities, config.ner_model)
        self._enabled = set(config.entities)
        self._candidates = {name: kind for name, kind in CANDIDATES.items() if self._enabled & set(kind.types)}
        self._context_words = {
            word.lower() for recognizer in self._analyzer.registry.recognizers for word in recognizer.context or ()
        }
        self._phone_words = {word.lower() for word in config.phone_context}
        self._labelled = non_phone_label_pattern(config.non_phone_labels)
        self._document_regions: dict[tuple[str | None, str | None], tuple[str, ...]] = {}
        self.analyzer_calls = 0  # stretches analysed so far; a document without candidates adds none

    def document_regions(self, language: str | None, url: str | None) -> tuple[str, ...]:
        """The phone regions to try for a document, in order: those inferred from its language and URL, then
        `phone_regions`."""
        host = urlsplit(url or "").hostname or ""
        key = (language, host.rsplit(".", 1)[-1])
        if key not in self._document_regions:
            regions = (*inferred_regions(language, url), *self.config.phone_regions)
            self._document_regions[key] = tuple(dict.fromkeys(regions))
        return self._document_regions[key]

    def labelled_as_other_number(self, text: str, position: int) -> bool:
        """Whether the number at `position` follows one of `non_phone_labels` ("ISBN-10:", "order no.")."""
        return self._labelled.search(text, max(0, position - LABEL_REACH), position) is not None

    def find(self, text: str, regions: tuple[str, ...] | None = None) -> list[Match] | None:
        """The non-overlapping PII matches of a text, in text order, phones tried in `regions` (default:
        `phone_regions`); None when its candidate stretches add up to more than `max_candidate_chars` (then it is
        not analysed)."""
        stretches = candidate_stretches(text, self._candidates)
        limit = self.config.max_candidate_chars
        if limit is not None and sum(end - start for start, end, _ in stretches) > limit:
            return None
        regions = tuple(self.config.phone_regions) if regions is None else regions
        threshold = self.config.score_threshold
        matches = []
        for start, end, types in stretches:
            self.analyzer_calls += 1
            wanted = types & self._enabled
            stretch = text[start:end]
            around = set(WORDS.findall(text[max(0, start - CONTEXT_REACH) : end + CONTEXT_REACH].lower()))
            if "credit_card" in wanted:
                matches += [Match("credit_card", start + s, start + e, CARD_SCORE) for s, e in card_spans(stretch)]
            if "phone" in wanted:
                matches += [
                    Match("phone", start + s, start + e, score)
                    for s, e, score in phone_spans(stretch, regions, bool(around & self._phone_words))
                    if score >= threshold and not self.labelled_as_other_number(text, start + s)
                ]
            presidio_types = sorted(wanted - {"phone", "credit_card"})
            if presidio_types:
                results = self._analyzer.analyze(
                    stretch,
                    language="en",
                    entities=[PRESIDIO_ENTITIES[name] for name in presidio_types],
                    score_threshold=threshold,
                    context=sorted(around & self._context_words),
                )
                matches += [
                    Match(OUR_ENTITIES[r.entity_type], start + r.start, start + r.end, r.score) for r in results
                ]
        return resolve_overlaps(matches)

    def process(self, docs: pa.Table) -> pa.Table:
        texts = docs.column(TEXT).to_pylist()
        counts: dict[str, list[int | None]] = {name: [0] * len(texts) for name in PRESIDIO_ENTITIES}
        totals: list[int | None] = [0] * len(texts)
        drops: list[str | None] = [None] * len(texts)
        languages = docs.column(LANGUAGE_COLUMN).to_pylist() if LANGUAGE_COLUMN in docs.column_names else None
        urls = docs.column(URL_COLUMN).to_pylist() if URL_COLUMN in docs.column_names else None
        for row, text in enumerate(texts):
            regions = self.document_regions(languages and languages[row], urls and urls[row])
            matches = self.find(text or "", regions)
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
