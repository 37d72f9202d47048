"""Payment card numbers: the card networks' issuer identification number ranges and lengths, and the Luhn check.

A card number is found as it is written: one run of digits, or groups split by single spaces or dashes (4 4 4 4,
4 6 5, ...), whose prefix and length are those of a network (`CARD_RANGES`) and that passes the Luhn check.
"""

from __future__ import annotations

from dataclasses import dataclass

import regex

from stages.pii.candidates import DIGIT_GROUP

CARD_SCORE = 1.0  # a checksum-validated card, as Presidio scores one


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
