"""MinHash near-duplicate detection, the numerical core: normalised text -> word n-gram shingles -> 64-bit MinHash
signatures -> LSH band keys; and the normalised-text hash that exact dedup groups on.

Everything is computed over whole batches with numpy, never one document or one word at a time in Python:

1. Normalisation (`Normalization`): NFKC, lower case, Unicode punctuation and symbols to spaces, optionally digits to
   "0"; invisible format characters (soft hyphens, zero-width spaces, BOMs) are removed and whitespace is collapsed.
   The definition is `lower(NFKC(text))`, then that per-character mapping, then `" ".join(result.split())`.
   It is computed on the UTF-8 bytes of a whole batch: ASCII bytes through one 256-byte table (`bytes.translate`),
   other characters decoded with numpy and looked up in per-code-point tables that a process fills in as it meets
   characters. A character is case-folded in place (É -> é), or replaced by bytes of another length (™ -> tm,
   ﬁ -> fi, Ｆ -> f) when its fold does not depend on its neighbours; only a document holding one that does
   (combining marks, which NFKC composes with the letter before; Hangul jamo; Greek capital sigma, whose lower case
   depends on its position in the word) goes through Python's `unicodedata.normalize` and `str.lower` as a whole.
2. Words are the runs of non-space bytes. A word's hash is `fmix64(poly(bytes))`, poly being the polynomial
   `sum(byte_j * P^(len-1-j)) mod 2^64`, computed for every word of the batch at once from one running sum of
   `byte_j * P^-j`. A shingle of n consecutive words hashes to `sum(word_hash_i * Q^(n-1-i)) mod 2^64` (Horner),
   built from the word hashes with n-1 array passes; shingles never cross documents. A document of fewer than n
   words has one shingle made of all its words; a document with no words has none. `shingle_hash` and
   `document_hash` are the plain-Python definitions of these hashes (the tests hold the vectorised code to them).
3. Permutations are datasketch 2.0's "affine64" scheme: `phv_k = a_k * fmix64(h) + b_k mod 2^64`, with `(a_k, b_k)`
   drawn as `MinHash._init_permutations` draws them from `numpy.random.RandomState(seed)`. A signature is therefore
   bit for bit `datasketch.MinHash(num_perm=bands*rows, seed=seed, scheme="affine64", hashfunc=shingle_hash)` updated
   with the document's shingle strings. This step is the cost (shingles x permutations 64-bit multiply-adds, about
   0.9 ns each on one core here): it runs permutation by permutation over blocks of whole documents of at most 64k
   shingles (512 KB, cache-resident), three numpy calls per permutation (multiply, add, `np.minimum.reduceat`).
4. `band_keys` hashes each band's `rows` values to 64 bits, with the band index in the top bits so that equal
   values in different bands can never share a key.

Empty documents (no words after normalisation) get the signature datasketch gives an empty MinHash (every value
2^64-1, `EMPTY_VALUE`) and the key `NO_BUCKET` in every band: a grouping must skip that key, so that MinHash never
declares two empty documents duplicates. Exact dedup (`document_hashes`) does group them, like any identical texts.
"""

from __future__ import annotations

import sys
import unicodedata
from functools import cache
from typing import NamedTuple, Sequence

import numpy as np
from pydantic import Field

from stages.base import StageConfig

EMPTY_VALUE = (1 << 64) - 1  # every value of an empty document's signature (datasketch's initial value)
NO_BUCKET = (1 << 64) - 1  # the band key of an empty document in every band; never the key of a real band

_MASK = (1 << 64) - 1
_BYTE_BASE = 0x9E3779B97F4A7C15  # P: polynomial base over a word's bytes (odd, so invertible mod 2^64)
SHINGLE_BASE = 0xC2B2AE3D27D4EB4F  # Q: Horner base over a shingle's word hashes
_DOCUMENT_BASE = 0x165667B19E3779F9  # Horner base over a document's word hashes
_DOCUMENT_SEED = 0x27D4EB2F165667C5  # where a document hash starts, so the empty document hashes too
_BAND_SEED = 0x85EBCA77C2B2AE63
_FMIX = ((33, 0xFF51AFD7ED558CCD), (33, 0xC4CEB9FE1A85EC53), (33, None))  # MurmurHash3's 64-bit finalizer
_SPACE = 0x20
_CHUNK_CHARS = 1 << 19  # characters of text normalised and hashed at once
_BLOCK_SHINGLES = 1 << 16  # shingles permuted at once: 512 KB of uint64, stays in L2


class Normalization(StageConfig):
    """How text is normalised before it is hashed, for exact and near-duplicate detection alike. Whitespace is
    always collapsed to single spaces and invisible format characters (soft hyphens, zero-width spaces) removed."""

    lowercase: bool = Field(True, description="Lower-case the text (Python's str.lower, after NFKC).")
    unicode_nfkc: bool = Field(True, description=(
        "Apply Unicode NFKC first: compatibility forms (fullwidth letters, ligatures, non-breaking spaces, "
        "'…') become their plain equivalents."))
    strip_punctuation: bool = Field(True, description=(
        "Unicode punctuation and symbols (categories P* and S*) become spaces, so they separate words."))
    mask_digits: bool = Field(False, description=(
        "Every decimal digit (any script) becomes '0', so texts that differ only in numbers (dates, counters, "
        "prices) normalise alike."))


class MinHashSettings(StageConfig):
    """Shingles, signature size and LSH banding of MinHash near-duplicate detection. The defaults (5-word shingles,
    14 bands of 8 rows) are FineWeb's: a pair with Jaccard similarity s becomes a candidate with probability
    1 - (1 - s^8)^14, which is 5% at s = 0.50, 50% at 0.685, 63% at (1/14)^(1/8) = 0.72 and 95% at 0.81.
    (datasketch's MinHashLSH picks 14 x 8 for 112 permutations at thresholds 0.65 to 0.69, 12 x 9 at 0.72.)"""

    ngram: int = Field(5, ge=1, description="Words per shingle; a shorter document is one shingle of all its words.")
    bands: int = Field(14, ge=1, description="LSH bands: a pair is a candidate when any band's rows all agree.")
    rows: int = Field(8, ge=1, description="Signature values per band; the signature has bands * rows values.")
    seed: int = Field(1, ge=0, lt=1 << 32, description=(
        "Seed of the permutations, drawn as datasketch draws them (numpy RandomState): signatures equal "
        "datasketch's MinHash(num_perm=bands*rows, seed=seed, scheme='affine64', hashfunc=shingle_hash)."))
    normalization: Normalization = Field(default_factory=Normalization, description="Text normalisation.")

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows


# The definitions, in plain Python: one value at a time, for tests and for datasketch's `hashfunc`.

def fmix64(value: int) -> int:
    """MurmurHash3's 64-bit finalizer, the bijection datasketch applies before its affine permutations."""
    for shift, multiplier in _FMIX:
        value ^= value >> shift
        if multiplier is not None:
            value = (value * multiplier) & _MASK
    return value


def word_hash(word: str) -> int:
    """64-bit hash of one normalised word: fmix64 of the polynomial of its UTF-8 bytes in base P, mod 2^64."""
    polynomial = 0
    for byte in word.encode("utf-8"):
        polynomial = (polynomial * _BYTE_BASE + byte) & _MASK
    return fmix64(polynomial)


def shingle_hash(shingle: str) -> int:
    """64-bit hash of one shingle, its normalised words joined by single spaces (n of them, or all the words of a
    document shorter than n): Horner in base Q over the word hashes, mod 2^64. What `signatures` feeds to the
    permutations; also usable as datasketch's `hashfunc`."""
    value = 0
    for word in shingle.split(" "):
        value = (value * SHINGLE_BASE + word_hash(word)) & _MASK
    return value


def document_hash(normalized_text: str) -> int:
    """64-bit hash of a normalised text (the key of exact dedup): fmix64 of a Horner chain over its word hashes."""
    value = _DOCUMENT_SEED
    for word in normalized_text.split():
        value = (value * _DOCUMENT_BASE + word_hash(word)) & _MASK
    return fmix64(value)


# Vectorised versions of the same.

def _fmix64(values: np.ndarray) -> np.ndarray:
    """fmix64 in place on a uint64 array (returned for convenience)."""
    scratch = np.empty_like(values)
    for shift, multiplier in _FMIX:
        np.right_shift(values, np.uint64(shift), out=scratch)
        values ^= scratch
        if multiplier is not None:
            values *= np.uint64(multiplier)
    return values


_power_tables: dict[int, np.ndarray] = {}
_POWER_TABLE_LIMIT = 1 << 22  # longer tables (for a text of millions of bytes) are computed, not kept


def _powers(base: int, count: int) -> np.ndarray:
    """base^0 ... base^(count-1) mod 2^64, from a per-process table that grows as needed."""
    table = _power_tables.get(base)
    if table is None or len(table) < count:
        size = max(count, min(2 * len(table) if table is not None else 1 << 16, _POWER_TABLE_LIMIT))
        table = np.full(size, base, dtype=np.uint64)
        table[0] = 1
        np.cumprod(table, out=table)
        if size <= _POWER_TABLE_LIMIT:
            _power_tables[base] = table
    return table[:count]


def _segment_polynomials(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, base: int) -> np.ndarray:
    """For each segment [start, end) of `values`: the polynomial sum(values[j] * base^(end-1-j)) mod 2^64, computed
    for all segments at once as base^(end-1) * (prefix[end] - prefix[start]), prefix being the running sum of
    values[j] * base^-j (base is odd, so invertible mod 2^64)."""
    prefix = np.empty(len(values) + 1, dtype=np.uint64)
    prefix[0] = 0
    np.multiply(values, _powers(pow(base, -1, 1 << 64), len(values)), out=prefix[1:])
    np.cumsum(prefix, out=prefix)
    polynomials = prefix[ends] - prefix[starts]
    polynomials *= _powers(base, len(values))[ends - 1]
    return polynomials


# Normalisation, per code point: the action of the case-folding step on a raw character, and the class of a
# character of case-folded text. Filled in on first sight of a character, so a process pays a few microseconds per
# distinct character it meets instead of a pass over all of Unicode.
_KEEP, _MAP, _BLANK, _REPLACE, _PYTHON = 0, 1, 2, 3, 4  # actions: as is, to `mapped` (same UTF-8 length), to
# spaces, to `replacements` (other lengths), whole document through Python
_SEPARATE, _DELETE, _DIGIT = 1, 2, 3  # classes (and _KEEP): to spaces, removed, to "0"


class _CharTable:
    def __init__(self, normalization: Normalization):
        self.normalization = normalization
        size = sys.maxunicode + 1
        self.known = np.zeros(size, dtype=bool)
        self.actions = np.zeros(size, dtype=np.uint8)
        self.mapped = np.zeros(size, dtype=np.uint32)
        self.classes = np.zeros(size, dtype=np.uint8)
        self.replacements: dict[int, bytes] = {}  # case-folded, ASCII bytes mapped
        ascii_bytes = bytearray(range(256))  # case folding and class of ASCII bytes, for bytes.translate
        for code in range(128):
            folded = self.case_fold(chr(code))
            ascii_bytes[code] = {_SEPARATE: _SPACE, _DIGIT: ord("0")}.get(self._class(folded), ord(folded))
        self.ascii = bytes(ascii_bytes)

    def case_fold(self, text: str) -> str:
        """The definition, and the Python path: lower(NFKC(text)) as configured."""
        text = self._nfkc(text)
        return text.lower() if self.normalization.lowercase else text

    def _nfkc(self, text: str) -> str:
        return unicodedata.normalize("NFKC", text) if self.normalization.unicode_nfkc else text

    def lookup(self, code_points: np.ndarray) -> np.ndarray:
        """`code_points`, after making sure the tables know them."""
        unknown = code_points[~self.known[code_points]]
        for code in np.unique(unknown).tolist():
            self._learn(code)
        return code_points

    def _class(self, char: str) -> int:
        category = unicodedata.category(char)
        if char.isspace() or category == "Cc" or (self.normalization.strip_punctuation and category[0] in "PS"):
            return _SEPARATE
        if category == "Cf":
            return _DELETE
        return _DIGIT if self.normalization.mask_digits and category == "Nd" else _KEEP

    def _composes(self, char: str) -> bool:
        """Can NFKC combine this character with a neighbour (marks, Hangul jamo)? Only such characters make the
        normal form of a text differ from the concatenation of its characters' normal forms."""
        return self.normalization.unicode_nfkc and (
            unicodedata.category(char)[0] == "M" or unicodedata.combining(char) != 0 or 0x1100 <= ord(char) <= 0x11FF)

    def _learn(self, code: int) -> None:
        char = chr(code)
        folded = self.case_fold(char)
        self.classes[code] = self._class(char)
        if folded == char and not self._composes(char):
            action = _KEEP
        elif self._composes(char) or self._composes(folded[0]) or (
                self.normalization.lowercase and "\u03a3" in self._nfkc(char)):
            action = _PYTHON  # the neighbours decide: composition, Greek final sigma
        elif all(self._class(c) == _SEPARATE for c in folded):
            action = _BLANK  # "\xa0", "…", "！": separators only
        elif len(folded) == 1 and len(folded.encode()) == len(char.encode()):
            action, self.mapped[code] = _MAP, ord(folded)
        else:
            action, self.replacements[code] = _REPLACE, folded.encode().translate(self.ascii)  # "™", "ﬁ", "´"
        self.actions[code] = action
        self.known[code] = True


_char_tables: dict[tuple, _CharTable] = {}


def _char_table(normalization: Normalization) -> _CharTable:
    key = tuple(normalization.model_dump().values())
    if key not in _char_tables:
        _char_tables[key] = _CharTable(normalization)
    return _char_tables[key]


class _Buffer(NamedTuple):
    """A batch's texts as one UTF-8 byte array, one space between documents, the ASCII bytes already mapped."""

    data: np.ndarray  # uint8, writable
    starts: np.ndarray  # int64: first byte of each document

    @classmethod
    def join(cls, encoded: list[bytes], table: _CharTable) -> _Buffer:
        data = np.frombuffer(bytearray(b" ").join(encoded).translate(table.ascii), dtype=np.uint8)
        sizes = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)) + 1
        return cls(data, np.cumsum(sizes) - sizes)

    def lead_bytes(self) -> np.ndarray:
        """Positions of the first bytes of the non-ASCII characters."""
        return np.flatnonzero(self.data >= 0xC0)

    def documents_of(self, positions: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, positions, side="right") - 1

    def replaced(self, leads: np.ndarray, replacements: list[bytes]) -> _Buffer:
        """The buffer with the characters starting at `leads` (in order) replaced by bytes of any length. Such
        characters are rare: the bytes between them are copied as slices, in one join."""
        ends = leads + _utf8_lengths(self.data[leads])
        view = memoryview(self.data)
        pieces: list = []
        previous = 0
        for lead, end, replacement in zip(leads.tolist(), ends.tolist(), replacements):
            pieces += (view[previous:lead], replacement)
            previous = end
        pieces.append(view[previous:])
        sizes = np.fromiter(map(len, replacements), dtype=np.int64, count=len(replacements))
        shifts = np.concatenate(([0], np.cumsum(sizes - (ends - leads))))
        return _Buffer(np.frombuffer(bytearray().join(pieces), dtype=np.uint8),
                       self.starts + shifts[np.searchsorted(leads, self.starts)])


def _utf8_lengths(lead: np.ndarray) -> np.ndarray:
    return 2 + (lead >= 0xE0).astype(np.int64) + (lead >= 0xF0)


def _decode(data: np.ndarray, leads: np.ndarray) -> np.ndarray:
    """Code points of the multi-byte characters starting at `leads`."""
    lead = data[leads].astype(np.uint32)
    second, third, fourth = ((data[np.minimum(leads + i, len(data) - 1)] & 0x3F).astype(np.uint32) for i in (1, 2, 3))
    two = ((lead & 0x1F) << 6) | second
    three = ((lead & 0x0F) << 12) | (second << 6) | third
    four = ((lead & 0x07) << 18) | (second << 12) | (third << 6) | fourth
    return np.where(lead >= 0xF0, four, np.where(lead >= 0xE0, three, two))


def _encode_in_place(data: np.ndarray, leads: np.ndarray, code_points: np.ndarray) -> None:
    """Write `code_points` over characters of the same UTF-8 length."""
    lengths = _utf8_lengths(data[leads])
    for length, marker in ((2, 0xC0), (3, 0xE0), (4, 0xF0)):
        at, code = leads[lengths == length], code_points[lengths == length]
        data[at] = marker | (code >> (6 * (length - 1)))
        for i in range(1, length):
            data[at + i] = 0x80 | ((code >> (6 * (length - 1 - i))) & 0x3F)


def _character_bytes(data: np.ndarray, leads: np.ndarray) -> np.ndarray:
    """The byte positions of the characters starting at `leads`."""
    lengths = _utf8_lengths(data[leads])
    return np.repeat(leads, lengths) + (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))


class _Words(NamedTuple):
    """A batch after normalisation: the words are the runs of non-space bytes of `data`."""

    data: np.ndarray  # uint8: normalised bytes; runs of spaces separate words, and documents
    starts: np.ndarray  # int64: first byte of each word
    ends: np.ndarray  # int64: one past the last byte of each word
    offsets: np.ndarray  # int64, documents + 1: the words of document d are offsets[d]:offsets[d+1]

    def hashes(self) -> np.ndarray:
        """`word_hash` of every word."""
        return _fmix64(_segment_polynomials(self.data, self.starts, self.ends, _BYTE_BASE))


def normalized_words(texts: Sequence[str], normalization: Normalization) -> _Words:
    """Normalise a batch on its UTF-8 bytes. ASCII bytes go through one 256-byte table. Other characters are
    decoded and looked up, and case-folded by table: in place, or replaced by bytes of another length; a document
    holding a character whose case folding depends on its neighbours is case-folded by Python instead. Then
    separators become spaces, format characters are removed and digits masked, as their classes say."""
    table = _char_table(normalization)
    encoded = [text.encode("utf-8", "replace") for text in texts]
    buffer = _Buffer.join(encoded, table)
    leads = buffer.lead_bytes()
    if len(leads):
        code_points = table.lookup(_decode(buffer.data, leads))
        actions = table.actions[code_points]
        python = actions == _PYTHON
        if python.any():
            python_docs = np.unique(buffer.documents_of(leads[python]))
            for doc in python_docs.tolist():
                encoded[doc] = table.case_fold(texts[doc]).encode("utf-8", "replace")
            buffer = _Buffer.join(encoded, table)
            leads = buffer.lead_bytes()
            code_points = table.lookup(_decode(buffer.data, leads))
            actions = table.actions[code_points]
            actions[np.isin(buffer.documents_of(leads), python_docs)] = _KEEP  # already case-folded
        to_map = actions == _MAP
        _encode_in_place(buffer.data, leads[to_map], table.mapped[code_points[to_map]])
        buffer.data[_character_bytes(buffer.data, leads[actions == _BLANK])] = _SPACE
        to_replace = actions == _REPLACE
        if to_replace.any():
            replacements = list(map(table.replacements.__getitem__, code_points[to_replace].tolist()))
            buffer = buffer.replaced(leads[to_replace], replacements)
        leads = buffer.lead_bytes()
        classes = table.classes[table.lookup(_decode(buffer.data, leads))]
        buffer.data[_character_bytes(buffer.data, leads[classes == _SEPARATE])] = _SPACE
        edited = (classes == _DELETE) | (classes == _DIGIT)
        if edited.any():
            buffer = buffer.replaced(leads[edited], [b"0" if kind == _DIGIT else b"" for kind in classes[edited].tolist()])
    in_word = np.zeros(len(buffer.data) + 2, dtype=bool)
    np.not_equal(buffer.data, _SPACE, out=in_word[1:-1])
    edges = np.flatnonzero(in_word[1:] != in_word[:-1])  # a word's first byte, then one past its last
    word_starts, word_ends = edges[0::2], edges[1::2]
    offsets = np.append(np.searchsorted(word_starts, buffer.starts), len(word_starts))
    return _Words(buffer.data, word_starts, word_ends, offsets)


def _chunks(texts: Sequence[str]) -> list[slice]:
    """Consecutive slices of `texts` of about _CHUNK_CHARS characters (a longer text is a chunk of its own)."""
    sizes = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    chunk_of = (np.cumsum(sizes) - sizes) // _CHUNK_CHARS
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(chunk_of)) + 1, [len(texts)]))
    return [slice(int(start), int(stop)) for start, stop in zip(bounds[:-1], bounds[1:]) if stop > start]


def normalize_texts(texts: Sequence[str], normalization: Normalization = Normalization()) -> list[str]:
    """The normalised texts: words joined by single spaces (see `Normalization`)."""
    normalized: list[str] = []
    for chunk in _chunks(texts):
        words = normalized_words(texts[chunk], normalization)
        keep = words.data != _SPACE
        last_words = words.offsets[1:] - 1
        separators = np.ones(len(words.ends), dtype=bool)
        separators[last_words[last_words >= words.offsets[:-1]]] = False
        keep[words.ends[separators]] = True  # the first space after every word but a document's last
        kept_before = np.concatenate(([0], np.cumsum(keep)))
        text = words.data[keep].tobytes()
        first, last = words.offsets[:-1], words.offsets[1:] - 1
        for doc_first, doc_last in zip(first.tolist(), last.tolist()):
            if doc_last < doc_first:
                normalized.append("")
            else:
                start, stop = kept_before[words.starts[doc_first]], kept_before[words.ends[doc_last]]
                normalized.append(text[start:stop].decode("utf-8"))
    return normalized


def normalize(text: str, normalization: Normalization = Normalization()) -> str:
    """One text normalised (see `Normalization`); `normalize_texts` does a batch at the cost of one call."""
    return normalize_texts([text], normalization)[0]


def document_hashes(texts: Sequence[str], normalization: Normalization = Normalization()) -> np.ndarray:
    """`document_hash(normalize(text))` of every text, as uint64: the key of exact dedup."""
    hashes = [np.zeros(0, dtype=np.uint64)]
    for chunk in _chunks(texts):
        words = normalized_words(texts[chunk], normalization)
        word_counts = np.diff(words.offsets)
        word_hashes = words.hashes()
        nonempty = word_counts > 0
        values = _DOCUMENT_SEED * _powers(_DOCUMENT_BASE, len(word_hashes) + 1)[word_counts]
        values[nonempty] += _segment_polynomials(word_hashes, words.offsets[:-1][nonempty],
                                                 words.offsets[1:][nonempty], _DOCUMENT_BASE)
        hashes.append(_fmix64(values))
    return np.concatenate(hashes)


class _Shingles(NamedTuple):
    hashes: np.ndarray  # uint64: `shingle_hash` of every shingle of the batch, document after document
    offsets: np.ndarray  # int64, documents + 1: the shingles of document d are hashes[offsets[d]:offsets[d+1]]


def _shingles(texts: Sequence[str], settings: MinHashSettings) -> _Shingles:
    """The shingle hashes of a batch, in order, from the word hashes: Horner over n consecutive words of a
    document, or over all its words when it has fewer than n."""
    words = normalized_words(texts, settings.normalization)
    word_hashes = words.hashes()
    first_words, word_counts = words.offsets[:-1], np.diff(words.offsets)
    ngram = settings.ngram
    counts = np.where(word_counts >= ngram, word_counts - ngram + 1, np.minimum(word_counts, 1))
    offsets = np.concatenate(([0], np.cumsum(counts)))
    short_docs = np.flatnonzero((word_counts > 0) & (word_counts < ngram))
    short_hashes = np.empty(len(short_docs), dtype=np.uint64)
    rolling = word_hashes.copy()  # rolling[i]: hash of the m words from word i, m = 1 ... ngram
    for m in range(1, ngram + 1):
        if m > 1:
            head = rolling[:max(len(rolling) - m + 1, 0)]
            head *= np.uint64(SHINGLE_BASE)
            head += word_hashes[m - 1:]
        of_length_m = word_counts[short_docs] == m
        short_hashes[of_length_m] = rolling[first_words[short_docs[of_length_m]]]
    positions = np.arange(offsets[-1]) - np.repeat(offsets[:-1] - first_words, counts)
    hashes = rolling[positions]
    hashes[offsets[short_docs]] = short_hashes
    return _Shingles(hashes, offsets)


@cache
def permutations(seed: int, num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of datasketch 2.0's "affine64" scheme: a odd, both uint64, drawn exactly as
    `datasketch.MinHash(num_perm, seed, scheme="affine64")` draws them."""
    generator = np.random.RandomState(seed)
    a = generator.randint(0, 1 << 63, num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = generator.randint(0, 1 << 64, num_perm, dtype=np.uint64)
    a.flags.writeable = b.flags.writeable = False
    return a, b


def _minimum_hashes(shingles: _Shingles, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """min over each document's shingles of a_k * fmix64(h) + b_k, for every k; EMPTY_VALUE where none. Runs
    permutation by permutation over blocks of whole documents of about _BLOCK_SHINGLES shingles."""
    counts = np.diff(shingles.offsets)
    signatures = np.full((len(counts), len(a)), EMPTY_VALUE, dtype=np.uint64)
    nonempty = np.flatnonzero(counts)
    if not len(nonempty):
        return signatures
    mixed = _fmix64(shingles.hashes.copy())
    doc_starts = np.append(shingles.offsets[nonempty], len(mixed))
    blocks = -(-len(mixed) // _BLOCK_SHINGLES)
    bounds = np.unique(np.searchsorted(doc_starts, np.arange(blocks + 1) * len(mixed) // blocks))  # in documents
    scratch = np.empty(np.diff(doc_starts[bounds]).max(), dtype=np.uint64)
    parameters = [(np.asarray(a_k), np.asarray(b_k)) for a_k, b_k in zip(a, b)]  # 0-d arrays: cheaper calls
    for first, stop in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        low, high = doc_starts[first], doc_starts[stop]
        values, permuted = mixed[low:high], scratch[:high - low]
        segment_starts = doc_starts[first:stop] - low
        minima = np.empty((len(a), stop - first), dtype=np.uint64)
        for (a_k, b_k), minima_k in zip(parameters, minima):
            np.multiply(values, a_k, out=permuted)
            np.add(permuted, b_k, out=permuted)
            np.minimum.reduceat(permuted, segment_starts, out=minima_k)
        signatures[nonempty[first:stop]] = minima.T
    return signatures


def signatures(texts: Sequence[str], settings: MinHashSettings = MinHashSettings()) -> np.ndarray:
    """MinHash signatures of raw texts, uint64 of shape (len(texts), bands * rows). Row i equals datasketch's
    MinHash(num_perm=bands*rows, seed=seed, scheme="affine64", hashfunc=shingle_hash) updated with the shingles of
    normalize(texts[i]); EMPTY_VALUE everywhere for a text with no words."""
    a, b = permutations(settings.seed, settings.num_perm)
    blocks = [np.zeros((0, settings.num_perm), dtype=np.uint64)]
    blocks += [_minimum_hashes(_shingles(texts[chunk], settings), a, b) for chunk in _chunks(texts)]
    return np.concatenate(blocks)


def shingle_sets(texts: Sequence[str], settings: MinHashSettings = MinHashSettings()) -> list[np.ndarray]:
    """Each text's distinct shingle hashes (`shingle_hash` values), sorted: for the exact Jaccard of a pair."""
    sets: list[np.ndarray] = []
    for chunk in _chunks(texts):
        shingles = _shingles(texts[chunk], settings)
        docs = np.repeat(np.arange(len(shingles.offsets) - 1), np.diff(shingles.offsets))
        order = np.lexsort((shingles.hashes, docs))
        hashes, docs = shingles.hashes[order], docs[order]
        first = np.ones(len(hashes), dtype=bool)
        first[1:] = (hashes[1:] != hashes[:-1]) | (docs[1:] != docs[:-1])
        bounds = np.searchsorted(docs[first], np.arange(1, len(shingles.offsets) - 1))
        sets += np.split(hashes[first], bounds)
    return sets


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sorted sets of distinct values (`shingle_sets`); 0.0 when both are empty."""
    common = len(np.intersect1d(a, b, assume_unique=True))
    union = len(a) + len(b) - common
    return common / union if union else 0.0


def estimated_jaccard(signature_a: np.ndarray, signature_b: np.ndarray) -> float:
    """The Jaccard similarity two signatures estimate (the share of equal values, as datasketch's
    MinHash.jaccard); 0.0 when either document is empty."""
    if (signature_a == EMPTY_VALUE).all() or (signature_b == EMPTY_VALUE).all():
        return 0.0
    return float(np.mean(signature_a == signature_b))


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per document and band, uint64 of shape (documents, bands): two documents share a key iff
    (up to a 2^-60 chance) their `rows` values in that band are equal. The band index is in the top bits, so keys
    of different bands never collide; an empty document gets NO_BUCKET in every band, which no real key equals."""
    count, width = signatures.shape
    if width != bands * rows:
        raise ValueError(f"signatures have {width} values, bands * rows = {bands * rows}")
    values = signatures.reshape(count, bands, rows)
    keys = np.full((count, bands), _BAND_SEED, dtype=np.uint64)
    for row in range(rows):
        keys ^= values[:, :, row]
        _fmix64(keys)
    band_bits = bands.bit_length()  # band indices < 2^band_bits - 1, so the top bits are never all ones
    keys >>= np.uint64(band_bits)
    keys |= np.arange(bands, dtype=np.uint64) << np.uint64(64 - band_bits)
    keys[(signatures == EMPTY_VALUE).all(axis=1)] = NO_BUCKET
    return keys


def lsh_probability(similarity: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """Probability that two documents of Jaccard similarity s share a band key: 1 - (1 - s^rows)^bands."""
    return 1.0 - (1.0 - np.asarray(similarity, dtype=float) ** rows) ** bands


def lsh_threshold(bands: int, rows: int) -> float:
    """The similarity where the detection curve is steepest, about (1/bands)^(1/rows): 0.719 for 14 x 8."""
    return (1.0 / bands) ** (1.0 / rows)
