"""Found entities (`Match`), the overlap resolution that leaves each character in at most one, and redaction."""

from __future__ import annotations

from dataclasses import dataclass

PREFERENCE = ("credit_card", "iban", "email", "ip", "us_ssn", "phone")  # the last tie-break between overlapping types


@dataclass(frozen=True)
class Match:
    """One entity found in a document: `text[start:end]` is of type `entity` (our name)."""

    entity: str
    start: int
    end: int
    score: float


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
