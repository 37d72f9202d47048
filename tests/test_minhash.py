"""MinHash near-duplicate detection (stages/dedup/minhash.py): signatures bit for bit equal to datasketch's,
normalisation against its plain-Python definition in 75 languages, shingles, band keys, and the LSH S-curve measured
on pairs of real texts with controlled Jaccard similarity."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import tarfile
import unicodedata
import zipfile
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH
from datasketch.lsh import _false_negative_probability, _false_positive_probability
from scipy.integrate import quad

from stages.dedup.minhash import (
    EMPTY_VALUE,
    NO_BUCKET,
    MinHashSettings,
    Normalization,
    band_keys,
    document_hash,
    document_hashes,
    estimated_jaccard,
    jaccard,
    lsh_probability,
    lsh_threshold,
    normalize,
    normalize_texts,
    permutations,
    shingle_hash,
    shingle_sets,
    signatures,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SETTINGS = MinHashSettings()


def corpus_texts() -> list[str]:
    """The real books, speeches, web text and plays of ../shared/data/text, one string per file, read in place."""
    texts = []
    for archive_path in sorted((DATA / "text").glob("*/*.zip")):
        if archive_path.stem == "stopwords":
            continue
        with zipfile.ZipFile(archive_path) as archive:
            for name in archive.namelist():
                if not name.endswith("/") and not name.endswith("README"):
                    raw = archive.read(name)
                    try:
                        texts.append(raw.decode("utf-8"))
                    except UnicodeDecodeError:
                        texts.append(raw.decode("cp1252", errors="replace"))
    texts.append((DATA / "text" / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8"))
    return texts


@pytest.fixture(scope="module")
def word_streams() -> list[list[str]]:
    """Each real text normalised, as its list of words."""
    return [text.split(" ") for text in normalize_texts(corpus_texts()) if text]


@pytest.fixture(scope="module")
def real_documents() -> list[str]:
    """Raw windows of the real texts, 1 to 1,500 words, with their punctuation, case and line breaks; plus a text
    with characters whose case folding changes their length (™, ½, ﬁ, fullwidth) or needs Python (a combining
    accent, Greek capital sigma), and a few short and empty ones."""
    rng = np.random.default_rng(7)
    documents = []
    for text in corpus_texts()[::6]:
        words = text.split(" ")
        for length in (1, 3, 4, 5, 6, 40, 700, 1500):
            start = int(rng.integers(0, max(1, len(words) - length)))
            documents.append(" ".join(words[start:start + length]))
    documents += ["Project Gutenberg™ ½ price, cafe\u0301 na\u00efve ΟΔΟΣ ΣΟΦΙΑ " * 20, "", "  \n ", "— !!! …",
                  "Stop.", "fullwidth ＡＢＣ ｄｅｆ and ﬁnal ligatures"]
    return documents


def datasketch_signature(text: str, settings: MinHashSettings = SETTINGS) -> np.ndarray:
    """datasketch's MinHash of a text, with our normalisation and our shingle hash as its hashfunc."""
    normalized = normalize(text, settings.normalization)
    words = normalized.split(" ") if normalized else []
    shingles = [" ".join(words[i:i + settings.ngram]) for i in range(len(words) - settings.ngram + 1)]
    if words and not shingles:
        shingles = [normalized]
    minhash = MinHash(num_perm=settings.num_perm, seed=settings.seed, scheme="affine64", hashfunc=shingle_hash)
    minhash.update_batch(shingles)
    return minhash.hashvalues


# ------------------------------------------------------------------------------------------ datasketch agreement


def test_permutations_are_datasketch_affine64_permutations():
    for seed, num_perm in ((1, 112), (0, 7), (12345, 256)):
        a, b = permutations(seed, num_perm)
        reference = MinHash(num_perm=num_perm, seed=seed, scheme="affine64").permutations
        assert np.array_equal(a, reference[0]) and np.array_equal(b, reference[1])


def test_signatures_equal_datasketch_minhash_bit_for_bit(real_documents):
    ours = signatures(real_documents)
    assert ours.shape == (len(real_documents), 112) and ours.dtype == np.uint64
    for text, signature in zip(real_documents, ours):
        assert np.array_equal(signature, datasketch_signature(text)), text[:80]


def test_signatures_equal_datasketch_with_other_settings(real_documents):
    settings = MinHashSettings(ngram=3, bands=5, rows=4, seed=99,
                               normalization=Normalization(lowercase=False, strip_punctuation=False))
    ours = signatures(real_documents[:40], settings)
    for text, signature in zip(real_documents[:40], ours):
        assert np.array_equal(signature, datasketch_signature(text, settings))


def test_document_hashes_are_the_hash_of_the_normalised_text(real_documents):
    expected = [document_hash(normalize(text)) for text in real_documents]
    assert document_hashes(real_documents).tolist() == expected


# ------------------------------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize("raw,normalized", [
    ("Hello,   World!\n\tIt's  (really) me…", "hello world it s really me"),
    ("ﬁne ＦＵＬＬ\u00a0width\u2003spaces", "fine full width spaces"),  # NFKC: ligature, fullwidth, odd spaces
    ("cafe\u0301 = café", "café café"),  # combining accent composed; "=" is a symbol
    ("soft\u00adhyphen zero\u200bwidth \ufeffBOM", "softhyphen zerowidth bom"),  # format characters removed
    ("ΟΔΟΣ ΣΟΦΙΑΣ.", "οδος σοφιας"),  # Greek final sigma, as str.lower
    ("İstanbul Ⱥ", "i\u0307stanbul ⱥ"),  # lower() that changes the UTF-8 length
    ("price: $1,234.50 ½", "price 1 234 50 1 2"),  # symbols and the fraction slash are separators
    ("", ""),
    (" \n\t ", ""),
])
def test_normalize(raw, normalized):
    assert normalize(raw) == normalized


def test_normalize_options():
    text = "Année 2024: ÉTÉ, ٣ jours!"
    assert normalize(text, Normalization(mask_digits=True)) == "année 0000 été 0 jours"
    assert normalize(text, Normalization(lowercase=False)) == "Année 2024 ÉTÉ ٣ jours"
    assert normalize(text, Normalization(strip_punctuation=False)) == "année 2024: été, ٣ jours!"
    assert normalize("ﬁ Ａ", Normalization(unicode_nfkc=False)) == "ﬁ ａ"


EDGE_CASES = [
    "ΟΔΟΣ ΟΔΟΣ. Σ ϹΣ ΣΑ",  # final sigma, also from a compatibility character
    "ﬁ İ Ⅸ ½ x² ™ don´t na¨ve",  # folds that change the length, some with combining marks
    "e\u0301 <\u0338 ㅎㅏ ᄒ ᅡ 가\u11a8",  # compositions with the neighbour, Hangul jamo
    "\u00ad\u200b\ufeffa\u200db A\x00B\x1fC\x85D\u2028E",  # format and control characters, odd line breaks
    "Ａｂｃ１２３！ ٣٤ ۵۶ १२ ①",  # fullwidth, Arabic-Indic, Devanagari and circled digits
]


def _reference_normalize(text: str, normalization: Normalization) -> str:
    """The definition, one character at a time: lower(NFKC(text)), then separators to spaces, format characters
    removed, digits masked, whitespace collapsed."""
    if normalization.unicode_nfkc:
        text = unicodedata.normalize("NFKC", text)
    if normalization.lowercase:
        text = text.lower()
    out = []
    for char in text:
        category = unicodedata.category(char)
        if char.isspace() or category == "Cc" or (normalization.strip_punctuation and category[0] in "PS"):
            out.append(" ")
        elif category != "Cf":
            out.append("0" if normalization.mask_digits and category == "Nd" else char)
    return " ".join("".join(out).split())


@pytest.fixture(scope="module")
def sentences_75_languages() -> list[str]:
    """Web-crawled sentences (Leipzig corpora) in 75 languages and scripts, ten to a text."""
    texts = []
    with tarfile.open(DATA / "langid" / "leipzig" / "language-testdata.tar.gz") as archive:
        for member in archive.getmembers():
            if member.isfile() and "/sentences/" in member.name:
                lines = archive.extractfile(member).read().decode("utf-8").splitlines()
                texts += [" ".join(lines[i:i + 10]) for i in range(0, 300, 10)]
    assert len(texts) == 75 * 30
    return texts + EDGE_CASES


@pytest.mark.parametrize("flags", list(itertools.product((True, False), repeat=4)))
def test_normalize_matches_its_definition_in_75_languages(sentences_75_languages, flags):
    """All 3,000 sentences per language with the default settings, 500 with each other combination."""
    normalization = Normalization(**dict(zip(Normalization.model_fields, flags)))
    texts = sentences_75_languages if normalization == Normalization() else sentences_75_languages[::6]
    assert normalize_texts(texts, normalization) == [_reference_normalize(text, normalization) for text in texts]


def test_normalize_is_idempotent(sentences_75_languages):
    once = normalize_texts(sentences_75_languages)
    assert normalize_texts(once) == once


# ---------------------------------------------------------------------------------------------------- shingles


def test_shingles_do_not_cross_documents(real_documents):
    """A batch (several normalisation chunks and permutation blocks) signs each text as it would sign it alone."""
    batch = real_documents * 4
    together = signatures(batch)
    alone = np.stack([signatures([text])[0] for text in real_documents])
    assert np.array_equal(together, np.tile(alone, (4, 1)))
    sets = shingle_sets(batch)
    assert all(np.array_equal(sets[i], shingle_sets([text])[0]) for i, text in enumerate(batch))


def test_shingle_sets_are_the_hashes_of_the_word_ngrams():
    text = "One two, THREE four five six; one two three four five!"
    expected = {shingle_hash(shingle) for shingle in
                ("one two three four five", "two three four five six", "three four five six one",
                 "four five six one two", "five six one two three", "six one two three four")}
    (found,) = shingle_sets([text])
    assert found.tolist() == sorted(expected)


def test_a_short_document_is_one_shingle_of_all_its_words():
    (found,) = shingle_sets(["Just three words."])
    assert found.tolist() == [shingle_hash("just three words")]
    assert np.array_equal(signatures(["Just three words."])[0], datasketch_signature("Just three words."))


def test_empty_documents_are_in_no_bucket_and_never_near_duplicates():
    texts = ["", " — … !!! ", "\u200b\u00ad", "a real sentence with more than five words in it"]
    sigs = signatures(texts)
    assert (sigs[:3] == EMPTY_VALUE).all() and not (sigs[3] == EMPTY_VALUE).any()
    keys = band_keys(sigs, SETTINGS.bands, SETTINGS.rows)
    assert (keys[:3] == NO_BUCKET).all() and not (keys[3] == NO_BUCKET).any()
    assert estimated_jaccard(sigs[0], sigs[1]) == 0.0
    assert [len(s) for s in shingle_sets(texts)] == [0, 0, 0, 6]
    assert jaccard(*shingle_sets(texts[:2])) == 0.0


def test_signatures_are_the_same_in_another_process(real_documents):
    script = ("import json, sys, hashlib; from stages.dedup.minhash import signatures; "
              "print(hashlib.sha256(signatures(json.load(sys.stdin)).tobytes()).hexdigest())")
    result = subprocess.run([sys.executable, "-c", script], input=json.dumps(real_documents), capture_output=True,
                            text=True, cwd=REPO, env={**os.environ, "PYTHONHASHSEED": "12345"}, check=True)
    assert result.stdout.strip() == hashlib.sha256(signatures(real_documents).tobytes()).hexdigest()


def test_a_text_of_millions_of_characters_signs_like_a_short_one(real_documents):
    """Repeating a text adds no shingle after the second copy; 500 copies (5 MB) take the uncached power tables."""
    text = max(real_documents, key=len) + "\n"
    assert len(text * 500) > 4_000_000
    assert np.array_equal(signatures([text * 500]), signatures([text * 2]))


# --------------------------------------------------------------------------------------------------- band keys


def test_band_keys_differ_across_bands_for_equal_values():
    equal_values = np.full((3, 112), 42, dtype=np.uint64)
    equal_values[1] = 7
    keys = band_keys(equal_values, 14, 8)
    assert keys.shape == (3, 14) and keys.dtype == np.uint64
    assert all(len(set(row.tolist())) == 14 for row in keys)  # one value, 14 different keys
    assert np.array_equal(keys[0], keys[2]) and not (keys[0] == keys[1]).any()
    assert ((keys >> np.uint64(60)) == np.arange(14, dtype=np.uint64)).all()  # the band index in the top bits


def test_band_keys_agree_exactly_where_the_band_values_agree():
    rng = np.random.default_rng(3)
    sigs = rng.integers(0, 2**63, (2, 112), dtype=np.uint64)
    sigs[1, 16:24] = sigs[0, 16:24]  # band 2 equal
    sigs[1, 0:7] = sigs[0, 0:7]  # band 0 equal but for one row
    keys = band_keys(sigs, 14, 8)
    assert (keys[0] == keys[1]).tolist() == [band == 2 for band in range(14)]


def test_lsh_maths_agree_with_datasketch():
    for threshold in (0.5, 0.72, 0.9):
        assert quad(lambda s: lsh_probability(s, 14, 8), 0, threshold)[0] == pytest.approx(
            _false_positive_probability(threshold, 14, 8), rel=1e-9)
        assert quad(lambda s: 1 - lsh_probability(s, 14, 8), threshold, 1)[0] == pytest.approx(
            _false_negative_probability(threshold, 14, 8), rel=1e-9)
    assert lsh_threshold(14, 8) == pytest.approx(0.719, abs=5e-4)
    assert lsh_probability(0.6847, 14, 8) == pytest.approx(0.5, abs=1e-3)
    # datasketch's optimiser (equal false-positive and false-negative weights) lands on 14 x 8 for thresholds 0.65
    # to 0.69, around the curve's 50% point; at 0.72 it prefers 12 x 9.
    assert (MinHashLSH(threshold=0.68, num_perm=112).b, MinHashLSH(threshold=0.68, num_perm=112).r) == (14, 8)
    assert (MinHashLSH(threshold=0.72, num_perm=112).b, MinHashLSH(threshold=0.72, num_perm=112).r) == (12, 9)


# ------------------------------------------------------------------------------------- pairs of known similarity

S_CURVE_SIMILARITIES = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
PAIRS_PER_SIMILARITY = 1000
JACCARD_TOLERANCE = 0.005


def pair_shape(similarity: float, ngram: int) -> tuple[int, int]:
    """(words per document, shift) such that two windows of a text without repeated shingles, the second starting
    `shift` words after the first, have shingle Jaccard similarity (m - shift) / (m + shift) closest to
    `similarity`, m being the shingles per document (200 to 300)."""
    shingles, shift = min(((m, round(m * (1 - similarity) / (1 + similarity))) for m in range(200, 301)),
                          key=lambda shape: abs((shape[0] - shape[1]) / (shape[0] + shape[1]) - similarity))
    return shingles + ngram - 1, shift


def controlled_pairs(word_streams: list[list[str]], similarity: float, count: int) -> tuple[list, list, np.ndarray]:
    """`count` pairs of documents cut from disjoint stretches of the real texts (taken from every text in turn),
    kept when the Jaccard similarity of their shingle sets is within JACCARD_TOLERANCE of `similarity`."""
    length, shift = pair_shape(similarity, SETTINGS.ngram)
    stretches = [[(words, start) for start in range(0, len(words) - length - shift, length + shift)]
                 for words in word_streams]
    taking_turns = (stretch for stretch in itertools.chain.from_iterable(itertools.zip_longest(*stretches)) if stretch)
    firsts, seconds = [], []
    for words, start in itertools.islice(taking_turns, 2 * count):
        firsts.append(" ".join(words[start:start + length]))
        seconds.append(" ".join(words[start + shift:start + shift + length]))
    sets = shingle_sets(firsts + seconds)
    similarities = np.array([jaccard(sets[i], sets[len(firsts) + i]) for i in range(len(firsts))])
    kept = np.flatnonzero(np.abs(similarities - similarity) <= JACCARD_TOLERANCE)[:count]
    assert len(kept) == count, f"only {len(kept)} pairs at similarity {similarity}"
    return [firsts[i] for i in kept], [seconds[i] for i in kept], similarities[kept]


@pytest.fixture(scope="module")
def s_curve_pairs(word_streams) -> dict[float, tuple[list, list, np.ndarray]]:
    return {s: controlled_pairs(word_streams, s, PAIRS_PER_SIMILARITY) for s in S_CURVE_SIMILARITIES}


def detection_rate(firsts: list[str], seconds: list[str], settings: MinHashSettings = SETTINGS) -> float:
    """Share of pairs that share at least one band key."""
    keys = band_keys(signatures(firsts + seconds, settings), settings.bands, settings.rows)
    return float((keys[:len(firsts)] == keys[len(firsts):]).any(axis=1).mean())


def test_s_curve_detection_rate_matches_lsh_theory(s_curve_pairs):
    """1,000 pairs per similarity from real text (one standard error is at most 0.016): the measured share of pairs
    that share a band key is within 0.05 of 1 - (1 - s^r)^b at every s."""
    for similarity, (firsts, seconds, similarities) in s_curve_pairs.items():
        assert np.abs(similarities - similarity).max() <= JACCARD_TOLERANCE
        measured = detection_rate(firsts, seconds)
        theory = lsh_probability(similarity, SETTINGS.bands, SETTINGS.rows)
        assert abs(measured - theory) <= 0.05, (similarity, measured, theory)


def test_jaccard_estimates_from_signatures_track_exact_jaccard(s_curve_pairs):
    for similarity, (firsts, seconds, similarities) in s_curve_pairs.items():
        sigs = signatures(firsts[:200] + seconds[:200])
        estimates = np.array([estimated_jaccard(a, b) for a, b in zip(sigs[:200], sigs[200:])])
        standard_error = np.sqrt(similarity * (1 - similarity) / SETTINGS.num_perm)
        assert np.abs(estimates - similarities[:200]).max() <= 4.5 * standard_error
        assert abs(estimates.mean() - similarities[:200].mean()) <= 3 * standard_error / np.sqrt(200)
