"""Word n-grams as 64-bit hashes, computed over whole batches with numpy.

Words are those of the dedup stage (stages/dedup/minhash.py): its `Normalization` (NFKC, lower case, Unicode
punctuation and symbols to spaces, whitespace collapsed) and its vectorised word hashes, so that both stages agree on
what a word is. An n-gram of words w_0 ... w_{n-1} hashes to `sum(word_hash(w_i) * Q^(n-1-i)) mod 2^64`, which is
`minhash.shingle_hash` of the n words joined by spaces: stable across processes and machines (no salted `hash()`).
A text of fewer than n words has no n-gram. `numbers_only` tells the n-grams made of numbers alone (a row of a table,
a calculation), which say nothing of the text they come from.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from stages.dedup.minhash import SHINGLE_BASE, Normalization, normalized_words, word_hash

TEXTS_AT_ONCE = 4096  # texts normalised together: bounds the scratch arrays of a long list (an evaluation set)
_ZEROS = np.array([word_hash("0" * length) for length in range(1, 41)], dtype=np.uint64)  # numbers, digits masked


class Words(NamedTuple):
    hashes: np.ndarray  # uint64: the hash of every word, text after text
    offsets: np.ndarray  # int64, texts + 1: the words of text t are hashes[offsets[t]:offsets[t + 1]]


class NGrams(NamedTuple):
    hashes: np.ndarray  # uint64: every n-gram, text after text; n-gram i of a text starts at its word i
    offsets: np.ndarray  # int64, texts + 1: the n-grams of text t are hashes[offsets[t]:offsets[t + 1]]


def words(texts: Sequence[str], normalization: Normalization) -> Words:
    """The word hashes of each text."""
    hashes, counts = [np.zeros(0, dtype=np.uint64)], [np.zeros(0, dtype=np.int64)]
    for start in range(0, len(texts), TEXTS_AT_ONCE):
        found = normalized_words(texts[start:start + TEXTS_AT_ONCE], normalization)
        hashes.append(found.hashes())
        counts.append(np.diff(found.offsets))
    return Words(np.concatenate(hashes), np.concatenate(([0], np.cumsum(np.concatenate(counts)))))


def ngrams(found: Words, n: int) -> NGrams:
    """The n-gram hashes of each text, from its word hashes: Horner over n consecutive words, built with n - 1
    passes over the whole array; n-grams never cross texts."""
    first_words, offsets = _first_words(found.offsets, n)
    rolling = found.hashes.copy()  # after pass m, rolling[i] is the hash of the m + 1 words from word i
    for m in range(1, n):
        head = rolling[:max(len(rolling) - m, 0)]
        head *= np.uint64(SHINGLE_BASE)
        head += found.hashes[m:]
    return NGrams(rolling[first_words], offsets)


def text_ngrams(texts: Sequence[str], n: int, normalization: Normalization) -> NGrams:
    """The n-gram hashes of each text."""
    return ngrams(words(texts, normalization), n)


def numbers_only(texts: Sequence[str], n: int, normalization: Normalization) -> np.ndarray:
    """For each n-gram of `text_ngrams(texts, n, normalization)`: whether all its words are numbers (digits only:
    with digits masked, a word of zeros; the words are the same either way)."""
    masked = words(texts, normalization.model_copy(update={"mask_digits": True}))
    numbers_before = np.concatenate(([0], np.cumsum(np.isin(masked.hashes, _ZEROS))))
    first_words, _ = _first_words(masked.offsets, n)
    return numbers_before[first_words + n] - numbers_before[first_words] == n


def _first_words(word_offsets: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(the first word of every n-gram, the n-gram offsets of the texts)."""
    counts = np.maximum(np.diff(word_offsets) - (n - 1), 0)
    offsets = np.concatenate(([0], np.cumsum(counts)))
    return np.arange(offsets[-1]) + np.repeat(word_offsets[:-1] - offsets[:-1], counts), offsets
