"""Benchmark decontamination: drop, redact or flag documents that hold evaluation items (GSM8K, ...) word for word.

A model evaluated on text it was trained on reports a score that means nothing. GPT-3, datatrove (n-gram
decontamination against lighteval tasks), NeMo Curator and the Llama and OLMo reports remove training documents
that share word n-grams with evaluation sets; datatrove drops a document for a single shared 12-gram. Here:

- The index (index.py): `prepare` reads every evaluation set once on the driver (eval_sets.py: JSONL, CSV or
  Parquet, local or URI, gzip or not; an item is its configured fields) and hashes the word n-grams of every item
  (n = 13, as GPT-3 and the Llama reports), normalised as dedup normalises (ngrams.py: NFKC, lower case,
  punctuation and whitespace folded, any script), digits masked so that an item whose numbers were changed is still
  found. N-grams that more than `max_items_per_ngram` items share (a template sentence, a licence line) and n-grams
  of numbers alone never count. The index is written to a local file of the driver's (in the cache, named by the
  settings), which the run stages into its directory for the workers like a model (`file_settings`).
- Per batch: the n-grams of all its documents, hashed with numpy, and one look-up for all of them (a bit table of
  hash buckets, then `searchsorted` in the index's sorted hashes); only documents holding an indexed n-gram are
  looked at closer (matching.py).
- Per such document: for each item it touches, the share of the item's n-grams it holds (`decon_coverage`, the
  best item's) and the longest run of consecutive n-grams of the item (`decon_span_words`, in words). An item that
  reaches `min_item_coverage` or `min_span_words` contaminates the document: a document quoting half a GSM8K
  question is caught, one that shares a single 13-gram with a long item is not. `decon_items` names those items
  (`gsm8k:17`: the 17th item of the set gsm8k), `decon_sets` their sets, `decon_ngrams` counts the document's
  n-grams found in the index.
- The decision, by `action`: `drop` (reason `contaminated`); `redact`: the passages of those items are cut out with
  `redact_margin_chars` around them (GPT-3 cut 200 characters around each match), and a document left with fewer
  than `min_remaining_words` words is dropped as `contaminated_too_short` (`decon_words_left`); `flag`: kept,
  signals only. A row without text passes with null signals.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator, model_validator

from pipeline.io.download import cache_base
from pipeline.schema import DROP_REASON, TEXT
from stages.base import Decision, Stage, StageConfig, StageSetupError, set_columns, with_outcome
from stages.dedup.minhash import Normalization
from stages.decontaminate.eval_sets import EvalFileError, read_items
from stages.decontaminate.index import build_index, load_index, write_index
from stages.decontaminate.matching import aligned_words, cut_ranges, find_overlap, redact
from stages.decontaminate.ngrams import ngrams, text_ngrams

SETS = "decon_sets"
ITEMS = "decon_items"
NGRAMS = "decon_ngrams"
SPAN = "decon_span_words"
COVERAGE = "decon_coverage"
WORDS_LEFT = "decon_words_left"
INDEX_FILE = "decontamination-index.npz"


class EvalSetConfig(StageConfig):
    name: str = Field(description="The set's name, in signals and reports (gsm8k).")
    paths: list[str] = Field(min_length=1, description="Its files: JSON lines, CSV or Parquet (optionally .gz), "
                             "local paths or URIs.")
    fields: list[str] = Field(min_length=1, description="The fields that hold an item's text, joined in this order "
                              "(GSM8K: [question, answer]).")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise ValueError(f"{name!r}: a set name is letters, digits, '.', '_' and '-' (it names items: gsm8k:17)")
        return name


class DecontaminationNormalization(Normalization):
    """Text normalisation before hashing: dedup's, with digits masked by default."""

    mask_digits: bool = Field(True, description=(
        "Every decimal digit (any script) becomes '0', so that an item copied with its numbers changed digit for "
        "digit is still found. N-grams of numbers alone never count, masked or not."))


class DecontaminateConfig(StageConfig):
    eval_sets: list[EvalSetConfig] = Field(default_factory=list, description="A list: the evaluation sets to "
                                           "keep out, each {name, paths, fields}; at least one.")
    n: int = Field(13, ge=3, le=64, description="Words per n-gram (13: GPT-3's and the Llama reports').")
    action: Literal["drop", "redact", "flag"] = Field("drop", description="drop: the contaminated document "
                                                      "(contaminated); redact: cut the matched passages out; flag: "
                                                      "keep it, with its signals.")
    min_item_coverage: float | None = Field(0.2, gt=0, le=1, description="An item of which the document holds at "
                                            "least this share of n-grams contaminates it; null: coverage decides "
                                            "nothing.")
    min_span_words: int | None = Field(15, ge=1, description="An item of which the document holds a passage of at "
                                       "least this many words (consecutive n-grams) contaminates it; at least n; "
                                       "null: spans decide nothing.")
    max_items_per_ngram: int | None = Field(10, ge=1, description="An n-gram that more evaluation items hold is too "
                                            "common to count (a template or licence sentence); null: all count.")
    redact_margin_chars: int = Field(200, ge=0, description="redact: characters also cut on each side of a matched "
                                     "passage (widened to whole words).")
    min_remaining_words: int = Field(50, ge=0, description="redact: a document left with fewer words is dropped as "
                                     "contaminated_too_short.")
    normalization: DecontaminationNormalization = Field(default_factory=DecontaminationNormalization,
                                                        description="Text normalisation before hashing.")
    index: str | None = Field(None, description="Set by the run: the index prepare builds from eval_sets, staged for "
                              "the workers. Leave it unset.")

    @model_validator(mode="after")
    def _consistent(self) -> "DecontaminateConfig":
        if self.min_item_coverage is None and self.min_span_words is None:
            raise ValueError("min_item_coverage and min_span_words are both null: no document could be found "
                             "contaminated")
        if self.min_span_words is not None and self.min_span_words < self.n:
            raise ValueError(f"min_span_words ({self.min_span_words}) is below n ({self.n}): every matched passage "
                             "is at least n words long")
        return self

    @field_validator("eval_sets")
    @classmethod
    def _distinct_names(cls, eval_sets: list[EvalSetConfig]) -> list[EvalSetConfig]:
        names = [eval_set.name for eval_set in eval_sets]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"the name {repeated[0]!r} is given to two sets")
        return eval_sets


class Decontaminate(Stage):
    name = "decontaminate"
    Config = DecontaminateConfig
    output_fields = (
        pa.field(SETS, pa.list_(pa.string())),
        pa.field(ITEMS, pa.list_(pa.string())),
        pa.field(NGRAMS, pa.int32()),
        pa.field(SPAN, pa.int32()),
        pa.field(COVERAGE, pa.float32()),
        pa.field(WORDS_LEFT, pa.int32()),
    )
    decisions = (
        Decision(COVERAGE, "contaminated", "min_item_coverage", "at or above"),
        Decision(SPAN, "contaminated", "min_span_words", "at or above"),
        Decision(WORDS_LEFT, "contaminated_too_short", "min_remaining_words", "below"),
    )
    file_settings = ("index",)

    @classmethod
    def prepare(cls, config: DecontaminateConfig, workspace: Path) -> DecontaminateConfig:
        """Read the sets and build the index on the driver, into a local file named by the settings it is made
        from (the cache); the run stages it into its directory for the workers."""
        if not config.eval_sets:
            raise StageSetupError("eval_sets", "no evaluation set given: name one, with its paths and fields")
        sets = []
        for number, eval_set in enumerate(config.eval_sets):
            try:
                items = [text for path in eval_set.paths for text in read_items(path, eval_set.fields)]
            except EvalFileError as exc:
                raise StageSetupError(f"eval_sets[{number}].paths", str(exc)) from None
            if not items:
                raise StageSetupError(f"eval_sets[{number}]", f"{eval_set.name}: its files hold no item")
            sets.append((eval_set.name, items))
        index = build_index(sets, config.n, config.normalization, config.max_items_per_ngram)
        for number, (name, items) in enumerate(sets):
            if index.set_unmatchable[number] == len(items):
                raise StageSetupError(f"eval_sets[{number}]", f"{name}: none of its {len(items):,} items has an "
                                      f"n-gram to look for (all are shorter than n = {config.n} words, or share "
                                      "their n-grams with too many others): lower n")
        digest = hashlib.sha256(config.model_dump_json(exclude={"index"}).encode()).hexdigest()[:16]
        path = cache_base() / "decontaminate" / digest / INDEX_FILE
        write_index(index, path)
        return config.model_copy(update={"index": str(path)})

    def __init__(self, config: DecontaminateConfig):
        super().__init__(config)
        if config.index is None:
            raise StageSetupError("index", "no index: the stage's prepare builds it from eval_sets")
        self._index = load_index(config.index)
        if (self._index.n, self._index.normalization.model_dump()) != (config.n, config.normalization.model_dump()):
            raise StageSetupError("index", f"{config.index} was built with other settings (n = {self._index.n})")

    def process(self, docs: pa.Table) -> pa.Table:
        texts = docs.column(TEXT).to_pylist()
        present = [row for row, text in enumerate(texts) if text is not None]
        absent: list = [None] * len(texts)
        signals = {SETS: list(absent), ITEMS: list(absent), NGRAMS: list(absent), SPAN: list(absent),
                   COVERAGE: list(absent), WORDS_LEFT: list(absent)}
        for row in present:
            signals[SETS][row], signals[ITEMS][row] = [], []
            signals[NGRAMS][row], signals[SPAN][row], signals[COVERAGE][row] = 0, 0, 0.0
        drops: list[str | None] = list(absent)
        for row in self._screen([texts[row] for row in present]):
            texts[present[row]] = self._judge(present[row], texts[present[row]], signals, drops)
        docs = set_columns(docs, {**signals, TEXT: texts}, {field.name: field.type for field in self.output_fields}
                           | {TEXT: pa.string()})
        return with_outcome(docs, drops, absent, absent)

    def counts(self, outcome: pa.Table) -> dict:
        """Per evaluation set, over the batch's documents that hold its items (pipeline/contamination.py's
        SetCounts): how many, how many of them dropped, the documents per item found and per domain."""
        found: dict = {}
        rows = outcome.select([ITEMS, "domain", DROP_REASON]).filter(pc.greater(pc.list_value_length(outcome[ITEMS]), 0))
        for row in rows.to_pylist():
            domain = row["domain"] or "(none)"
            for set_name in {item.rsplit(":", 1)[0] for item in row[ITEMS]}:
                counts = found.setdefault(set_name, {"documents": 0, "dropped": 0, "items": {}, "domains": {}})
                counts["documents"] += 1
                counts["dropped"] += row[DROP_REASON] is not None
                counts["domains"][domain] = counts["domains"].get(domain, 0) + 1
            for item in row[ITEMS]:
                set_name, number = item.rsplit(":", 1)
                items = found[set_name]["items"]
                items[number] = items.get(number, 0) + 1
        return found

    def _screen(self, texts: list[str]) -> list[int]:
        """The texts (by position) that hold at least one indexed n-gram: one lookup for the whole batch."""
        grams = text_ngrams(texts, self.config.n, self.config.normalization)
        found_before = np.concatenate(([0], np.cumsum(self._index.contains(grams.hashes))))
        return np.flatnonzero(found_before[grams.offsets[1:]] > found_before[grams.offsets[:-1]]).tolist()

    def _judge(self, row: int, text: str, signals: dict[str, list], drops: list[str | None]) -> str:
        """Fill in one screened document's signals and decision; returns its text (redacted, when it is)."""
        config = self.config
        aligned = aligned_words(text, config.normalization)
        overlap = find_overlap(self._index, ngrams(aligned.words, config.n).hashes, config.min_item_coverage,
                               config.min_span_words)
        names = [self._index.item_name(item) for item in overlap.items]
        signals[ITEMS][row] = names
        signals[SETS][row] = sorted({name.rsplit(":", 1)[0] for name in names})
        signals[NGRAMS][row], signals[SPAN][row], signals[COVERAGE][row] = (overlap.ngrams, overlap.span_words,
                                                                           overlap.coverage)
        if not overlap.items or config.action == "flag":
            return text
        if config.action == "drop":
            drops[row] = "contaminated"
            return text
        redacted = redact(text, cut_ranges(aligned, overlap.positions, config.n, config.redact_margin_chars))
        signals[WORDS_LEFT][row] = len(redacted.split())
        if signals[WORDS_LEFT][row] < config.min_remaining_words:
            drops[row] = "contaminated_too_short"
            return text
        return redacted
