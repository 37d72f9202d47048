"""FineWeb's own quality rules (Penedo et al. 2024, "The FineWeb Datasets"): drop pages that are mostly lists,
menus or repeated boilerplate, which pass the Gopher and C4 rules.

Lines are the parts of the text between "\\n" that hold more than whitespace. Words are `text_tools.split_words`
tokens, punctuation included. Definitions follow datatrove's FineWebQualityFilter, the reference implementation.

Signal column (prefix `fineweb_`) -> config field, rule (drop reason = signal name); None switches a rule off:
    line_punct_ratio     lines ending with a sentence terminal (".", "!", "?", "。", ...; the line as
                         written, trailing spaces included)                  min_line_punct_ratio (0.12): below drops
    short_line_ratio     lines of at most `short_line_length` (30) characters  max_short_line_ratio (0.67): above drops
    dup_line_char_ratio  characters in lines equal to an earlier line, over the characters that are not "\\n"
                                                                             max_dup_line_char_ratio (0.01): above drops
    newline_word_ratio   "\\n" characters per word                            max_newline_word_ratio (0.3): above drops
`short_line_length` shapes the signal itself: changing it needs the stage to run again. A table row ("| a | b |")
counts as its cells, one line each (`tables: cells`, the default); `preset: fineweb` sets FineWeb's values.
"""

from __future__ import annotations

import pyarrow as pa
from pydantic import Field

from stages.text_tools import (SENTENCE_TERMINALS, Measured, Rule, RuleConfig, RuleStage, duplicates, ratio,
                               split_words)


class FineWebConfig(RuleConfig):
    """Thresholds of the FineWeb rules; None switches a rule off. Defaults are the published ones."""

    stage_name = "fineweb"

    min_line_punct_ratio: float | None = Field(0.12, ge=0, le=1, description="Share of lines ending with terminal "
                                               "punctuation below this drops the document. FineWeb: 0.12.")
    max_short_line_ratio: float | None = Field(0.67, ge=0, le=1, description="Share of short lines above this "
                                               "drops. FineWeb: 0.67.")
    short_line_length: int = Field(30, ge=0, description="A line of at most this many characters is short. "
                                   "FineWeb: 30.")
    max_dup_line_char_ratio: float | None = Field(0.01, ge=0, le=1, description="Share of characters in lines that "
                                                  "repeat an earlier line above this drops. FineWeb: 0.01.")
    max_newline_word_ratio: float | None = Field(0.3, ge=0, description="Line breaks per word above this drop "
                                                 "(list-like pages). FineWeb: 0.3.")


class FineWeb(RuleStage):
    name = "fineweb"
    Config = FineWebConfig
    output_fields = (
        pa.field("fineweb_line_punct_ratio", pa.float64()),
        pa.field("fineweb_short_line_ratio", pa.float64()),
        pa.field("fineweb_dup_line_char_ratio", pa.float64()),
        pa.field("fineweb_newline_word_ratio", pa.float64()),
    )
    rules = (
        Rule("line_punct_ratio", "min_line_punct_ratio", "below"),
        Rule("short_line_ratio", "max_short_line_ratio", "above"),
        Rule("dup_line_char_ratio", "max_dup_line_char_ratio", "above"),
        Rule("newline_word_ratio", "max_newline_word_ratio", "above"),
    )

    def measure(self, text: str) -> Measured:
        lines = [line for line in text.split("\n") if not line.isspace() and line]
        newlines = text.count("\n")
        short = self.config.short_line_length
        return Measured((
            ratio(sum(line[-1] in SENTENCE_TERMINALS for line in lines), len(lines)),
            ratio(sum(len(line) <= short for line in lines), len(lines)),
            ratio(duplicates(lines)[1], len(text) - newlines),
            ratio(newlines, len(split_words(text))),
        ))
