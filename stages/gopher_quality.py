"""Gopher quality rules (Rae et al. 2021, "Scaling Language Models", appendix A.1.1): drop documents that do not
look like prose: too short or too long, odd word lengths, full of symbols, bullet lists, truncated lines, few words
with letters, or missing the most common English function words.

Words are `text_tools.split_words` tokens (spaCy-style, punctuation tokens included); a "word" for the count and the
mean length is a token with at least one character that is not punctuation or a symbol. Lines are `str.splitlines()`.

Signal column (prefix `gopher_quality_`) -> config fields, rule (drop reason = signal name):
    word_count            words that are not only symbols        min_words / max_words   (50 / 100,000)
    mean_word_length      their mean length in characters        min_mean_word_length / max_mean_word_length (3 / 10)
    hash_word_ratio       "#" characters per token               max_hash_word_ratio      (0.1)
    ellipsis_word_ratio   "..." and "…" per token                max_ellipsis_word_ratio  (0.1)
    bullet_lines_ratio    lines starting with "•" or "-"         max_bullet_lines_ratio   (0.9)
    ellipsis_lines_ratio  lines ending with "..." or "…"         max_ellipsis_lines_ratio (0.3)
    alpha_words_ratio     tokens holding a letter                min_alpha_words_ratio    (0.8)
    stop_words            distinct stop words present            min_stop_words           (2)
Every threshold is switched off by setting it to None. A rule drops when the signal is strictly below a minimum or
strictly above a maximum, as in datatrove's GopherQualityFilter. Stop words match case-sensitively ("The" is not
"the"), also as datatrove does. A table row ("| a | b |") is measured as its cells, one line each, without its
bars (`tables: cells`, the default). `preset: gopher`, `fineweb` or `dclm` set Gopher's values (stages/presets.py).
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
from pydantic import Field, model_validator

from stages.text_tools import (HAS_LETTER, SYMBOLS_ONLY, Measured, Rule, RuleConfig, RuleStage, ratio, split_words,
                               token_kind)

GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


class GopherQualityConfig(RuleConfig):
    """Thresholds of the Gopher quality rules; None switches a rule off. Defaults are the published ones."""

    stage_name = "gopher_quality"

    min_words: int | None = Field(50, ge=0, description="Fewer words (tokens not made only of symbols) drop. "
                                  "Gopher: 50.")
    max_words: int | None = Field(100_000, ge=1, description="More words drop. Gopher: 100,000.")
    min_mean_word_length: float | None = Field(3, ge=0, description="Mean word length (characters) below this "
                                               "drops. Gopher: 3.")
    max_mean_word_length: float | None = Field(10, gt=0, description="Mean word length above this drops. Gopher: 10.")
    max_hash_word_ratio: float | None = Field(0.1, ge=0, description="'#' characters per token above this drop. "
                                              "Gopher: 0.1 (its symbol-to-word ratio, for the hash).")
    max_ellipsis_word_ratio: float | None = Field(0.1, ge=0, description="'...' and '…' per token above this drop. "
                                                  "Gopher: 0.1 (its symbol-to-word ratio, for the ellipsis).")
    max_bullet_lines_ratio: float | None = Field(0.9, ge=0, le=1, description="Share of lines starting with a bullet "
                                                 "('•' or '-') above this drops. Gopher: 0.9.")
    max_ellipsis_lines_ratio: float | None = Field(0.3, ge=0, le=1, description="Share of lines ending with an "
                                                   "ellipsis above this drops. Gopher: 0.3.")
    min_alpha_words_ratio: float | None = Field(0.8, ge=0, le=1, description="Share of tokens holding at least one "
                                                "letter below this drops. Gopher: 0.8.")
    min_stop_words: int | None = Field(2, ge=0, description="Fewer distinct stop words drop. Gopher: 2.")
    stop_words: list[str] = Field(list(GOPHER_STOP_WORDS), description="The stop words, matched case-sensitively. "
                                  "Gopher: the, be, to, of, and, that, have, with.")

    @model_validator(mode="after")
    def _every_rule_can_be_passed(self) -> GopherQualityConfig:
        """A minimum above its maximum, or more stop words required than listed, would drop every document."""
        for low, high in (("min_words", "max_words"), ("min_mean_word_length", "max_mean_word_length")):
            low_value, high_value = getattr(self, low), getattr(self, high)
            if low_value is not None and high_value is not None and low_value > high_value:
                raise ValueError(f"{low} {low_value} is above {high} {high_value}: no document could pass")
        listed = len(set(self.stop_words))
        if self.min_stop_words is not None and self.min_stop_words > listed:
            raise ValueError(f"min_stop_words {self.min_stop_words} is more than the {listed} distinct stop_words: "
                             "no document could pass")
        return self


class GopherQuality(RuleStage):
    name = "gopher_quality"
    Config = GopherQualityConfig
    output_fields = (
        pa.field("gopher_quality_word_count", pa.int32()),
        pa.field("gopher_quality_mean_word_length", pa.float64()),
        pa.field("gopher_quality_hash_word_ratio", pa.float64()),
        pa.field("gopher_quality_ellipsis_word_ratio", pa.float64()),
        pa.field("gopher_quality_bullet_lines_ratio", pa.float64()),
        pa.field("gopher_quality_ellipsis_lines_ratio", pa.float64()),
        pa.field("gopher_quality_alpha_words_ratio", pa.float64()),
        pa.field("gopher_quality_stop_words", pa.int32()),
    )
    rules = (
        Rule("word_count", "min_words", "below"),
        Rule("word_count", "max_words", "above"),
        Rule("mean_word_length", "min_mean_word_length", "below"),
        Rule("mean_word_length", "max_mean_word_length", "above"),
        Rule("hash_word_ratio", "max_hash_word_ratio", "above"),
        Rule("ellipsis_word_ratio", "max_ellipsis_word_ratio", "above"),
        Rule("bullet_lines_ratio", "max_bullet_lines_ratio", "above"),
        Rule("ellipsis_lines_ratio", "max_ellipsis_lines_ratio", "above"),
        Rule("alpha_words_ratio", "min_alpha_words_ratio", "below"),
        Rule("stop_words", "min_stop_words", "below"),
    )

    def __init__(self, config: GopherQualityConfig):
        super().__init__(config)
        self._stop_words = frozenset(config.stop_words)

    def measure(self, text: str) -> Measured:
        tokens = split_words(text)
        token_counts = Counter(tokens)
        words = word_chars = with_letter = 0
        for token, count in token_counts.items():
            kind = token_kind(token)
            if not kind & SYMBOLS_ONLY:
                words += count
                word_chars += count * len(token)
            if kind & HAS_LETTER:
                with_letter += count
        lines = text.splitlines()
        return Measured((
            words,
            ratio(word_chars, words),
            ratio(text.count("#"), len(tokens)),
            ratio(text.count("...") + text.count("…"), len(tokens)),
            ratio(sum(line.lstrip().startswith(("•", "-")) for line in lines), len(lines)),
            ratio(sum(line.rstrip().endswith(("...", "…")) for line in lines), len(lines)),
            ratio(with_letter, len(tokens)),
            len(self._stop_words.intersection(token_counts)),
        ))
