"""Word-list toxicity rule, C4 style: count whole-word matches of a list of words and phrases, drop above a limit.

C4 dropped every page holding any word of the "List of Dirty, Naughty, Obscene, and Otherwise Bad Words". The list
is a file path in config (one entry per line, `#` comments allowed); the project ships none. Matching is on
lower-cased word tokens, so "Scunthorpe" does not match "cunt" and a phrase matches across any whitespace.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
from pydantic import Field

from pipeline.schema import TEXT
from stages.base import Decision, Stage, StageConfig, StageSetupError, set_columns, with_outcome

_WORD = re.compile(r"\w+")


class WordList:
    """Words and phrases, matched as whole lower-cased word sequences."""

    def __init__(self, entries: list[str]):
        phrases = [tuple(_WORD.findall(entry.lower())) for entry in entries]
        phrases = [phrase for phrase in phrases if phrase]
        self._words = {phrase[0] for phrase in phrases if len(phrase) == 1}
        self._phrases_by_first: dict[str, set[tuple[str, ...]]] = {}
        for phrase in phrases:
            if len(phrase) > 1:
                self._phrases_by_first.setdefault(phrase[0], set()).add(phrase)

    @classmethod
    def load(cls, path: str | Path) -> "WordList":
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
        return cls([line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")])

    def __len__(self) -> int:
        return len(self._words) + sum(len(phrases) for phrases in self._phrases_by_first.values())

    def count(self, text: str) -> int:
        """How many times an entry occurs in the text (overlapping phrase matches each count)."""
        tokens = _WORD.findall(text.lower())
        matches = 0
        for index, token in enumerate(tokens):
            if token in self._words:
                matches += 1
            for phrase in self._phrases_by_first.get(token, ()):
                if tuple(tokens[index : index + len(phrase)]) == phrase:
                    matches += 1
        return matches


def checked_word_list(path: str, setting: str) -> WordList:
    """Load a configured word list for a stage's `prepare`; a missing or empty file names the setting at fault."""
    if not Path(path).is_file():
        raise StageSetupError(setting, f"{path} does not exist")
    words = WordList.load(path)
    if not len(words):
        raise StageSetupError(setting, f"{path} holds no words")
    return words


class ToxicWordsConfig(StageConfig):
    word_list: str = Field(description="Path of the word list: one word or phrase per line, # for comments.")
    max_matches: int = Field(0, ge=0, description="Documents with more matches are dropped (C4: 0, any match).")


class ToxicWords(Stage):
    name = "toxic_words"
    Config = ToxicWordsConfig
    output_fields = (pa.field("toxic_words_count", pa.int32()),)
    decisions = (Decision("toxic_words_count", "toxic_words", "max_matches", "above"),)
    file_settings = ("word_list",)

    @classmethod
    def prepare(cls, config: ToxicWordsConfig, workspace: Path) -> ToxicWordsConfig:
        checked_word_list(config.word_list, "word_list")
        return config

    def __init__(self, config: ToxicWordsConfig):
        super().__init__(config)
        self._words = WordList.load(config.word_list)

    def process(self, docs: pa.Table) -> pa.Table:
        counts = [self._words.count(text or "") for text in docs.column(TEXT).to_pylist()]
        drops = ["toxic_words" if count > self.config.max_matches else None for count in counts]
        docs = set_columns(docs, {"toxic_words_count": counts}, {"toxic_words_count": pa.int32()})
        none = [None] * docs.num_rows
        return with_outcome(docs, drops, none, none)
