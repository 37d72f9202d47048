"""The pre-screen: cheap regular expressions that find the stretches of a text that could hold PII, and which types.

Most web pages hold no PII, and the recognizers are slow on long text: only these stretches, widened to whole words
and merged, are analysed, and only for the types they can hold; a document without any never is.
"""

from __future__ import annotations

from dataclasses import dataclass

import regex

_SEPARATOR = r"[ \t\u00a0().\-/\u2013]"  # what may stand between the digits of a phone, card or SSN
DIGIT_GROUP = regex.compile(r"\d+")  # one group of a number as written (cards are split into them, phones start one)
WORD_REACH = 100  # a stretch widens to whole words, by at most this many characters on each side


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
