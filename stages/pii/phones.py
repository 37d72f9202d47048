"""Phone numbers: libphonenumber's matcher run in the regions a page most likely writes its numbers in.

The regions come from the page's language (`LANGUAGE_REGIONS`) and its URL's country-code TLD, before the
configured ones. A number valid in one of them and written as that region writes numbers (`is_well_formed`) passes
alone; one that is only possible there, or in one of `FALLBACK_REGIONS`, needs a phone word near it; one labelled as
another kind of number (`non_phone_label_pattern`: ISBN, order number, ...) is no phone. libphonenumber is imported
when first used, so importing this module stays cheap.
"""

from __future__ import annotations

from typing import Iterable
from urllib.parse import urlsplit

import regex

from stages.pii.candidates import DIGIT_GROUP

LABEL_REACH = 30  # a label naming another kind of number is looked for this many characters before a phone number
MIN_PHONE_DIGITS = 7  # shorter "possible numbers" are house numbers, years and prices
WELL_FORMED_PHONE_SCORE = 0.5  # valid in one of the document's regions and written as that region writes numbers
POSSIBLE_PHONE_SCORE = 0.4  # Presidio's PhoneRecognizer.SCORE: a possible number (right length) in a region
PHONE_WORD_BOOST = 0.35  # a phone word near a number adds this, as Presidio's context enhancer adds to its results

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
# What libphonenumber may take for a number but people write for something else: opening hours (9.00-16.00) and a
# date with more digits after it (05.12.1972 00).
NOT_A_PHONE = regex.compile(r"\d{1,2}[.:]\d{2}\s*[-\u2013]\s*\d{1,2}[.:]\d{2}|\d{1,2}\.\d{1,2}\.(?:19|20)\d{2}")


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


def non_phone_label_pattern(labels: Iterable[str]) -> regex.Pattern:
    """A pattern for the text between a label of another kind of number (one of `labels`, any case: "ISBN-10:",
    "order no.") and the number after it; searched for in the LABEL_REACH characters before a phone number."""
    alternatives = "|".join(regex.escape(label) for label in labels)
    # The label, then only punctuation, "no", "nr", "number" and the like up to the number.
    return regex.compile(
        rf"\b(?:{alternatives})\b(?:[^\p{{L}}\n]*\b(?:no|nr|num|number|nummer|numéro|número|numero)\b)?"
        r"[^\p{L}\n]*$",
        regex.IGNORECASE,
    )


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
            if count_digits(match.raw_string) < MIN_PHONE_DIGITS or NOT_A_PHONE.search(match.raw_string):
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
                if count_digits(match.raw_string) >= MIN_PHONE_DIGITS and not NOT_A_PHONE.search(match.raw_string):
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
