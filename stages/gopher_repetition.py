"""Gopher repetition rules (Rae et al. 2021, appendix A.1.1, table A1): drop documents that repeat themselves:
duplicated lines or paragraphs, one n-gram taking a large share of the text, or many characters inside repeated
n-grams.

Paragraphs are the parts of the stripped text between blank lines ("\\n\\n" or more); lines are the parts between runs
of "\\n". Words are `text_tools.split_words` tokens, punctuation included. Character fractions are over the text's
length. Definitions follow datatrove's GopherRepetitionFilter (the FineWeb reference):
    dup_para_frac / dup_line_frac          paragraphs / lines equal to an earlier one, per paragraph / line
    dup_para_char_frac / dup_line_char_frac characters in those repeats
    top_<n>gram_frac (n = 2, 3, 4)          characters of the most frequent n-gram (words joined by spaces; the first
                                           seen among equally frequent ones) times its count
    dup_<n>gram_frac (n = 5 ... 10)         characters (spaces not counted) of the n-grams that repeat an earlier one,
                                           scanning left to right and jumping past each repeat, so overlapping
                                           repeats are not counted twice

Signal column (prefix `gopher_repetition_`) -> config field (Gopher's default); drop reason = signal name; a document
drops when its signal is strictly above the limit; None switches a rule off:
    dup_para_frac -> max_dup_para_frac (0.3)           dup_para_char_frac -> max_dup_para_char_frac (0.2)
    dup_line_frac -> max_dup_line_frac (0.3)           dup_line_char_frac -> max_dup_line_char_frac (0.2)
    top_2gram_frac -> max_top_2gram_frac (0.20)        top_3gram_frac -> max_top_3gram_frac (0.18)
    top_4gram_frac -> max_top_4gram_frac (0.16)
    dup_5gram_frac -> max_dup_5gram_frac (0.15) ... dup_10gram_frac -> max_dup_10gram_frac (0.10), 0.01 less per n

N-grams are compared by 64-bit hashes of their words' hashes, computed with numpy for all positions at once: linear
work per n, and no n-gram strings are built. A table row ("| a | b |") is measured as its cells, one line each,
without its bars (`tables: cells`, the default). `preset: gopher`, `fineweb` or `dclm` set Gopher's values.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
from pydantic import Field

from stages.text_tools import Measured, Rule, RuleConfig, RuleStage, duplicates, ratio, split_words

TOP_NGRAM_SIZES = (2, 3, 4)
DUPLICATE_NGRAM_SIZES = (5, 6, 7, 8, 9, 10)
_PARAGRAPH_BREAK = re.compile(r"\n{2,}")
_LINE_BREAK = re.compile(r"\n+")
_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def _limit(default: float, what: str) -> float | None:
    return Field(default, ge=0, le=1, description=f"{what} above this drops the document. Gopher: {default}.")


class GopherRepetitionConfig(RuleConfig):
    """Thresholds of the Gopher repetition rules; None switches a rule off. Defaults are the published ones."""

    stage_name = "gopher_repetition"

    max_dup_para_frac: float | None = _limit(0.3, "Share of paragraphs that repeat an earlier paragraph")
    max_dup_para_char_frac: float | None = _limit(0.2, "Share of characters in repeated paragraphs")
    max_dup_line_frac: float | None = _limit(0.3, "Share of lines that repeat an earlier line")
    max_dup_line_char_frac: float | None = _limit(0.2, "Share of characters in repeated lines")
    max_top_2gram_frac: float | None = _limit(0.20, "Share of characters covered by the most frequent 2-gram")
    max_top_3gram_frac: float | None = _limit(0.18, "Share of characters covered by the most frequent 3-gram")
    max_top_4gram_frac: float | None = _limit(0.16, "Share of characters covered by the most frequent 4-gram")
    max_dup_5gram_frac: float | None = _limit(0.15, "Share of characters in repeated 5-grams")
    max_dup_6gram_frac: float | None = _limit(0.14, "Share of characters in repeated 6-grams")
    max_dup_7gram_frac: float | None = _limit(0.13, "Share of characters in repeated 7-grams")
    max_dup_8gram_frac: float | None = _limit(0.12, "Share of characters in repeated 8-grams")
    max_dup_9gram_frac: float | None = _limit(0.11, "Share of characters in repeated 9-grams")
    max_dup_10gram_frac: float | None = _limit(0.10, "Share of characters in repeated 10-grams")


_SIGNALS = (
    "dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac",
    *(f"top_{n}gram_frac" for n in TOP_NGRAM_SIZES),
    *(f"dup_{n}gram_frac" for n in DUPLICATE_NGRAM_SIZES),
)


class GopherRepetition(RuleStage):
    name = "gopher_repetition"
    Config = GopherRepetitionConfig
    output_fields = tuple(pa.field(f"gopher_repetition_{signal}", pa.float64()) for signal in _SIGNALS)
    rules = tuple(Rule(signal, f"max_{signal}", "above") for signal in _SIGNALS)

    def measure(self, text: str) -> Measured:
        paragraphs = _PARAGRAPH_BREAK.split(text.strip())
        repeated_paragraphs, repeated_paragraph_chars = duplicates(paragraphs)
        lines = _LINE_BREAK.split(text)
        repeated_lines, repeated_line_chars = duplicates(lines)
        ngrams = _NGrams(split_words(text))
        return Measured((
            ratio(repeated_paragraphs, len(paragraphs)),
            ratio(repeated_paragraph_chars, len(text)),
            ratio(repeated_lines, len(lines)),
            ratio(repeated_line_chars, len(text)),
            *(ratio(ngrams.top_chars(n), len(text)) for n in TOP_NGRAM_SIZES),
            *(ratio(chars, len(text)) for chars in ngrams.repeated_chars(DUPLICATE_NGRAM_SIZES)),
        ))


class _NGrams:
    """The n-grams of a word sequence as hashes, with their lengths in characters."""

    def __init__(self, words: list[str]):
        self.count = len(words)
        self.word_hashes = np.fromiter(map(hash, words), dtype=np.int64, count=self.count).view(np.uint64)
        self.chars_before = np.zeros(self.count + 1, dtype=np.int64)  # characters of words[:i]
        np.cumsum(np.fromiter(map(len, words), dtype=np.int64, count=self.count), out=self.chars_before[1:])
        self._hashes = {1: self.word_hashes}

    def hashes(self, n: int) -> np.ndarray:
        """One hash per n-gram start, built from the (n-1)-gram hashes."""
        if n not in self._hashes:
            shorter = self.hashes(n - 1)
            with np.errstate(over="ignore"):
                self._hashes[n] = shorter[:-1] * _HASH_MULTIPLIER + self.word_hashes[n - 1 :]
        return self._hashes[n]

    def chars(self, starts: np.ndarray | int, n: int) -> np.ndarray | int:
        """Characters of the n-grams starting at `starts`, spaces between words not counted."""
        return self.chars_before[starts + n] - self.chars_before[starts]

    def top_chars(self, n: int) -> int:
        """Characters of the most frequent n-gram written with single spaces, times its count."""
        if self.count < n:
            return 0
        hashes = self.hashes(n)
        values, counts = np.unique(hashes, return_counts=True)
        most = int(counts.max())
        if most == 1:
            start = 0  # all n-grams differ: the first one is the most frequent
        else:
            start = int(np.flatnonzero(np.isin(hashes, values[counts == most]))[0])
        return most * (int(self.chars(start, n)) + n - 1)

    def repeated_chars(self, sizes: tuple[int, ...]) -> list[int]:
        """For each n in `sizes` (increasing), the characters in n-grams equal to one seen before, scanning left to
        right; after a repeat the scan jumps past it, and n-grams it jumped over are not remembered as seen. Only
        n-grams that occur twice or more matter, and an n-gram can only occur twice if its first (n-1) words do."""
        found = []
        candidates = np.arange(self.count)
        for n in sizes:
            candidates = candidates[candidates <= self.count - n]
            if not len(candidates):
                found.append(0)
                continue
            _, codes, counts = np.unique(self.hashes(n)[candidates], return_inverse=True, return_counts=True)
            repeats = counts[codes] > 1
            candidates, codes = candidates[repeats], codes[repeats]
            found.append(self._scan(candidates, codes, n) if len(candidates) else 0)
        return found

    def _scan(self, starts: np.ndarray, codes: np.ndarray, n: int) -> int:
        """The left-to-right scan over the n-grams that occur more than once (`codes` number the distinct ones)."""
        ngrams = codes.tolist()
        after = np.searchsorted(starts, starts + n).tolist()  # the first start past each n-gram
        seen = bytearray(int(codes.max()) + 1)
        repeats: list[int] = []
        index, total = 0, len(ngrams)
        while index < total:
            ngram = ngrams[index]
            if seen[ngram]:
                repeats.append(index)
                index = after[index]
            else:
                seen[ngram] = 1
                index += 1
        return int(self.chars(starts[repeats], n).sum())
