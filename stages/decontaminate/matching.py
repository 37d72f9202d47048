"""What one document shares with the evaluation items, and the document with those passages cut out.

Only documents that the batch screen found holding an indexed n-gram come here (few), one at a time, each with
numpy over all its n-grams:

- `aligned_words`: the document's words, each tied to the whitespace-separated piece of the original text it came
  from (a piece such as "eggs." or "co-op" gives one word or more), so that a matched n-gram has a place in the text.
  The pieces are normalised one by one; since whitespace always separates words, they give the words of the whole.
- `find_overlap`: the index entries of the document's n-grams; per item, the share of its n-grams found (coverage)
  and the longest run of consecutive document n-grams that are all its own (span, in words); the items that meet a
  threshold, and the n-grams of those items, to cut.
- `cut_ranges` and `redact`: each such n-gram's text, widened by a margin and then to whole pieces, merged, removed.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

from stages.dedup.minhash import Normalization
from stages.decontaminate.index import EvalIndex
from stages.decontaminate.ngrams import Words, words

_PIECE = re.compile(r"\S+")


class AlignedWords(NamedTuple):
    words: Words  # the document's words as one text
    piece_starts: np.ndarray  # int64: where each whitespace-separated piece of the text starts
    piece_ends: np.ndarray  # int64: where it ends
    word_pieces: np.ndarray  # int64, per word: the piece it came from


class Overlap(NamedTuple):
    ngrams: int  # the document's n-grams (by position) that the index holds
    span_words: int  # the longest run of consecutive n-grams that one item holds, in words (0: none)
    coverage: float  # the largest share of one item's n-grams that the document holds (0.0: none)
    items: list[int]  # the items that meet a threshold: the document is contaminated by them; most covered first
    positions: np.ndarray  # int64: the n-grams of those items, by position (the word each starts at)


def aligned_words(text: str, normalization: Normalization) -> AlignedWords:
    spans = np.array([match.span() for match in _PIECE.finditer(text)], dtype=np.int64).reshape(-1, 2)
    found = words([text[start:end] for start, end in spans.tolist()], normalization)
    word_pieces = np.repeat(np.arange(len(spans)), np.diff(found.offsets))
    return AlignedWords(Words(found.hashes, np.array([0, len(found.hashes)])), spans[:, 0], spans[:, 1], word_pieces)


def find_overlap(index: EvalIndex, hashes: np.ndarray, min_item_coverage: float | None,
                 min_span_words: int | None) -> Overlap:
    """The overlap of a document, given its n-gram hashes in order, with the indexed items."""
    positions, items = index.entries(hashes)
    if not len(positions):
        return Overlap(0, 0, 0.0, [], np.zeros(0, dtype=np.int64))
    by_item = np.lexsort((hashes[positions], items))
    item_sorted, hash_sorted = items[by_item], hashes[positions][by_item]
    distinct = np.ones(len(by_item), dtype=bool)
    distinct[1:] = (item_sorted[1:] != item_sorted[:-1]) | (hash_sorted[1:] != hash_sorted[:-1])
    candidates, found = np.unique(item_sorted[distinct], return_counts=True)
    coverage = found / index.item_ngrams[candidates]
    by_item = np.argsort(items, kind="stable")  # positions stay in order within an item
    item_sorted, position_sorted = items[by_item], positions[by_item]
    run_starts = np.ones(len(by_item), dtype=bool)
    run_starts[1:] = (item_sorted[1:] != item_sorted[:-1]) | (position_sorted[1:] != position_sorted[:-1] + 1)
    first = np.flatnonzero(run_starts)
    longest = np.zeros(len(candidates), dtype=np.int64)
    np.maximum.at(longest, np.searchsorted(candidates, item_sorted[first]), np.diff(np.append(first, len(by_item))))
    span_words = longest + index.n - 1
    meets = np.zeros(len(candidates), dtype=bool)
    if min_item_coverage is not None:
        meets |= coverage >= min_item_coverage
    if min_span_words is not None:
        meets |= span_words >= min_span_words
    chosen = candidates[meets][np.lexsort((candidates[meets], -coverage[meets]))]
    return Overlap(len(np.unique(positions)), int(span_words.max()), float(coverage.max()), chosen.tolist(),
                   np.unique(positions[np.isin(items, chosen)]))


def cut_ranges(aligned: AlignedWords, positions: np.ndarray, n: int, margin_chars: int) -> np.ndarray:
    """(start, end) character ranges to remove, sorted and disjoint: the text of the n-grams at `positions`, widened
    by `margin_chars` on each side and then to whole pieces, so that no word is cut in two."""
    first_chars = aligned.piece_starts[aligned.word_pieces[positions]]
    last_chars = aligned.piece_ends[aligned.word_pieces[positions + n - 1]]
    starts = aligned.piece_starts[np.searchsorted(aligned.piece_ends, first_chars - margin_chars, side="right")]
    ends = aligned.piece_ends[np.searchsorted(aligned.piece_starts, last_chars + margin_chars, side="left") - 1]
    separate = np.ones(len(starts), dtype=bool)
    separate[1:] = starts[1:] > ends[:-1]  # both grow with the position: a range that starts past the last end
    groups = np.flatnonzero(separate)
    return np.stack((starts[groups], ends[np.append(groups[1:], len(ends)) - 1]), axis=1)


def redact(text: str, ranges: np.ndarray) -> str:
    """The text without `ranges`, the stretches around them joined by line breaks."""
    kept, previous = [], 0
    for start, end in ranges.tolist():
        kept.append(text[previous:start].strip())
        previous = end
    kept.append(text[previous:].strip())
    return "\n".join(stretch for stretch in kept if stretch)
