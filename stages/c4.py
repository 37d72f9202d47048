"""C4's rules (Raffel et al. 2020, "Exploring the Limits of Transfer Learning", section 2.2): keep only the lines
that look like sentences, then drop pages that are placeholders, code, too short or (optionally) offensive.

Line rules REMOVE lines; the stage replaces the text of the documents it keeps with the lines that remain, joined by
"\\n". Each non-blank line is stripped and goes through, in order (as in C4 and datatrove's C4QualityFilter; the word
checks use whitespace-separated words, counted before citation markers are cut):
    1. a word longer than `max_word_length` (1000)        -> removed, counted in c4_lines_too_long_word
    2. citation markers "[1]", "[edit]", "[citation needed]" are cut out (`remove_citations`), c4_citations_removed
    3. no final ".", "?", "!", '"' or "'", or a final "..." (`require_terminal_punct`) -> c4_lines_no_terminal_punct
    4. fewer than `min_words_per_line` (3) words           -> c4_lines_too_few_words
    5. "lorem ipsum" in any case                           -> flags the document (c4_lorem_ipsum)
    6. "javascript" in any case (`remove_javascript_lines`) -> c4_lines_javascript
    7. a "{"                                               -> flags the document (c4_curly_bracket)
    8. "terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"
       (`remove_policy_lines`)                             -> c4_lines_policy
Lines that pass are kept (c4_lines_kept) and their sentences counted (c4_sentence_count, spaCy-sentencizer style,
see `text_tools.count_sentences`). c4_lines_removed is the sum of the removal counts.

Document rules, in order of precedence (drop reason in brackets):
    c4_lorem_ipsum     a kept-so-far line says "lorem ipsum"      drop_lorem_ipsum (on)       ["lorem_ipsum"]
    c4_curly_bracket   a kept-so-far line holds "{"               drop_curly_bracket (on)     ["curly_bracket"]
    c4_lines_kept      no line left (always on)                                               ["no_lines_left"]
    c4_sentence_count  sentences in the kept lines                min_sentences (5)           ["sentence_count"]
    c4_bad_words       words of the `bad_words` list in the kept text (whole words, any case; null when no list is
                       configured, the default)                   max_bad_words (0)           ["bad_words"]
Numeric thresholds are switched off with None, pattern rules with false. Only the document rules can be
re-thresholded from the saved columns: changing a line rule changes the text and needs the stage to run again.

A table row ("| a | b |") is judged as its cells, one line each, and the cells that pass are kept as lines
(`tables: cells`; `as_written` judges the row as it is). `preset: c4` takes the thresholds of the code that built C4,
`preset: fineweb` those of FineWeb's pipeline (stages/presets.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
from pydantic import Field

from stages.text_tools import Measured, Rule, RuleConfig, RuleStage, count_sentences
from stages.word_list import WordList, checked_word_list

_TERMINAL_PUNCTUATION = (".", "?", "!", '"', "'")
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
_POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


class C4Config(RuleConfig):
    """The C4 rules; numeric thresholds are switched off with None, pattern rules with false. Defaults are the C4
    paper's (and datatrove's); `preset: c4` takes those of the code that built C4."""

    stage_name = "c4"

    max_word_length: int | None = Field(1000, ge=1, description="Lines holding a longer word (characters between "
                                        "spaces) are removed. C4: 1000.")
    remove_citations: bool = Field(True, description="Cut Wikipedia-style citation markers ('[1]', '[edit]', "
                                   "'[citation needed]') out of lines. C4: on.")
    require_terminal_punct: bool = Field(True, description="Remove lines that do not end with '.', '?', '!', '\"' or "
                                         "\"'\", or that end with '...'. C4: on.")
    min_words_per_line: int | None = Field(3, ge=0, description="Lines with fewer words are removed. C4 paper: 3 "
                                            "(C4's code: 5).")
    drop_lorem_ipsum: bool = Field(True, description="Drop documents with 'lorem ipsum' in a line. C4: on.")
    remove_javascript_lines: bool = Field(True, description="Remove lines mentioning 'javascript'. C4: on.")
    drop_curly_bracket: bool = Field(True, description="Drop documents with a '{' in a line (likely code). C4: on.")
    remove_policy_lines: bool = Field(True, description="Remove lines about terms of use, privacy or cookie "
                                      "policies. C4: on.")
    min_sentences: int | None = Field(5, ge=0, description="Documents with fewer sentences in their kept lines are "
                                      "dropped. C4 paper: 5 (C4's code: 3).")
    bad_words: str | None = Field(None, description="Path of a bad-words list (one word or phrase per line, # for "
                                  "comments), e.g. LDNOOBW's 'en' as C4 used; None (default) switches the rule off.")
    max_bad_words: int = Field(0, ge=0, description="Documents whose kept text holds more matches of the bad-words "
                               "list are dropped. C4: 0 (any match).")


class C4(RuleStage):
    name = "c4"
    Config = C4Config
    output_fields = (
        pa.field("c4_lines_kept", pa.int32()),
        pa.field("c4_lines_removed", pa.int32()),
        pa.field("c4_lines_too_long_word", pa.int32()),
        pa.field("c4_lines_no_terminal_punct", pa.int32()),
        pa.field("c4_lines_too_few_words", pa.int32()),
        pa.field("c4_lines_javascript", pa.int32()),
        pa.field("c4_lines_policy", pa.int32()),
        pa.field("c4_citations_removed", pa.int32()),
        pa.field("c4_lorem_ipsum", pa.bool_()),
        pa.field("c4_curly_bracket", pa.bool_()),
        pa.field("c4_sentence_count", pa.int32()),
        pa.field("c4_bad_words", pa.int32()),
    )
    rules = (
        Rule("lorem_ipsum", "drop_lorem_ipsum", "present"),
        Rule("curly_bracket", "drop_curly_bracket", "present"),
        Rule("lines_kept", None, "below", reason="no_lines_left", fixed_limit=1),
        Rule("sentence_count", "min_sentences", "below"),
        Rule("bad_words", "max_bad_words", "above"),
    )
    file_settings = ("bad_words",)

    @classmethod
    def prepare(cls, config: C4Config, workspace: Path) -> C4Config:
        if config.bad_words is not None:
            checked_word_list(config.bad_words, "bad_words")
        return config

    def __init__(self, config: C4Config):
        super().__init__(config)
        self._bad_words = WordList.load(config.bad_words) if config.bad_words is not None else None

    def measure(self, text: str) -> Measured:
        config = self.config
        kept: list[str] = []
        too_long = no_punct = too_few = javascript = policy = citations = 0
        lorem_ipsum = curly_bracket = False
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            words = line.split()
            if config.max_word_length is not None and max(map(len, words)) > config.max_word_length:
                too_long += 1
                continue
            if config.remove_citations and "[" in line:
                line, cut = _CITATION.subn("", line)
                citations += cut
            if config.require_terminal_punct and (not line.endswith(_TERMINAL_PUNCTUATION) or line.endswith("...")):
                no_punct += 1
                continue
            if config.min_words_per_line is not None and len(words) < config.min_words_per_line:
                too_few += 1
                continue
            lowered = line.lower()
            lorem_ipsum = lorem_ipsum or "lorem ipsum" in lowered
            if config.remove_javascript_lines and "javascript" in lowered:
                javascript += 1
                continue
            curly_bracket = curly_bracket or "{" in line
            if config.remove_policy_lines and any(phrase in lowered for phrase in _POLICY_PHRASES):
                policy += 1
                continue
            kept.append(line)
        kept_text = "\n".join(kept).strip()  # a citation cut from the start of the first line leaves a space
        return Measured(
            (
                len(kept),
                too_long + no_punct + too_few + javascript + policy,
                too_long,
                no_punct,
                too_few,
                javascript,
                policy,
                citations,
                lorem_ipsum,
                curly_bracket,
                sum(map(count_sentences, kept)),
                self._bad_words.count(kept_text) if self._bad_words is not None else None,
            ),
            kept_text,
        )
