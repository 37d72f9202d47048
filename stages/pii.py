"""PII: e-mails, phones, public IPs, cards, IBANs and US SSNs replaced by typed placeholders, counted per document.

The entities are replaced by `<EMAIL>`, `<PHONE>`, ...; the counts per type are columns, and a document holding more
than `max_pii` of them is dropped as `too_much_pii`. Overlaps between types are resolved so that each character is
replaced at most once.

- E-mails, IPs, IBANs and SSNs: Presidio's pattern recognizers on the NoOp NLP engine (no spaCy model is needed; an
  installed spaCy pipeline can be configured instead; nothing is ever downloaded, and the public-suffix list is
  tldextract's bundled copy), validated as Presidio validates them: a known top-level domain for e-mails, the ISO
  13616 checksum and country format for IBANs, `ipaddress` for IPs, of which this stage keeps only public ones.
- Cards: digit groups (as written: one run, or groups split by spaces or dashes) whose prefix and length are those
  of a card network's issuer identification numbers (`CARD_RANGES`) and that pass the Luhn check.
- Phones: libphonenumber directly, for each phone candidate and each of the document's regions: those inferred from
  its `lang` column (the langid stage's) and the country-code TLD of its `url`, then `phone_regions`. A number that is
  valid in one of them and written as that region writes numbers passes alone (`is_well_formed`); one that is only
  possible there (right length), or possible in one of `FALLBACK_REGIONS`, needs a phone word near it; one labelled
  as another kind of number (ISBN, order number, ...: `non_phone_labels`) is no phone.

Speed: most web pages hold no PII, and the recognizers are slow on long text. Cheap regular expressions first find
the stretches of text that could hold an entity ('@' before a word character, 7+ digits with separators that are not
a date, dotted quads, colon-separated hex groups, an upper-case country code with check digits and groups). Only
those stretches, widened to whole words, are analysed, and only for the types they can hold; a document without any
never is. Context words ("tel", "ssn", ...) are looked for in the stretch and `CONTEXT_REACH` characters around it. A
document whose stretches add up to more than `max_candidate_chars` (a table of numbers, a dump) is dropped
unanalysed.
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
from urllib.parse import urlsplit

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
LABEL_REACH = 30  # a label naming another kind of number is looked for this many characters before a phone number
MIN_PHONE_DIGITS = 7  # shorter "possible numbers" are house numbers, years and prices
WELL_FORMED_PHONE_SCORE = 0.5  # valid in one of the document's regions and written as that region writes numbers
POSSIBLE_PHONE_SCORE = 0.4  # Presidio's PhoneRecognizer.SCORE: a possible number (right length) in a region
PHONE_WORD_BOOST = 0.35  # a phone word near a number adds this, as Presidio's context enhancer adds to its results
CARD_SCORE = 1.0  # a checksum-validated card, as Presidio scores one
PREFERENCE = ("credit_card", "iban", "email", "ip", "us_ssn", "phone")  # the last tie-break between overlapping types
WORDS = regex.compile(r"[^\W\d_]+")
DIGIT_GROUP = regex.compile(r"\d+")
LANGUAGE_COLUMN = "lang"  # the langid stage's column: lid.176's language codes
URL_COLUMN = "url"

# The regions whose national phone formats a page in a language most likely uses (lid.176's language codes).
LANGUAGE_REGIONS: dict[str, tuple[str, ...]] = {
    "en": ("US", "GB", "IE", "CA", "AU"), "de": ("DE", "AT", "CH"), "fr": ("FR", "BE", "CH", "LU", "CA"),
    "nl": ("NL", "BE"), "it": ("IT", "CH"), "es": ("ES", "MX", "AR", "CO", "CL"), "pt": ("PT", "BR"),
    "pl": ("PL",), "cs": ("CZ",), "sk": ("SK",), "hu": ("HU",), "ro": ("RO",), "sv": ("SE",), "da": ("DK",),
    "no": ("NO",), "nb": ("NO",), "nn": ("NO",), "fi": ("FI",), "et": ("EE",), "lv": ("LV",), "lt": ("LT",),
    "el": ("GR", "CY"), "bg": ("BG",), "hr": ("HR",), "sl": ("SI",), "sr": ("RS",), "uk": ("UA",),
    "ru": ("RU", "BY", "KZ"), "tr": ("TR",), "ja": ("JP",), "ko": ("KR",), "zh": ("CN", "TW", "HK"),
}
# Tried for a number near a phone word that none of the document's regions finds possible.
FALLBACK_REGIONS = tuple(dict.fromkeys(region for regions in LANGUAGE_REGIONS.values() for region in regions))
# Country-code TLDs that sites anywhere use for their letters, not for the country: no region from them.
GENERIC_COUNTRY_TLDS = frozenset({"ai", "cc", "co", "fm", "io", "ly", "me", "tv", "to", "ws"})
TLD_REGIONS = {"uk": "GB"}  # the one ccTLD that is not the country's ISO 3166 code


@dataclass(frozen=True)
class CardRange:
    """A card network's numbers: `lengths` digits, starting with a prefix from `first` to `last` (both written with
    the same number of digits)."""

    network: str
    first: int
    last: int
    lengths: tuple[int, ...]

    def holds(self, digits: str) -> bool:
        return len(digits) in self.lengths and self.first <= int(digits[: len(str(self.first))]) <= self.last


SIXTEEN_TO_NINETEEN = (16, 17, 18, 19)
TWELVE_TO_NINETEEN = tuple(range(12, 20))
# Issuer identification number ranges and lengths of the card networks in use (ISO/IEC 7812 numbers, Luhn-checked).
CARD_RANGES = (
    CardRange("Visa", 4, 4, (13, 16, 19)),
    CardRange("Mastercard", 51, 55, (16,)),
    CardRange("Mastercard", 2221, 2720, (16,)),
    CardRange("American Express", 34, 34, (15,)),
    CardRange("American Express", 37, 37, (15,)),
    CardRange("Discover", 6011, 6011, SIXTEEN_TO_NINETEEN),
    CardRange("Discover", 644, 649, SIXTEEN_TO_NINETEEN),
    CardRange("Discover", 65, 65, SIXTEEN_TO_NINETEEN),
    CardRange("Maestro", 50, 50, TWELVE_TO_NINETEEN),
    CardRange("Maestro", 56, 69, TWELVE_TO_NINETEEN),
    CardRange("JCB", 3528, 3589, SIXTEEN_TO_NINETEEN),
    CardRange("JCB (its first 15-digit ranges)", 1800, 1800, (15,)),
    CardRange("JCB (its first 15-digit ranges)", 2131, 2131, (15,)),
    CardRange("Diners Club", 300, 305, (14, *SIXTEEN_TO_NINETEEN)),
    CardRange("Diners Club", 3095, 3095, (14, *SIXTEEN_TO_NINETEEN)),
    CardRange("Diners Club", 36, 36, (14, *SIXTEEN_TO_NINETEEN)),
    CardRange("Diners Club", 38, 39, (14, *SIXTEEN_TO_NINETEEN)),
    CardRange("UnionPay", 62, 62, SIXTEEN_TO_NINETEEN),
    CardRange("Mir", 2200, 2204, SIXTEEN_TO_NINETEEN),
)
CARD_FIRST_GROUP_DIGITS = range(4, 7)  # a card number written in groups: 4 4 4 4, 4 6 5, 6 6 4 3, ...
CARD_GROUP_DIGITS = range(3, 7)
MAX_CARD_DIGITS = max(length for card_range in CARD_RANGES for length in card_range.lengths)
# Digit groups split by single spaces or dashes, not inside a word or after a '+' (an international phone number).
CARD_GROUPS = regex.compile(r"(?<![\w+])\d++(?:[ \u00a0-]\d++)*+(?!\w)")


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
    """Presidio's AnalyzerEngine with the recognizers of the configured types that it finds (e-mails, IPs, IBANs,
    SSNs), working offline."""
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
    import tldextract
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
    from presidio_analyzer.nlp_engine import NoOpNlpEngine, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import EmailRecognizer, IbanRecognizer, IpRecognizer, UsSsnRecognizer

    # Presidio's EmailRecognizer uses tldextract's module-level extractor, which fetches the suffix list on first use.
    offline_suffixes = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return offline_suffixes(pattern_text).fqdn != ""

    class PublicIpRecognizer(IpRecognizer):
        def invalidate_result(self, pattern_text: str) -> bool:
            return not is_public_ip(pattern_text)

    recognizers = {
        "email": OfflineEmailRecognizer,
        "ip": PublicIpRecognizer,
        "iban": IbanRecognizer,
        "us_ssn": UsSsnRecognizer,
    }
    registry = RecognizerRegistry(recognizers=[recognizers[name]() for name in config.entities if name in recognizers])
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


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check that every payment card number carries in its last digit."""
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def is_card_number(digits: str) -> bool:
    """Whether a string of digits is a card number: a network's prefix and length (CARD_RANGES), and Luhn-valid."""
    return any(card_range.holds(digits) for card_range in CARD_RANGES) and luhn_valid(digits)


def card_spans(text: str) -> list[tuple[int, int]]:
    """`(start, end)` of the card numbers in a text, from left to right: a digit group of a run (CARD_GROUPS) that is
    one, or the longest card number in groups as cards are written (4 4 4 4, 4 6 5, ...: CARD_GROUP_DIGITS, not the
    page ranges of a table) that starts at the group. Order and part numbers around a card do not hide it."""
    spans = []
    for run in CARD_GROUPS.finditer(text):
        groups = [(group.start(), group.end()) for group in DIGIT_GROUP.finditer(text, run.start(), run.end())]
        first = 0
        while first < len(groups):
            last = card_end_group(text, groups, first)
            if last is None:
                first += 1
            else:
                spans.append((groups[first][0], groups[last][1]))
                first = last + 1
    return spans


def card_end_group(text: str, groups: list[tuple[int, int]], first: int) -> int | None:
    """The index of the group that ends the card number starting at `groups[first]`, or None."""
    digits = text[groups[first][0] : groups[first][1]]
    if is_card_number(digits):
        return first
    if len(digits) not in CARD_FIRST_GROUP_DIGITS:
        return None
    end = None
    for last in range(first + 1, len(groups)):
        group = text[groups[last][0] : groups[last][1]]
        digits += group
        if len(group) not in CARD_GROUP_DIGITS or len(digits) > MAX_CARD_DIGITS:
            break
        if is_card_number(digits):
            end = last
    return end


def inferred_regions(language: str | None, url: str | None) -> tuple[str, ...]:
    """The phone regions a page's language (LANGUAGE_REGIONS) and its URL's country-code TLD point to, in that
    order."""
    import phonenumbers

    regions = list(LANGUAGE_REGIONS.get((language or "").lower(), ()))
    host = urlsplit(url or "").hostname or ""
    tld = host.rsplit(".", 1)[-1]
    region = TLD_REGIONS.get(tld, tld.upper())
    if len(tld) == 2 and tld not in GENERIC_COUNTRY_TLDS and region in phonenumbers.SUPPORTED_REGIONS:
        regions.append(region)
    return tuple(dict.fromkeys(regions))


def phone_spans(text: str, regions: tuple[str, ...], phone_word_near: bool) -> list[tuple[int, int, float]]:
    """`(start, end, score)` of the phone numbers of 7+ digits in a text, trying `regions` in order: well-formed in
    one of them (`is_well_formed`) scores WELL_FORMED_PHONE_SCORE, only possible POSSIBLE_PHONE_SCORE, and a phone
    word near adds PHONE_WORD_BOOST. A number well-formed in one region is not parsed again for the next. Near a
    phone word, a text in which none of `regions` finds a possible number (libphonenumber's POSSIBLE leniency: the
    right length) is tried in FALLBACK_REGIONS, up to the first that finds one."""
    from phonenumbers import Leniency, PhoneNumberMatcher

    grades: dict[tuple[int, int], float] = {}
    unsettled = text  # the text less the numbers already well-formed in an earlier region (blanked, offsets kept)
    for region in regions:
        settled = []
        for match in PhoneNumberMatcher(unsettled, region, leniency=Leniency.POSSIBLE):
            if count_digits(match.raw_string) < MIN_PHONE_DIGITS:
                continue
            span = (match.start, match.end)
            if is_well_formed(match, region):
                grades[span] = WELL_FORMED_PHONE_SCORE
                settled.append(span)
            else:
                grades.setdefault(span, POSSIBLE_PHONE_SCORE)
        for start, end in settled:
            unsettled = unsettled[:start] + " " * (end - start) + unsettled[end:]
        if settled and not any(character.isdigit() for character in unsettled):
            break
    if phone_word_near and not grades:
        for region in FALLBACK_REGIONS:
            if region in regions:
                continue
            for match in PhoneNumberMatcher(text, region, leniency=Leniency.POSSIBLE):
                if count_digits(match.raw_string) >= MIN_PHONE_DIGITS:
                    grades[match.start, match.end] = POSSIBLE_PHONE_SCORE
            if grades:
                break
    boost = PHONE_WORD_BOOST if phone_word_near else 0.0
    return [(start, end, min(1.0, grade + boost)) for (start, end), grade in grades.items()]


def is_well_formed(match, region: str) -> bool:
    """Whether a number libphonenumber matched for `region` is valid and written as numbers are written there:
    - with the region's national prefix (the 0 of 030 ...) and the area code as its first group, or a mobile
      number (people group those freely: 078 8098 1119), prefixed the same way;
    - or else grouped as the region groups its numbers: libphonenumber's strict grouping (dates and page ranges
      fail it), or where the region has no national prefix (ES, PL, DK, ...: plain digit groups such as a zip code
      and a street number, 94941 2505, are valid numbers there) its exact grouping."""
    import phonenumbers
    from phonenumbers import CountryCodeSource, Leniency, PhoneNumberMatcher, PhoneNumberType

    if not phonenumbers.is_valid_number(match.number):
        return False
    number = phonenumbers.parse(match.raw_string, region, keep_raw_input=True)  # the matcher's keeps no source
    national = number.country_code_source == CountryCodeSource.FROM_DEFAULT_COUNTRY
    prefix = phonenumbers.PhoneMetadata.metadata_for_region(region).national_prefix if national else None
    if prefix:
        significant = phonenumbers.national_significant_number(number)
        if phonenumbers.normalize_digits_only(match.raw_string) == prefix + significant:
            area_code = significant[: phonenumbers.length_of_national_destination_code(number)]
            first_group = DIGIT_GROUP.search(match.raw_string).group()
            if (area_code and first_group == prefix + area_code) or (
                phonenumbers.number_type(number) == PhoneNumberType.MOBILE
            ):
                return True
    grouping = Leniency.EXACT_GROUPING if national and not prefix else Leniency.STRICT_GROUPING
    return any(
        found.raw_string == match.raw_string
        for found in PhoneNumberMatcher(match.raw_string, region, leniency=grouping)
    )


def count_digits(text: str) -> int:
    return sum(character.isdigit() for character in text)


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
        self._phone_words = {word.lower() for word in config.phone_context}
        labels = "|".join(regex.escape(label) for label in config.non_phone_labels)
        # The label, then only punctuation, "no", "nr", "number" and the like up to the number.
        self._labelled = regex.compile(
            rf"\b(?:{labels})\b(?:[^\p{{L}}\n]*\b(?:no|nr|num|number|nummer|numéro|número|numero)\b)?[^\p{{L}}\n]*$",
            regex.IGNORECASE,
        )
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
