"""Gopher quality rules: each threshold on its own, with hand-made documents just inside and just outside it, and
the words they count (spaCy's English conventions, which datatrove and FineWeb use)."""

import zipfile

import pytest

from conftest import documents_table
from stages.gopher_quality import GopherQuality, GopherQualityConfig
from stages.text_tools import split_words

THRESHOLDS = ("min_words", "max_words", "min_mean_word_length", "max_mean_word_length", "max_hash_word_ratio",
              "max_ellipsis_word_ratio", "max_bullet_lines_ratio", "max_ellipsis_lines_ratio", "min_alpha_words_ratio",
              "min_stop_words")


def only(threshold: str, value=None, **settings) -> GopherQualityConfig:
    """The published defaults with every threshold off except `threshold` (at its default unless `value`)."""
    config = GopherQualityConfig(**{name: None for name in THRESHOLDS if name != threshold}, **settings)
    return config if value is None else config.model_copy(update={threshold: value})


def prose(words: int, *extra: str) -> str:
    """`words` words of four letters, starting with two stop words, then `extra` tokens."""
    return " ".join(["the", "and", *["word"] * (words - 2), *extra])


def lines(*texts: str) -> str:
    return "\n".join(texts)


# threshold -> (document just inside, document just outside, drop reason)
CASES = {
    "min_words": (prose(50), prose(49), "word_count"),
    "max_words": (prose(100_000), prose(100_001), "word_count"),
    # mean length exactly 3.0: the, and + 48 words of 3 letters; then one of them 2 letters long
    "min_mean_word_length": (prose(2, *["abc"] * 48), prose(2, *["abc"] * 47, "ab"), "mean_word_length"),
    # mean length exactly 10.0: 6 + 47 * 10 + 24 = 500 characters in 50 words
    "max_mean_word_length": (prose(2, *["abcdefghij"] * 47, "x" * 24), prose(2, *["abcdefghij"] * 47, "x" * 25),
                             "mean_word_length"),
    # 6 hashes among 60 tokens = 0.1; 7 among 61
    "max_hash_word_ratio": (prose(54, *["#"] * 6), prose(54, *["#"] * 7), "hash_word_ratio"),
    "max_ellipsis_word_ratio": (prose(27, *["...", "…"] * 3, *["word"] * 27),
                                prose(27, *["...", "…"] * 3, "...", *["word"] * 27), "ellipsis_word_ratio"),
    # 9 of 10 lines are bullets; then 10 of 10
    "max_bullet_lines_ratio": (lines("Intro with the words and more.", *["- the and list item"] * 9),
                               lines(*["• the and list item"] * 10), "bullet_lines_ratio"),
    # 3 of 10 lines end with an ellipsis; then 4 of 10
    "max_ellipsis_lines_ratio": (lines(*["and the story goes on ..."] * 3, *["A whole line."] * 7),
                                 lines(*["and the story goes on…"] * 4, *["A whole line."] * 6),
                                 "ellipsis_lines_ratio"),
    # 40 of 50 tokens hold a letter; then 39 of 50
    "min_alpha_words_ratio": (prose(40, *["1984"] * 10), prose(39, *["1984"] * 11), "alpha_words_ratio"),
    "min_stop_words": (prose(50), "the " + "word " * 49, "stop_words"),
}


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_a_document_just_inside_the_threshold_is_kept(threshold):
    inside, _, _ = CASES[threshold]
    out = GopherQuality(only(threshold))(documents_table([inside]))
    assert out.column("drop_reason").to_pylist() == [None]


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_a_document_just_outside_the_threshold_is_dropped_with_the_rule_as_reason(threshold):
    _, outside, reason = CASES[threshold]
    out = GopherQuality(only(threshold))(documents_table([outside]))
    assert out.column("drop_reason").to_pylist() == [reason]


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_a_threshold_set_to_none_keeps_the_document_outside_it(threshold):
    _, outside, _ = CASES[threshold]
    out = GopherQuality(GopherQualityConfig(**{name: None for name in THRESHOLDS}))(documents_table([outside]))
    assert out.column("drop_reason").to_pylist() == [None]


def test_the_published_defaults():
    config = GopherQualityConfig()
    assert (config.min_words, config.max_words, config.min_mean_word_length, config.max_mean_word_length) == (
        50, 100_000, 3, 10)
    assert (config.max_hash_word_ratio, config.max_ellipsis_word_ratio, config.max_bullet_lines_ratio,
            config.max_ellipsis_lines_ratio, config.min_alpha_words_ratio, config.min_stop_words) == (
        0.1, 0.1, 0.9, 0.3, 0.8, 2)
    assert config.stop_words == ["the", "be", "to", "of", "and", "that", "have", "with"]


def test_a_chapter_of_a_novel_passes_every_rule(data_dir):
    with zipfile.ZipFile(data_dir / "text" / "gutenberg" / "en-alice.zip") as archive:
        book = archive.read(archive.namelist()[0]).decode("utf-8", errors="replace")
    chapter = book[book.rindex("CHAPTER I."):book.rindex("CHAPTER II.")]  # after the table of contents
    out = GopherQuality(GopherQualityConfig())(documents_table([chapter]))
    assert out.column("drop_reason").to_pylist() == [None]
    assert out.column("gopher_quality_word_count")[0].as_py() > 1000


def test_the_first_failing_rule_in_the_published_order_is_the_reason():
    short_and_no_stop_words = "word " * 10
    out = GopherQuality(GopherQualityConfig())(documents_table([short_and_no_stop_words]))
    assert out.column("drop_reason").to_pylist() == ["word_count"]


def test_punctuation_and_symbols_are_tokens_but_not_words():
    out = GopherQuality(GopherQualityConfig())(documents_table(["Hello, world! -> #1 ..."]))
    # tokens: Hello , world ! - > # 1 ...   words: Hello world 1
    assert out.column("gopher_quality_word_count").to_pylist() == [3]
    assert out.column("gopher_quality_mean_word_length").to_pylist() == [11 / 3]
    assert out.column("gopher_quality_hash_word_ratio").to_pylist() == [1 / 9]
    assert out.column("gopher_quality_alpha_words_ratio").to_pylist() == [2 / 9]


def test_stop_words_match_case_sensitively():
    out = GopherQuality(GopherQualityConfig())(documents_table(["The And the with"]))
    assert out.column("gopher_quality_stop_words").to_pylist() == [2]


@pytest.mark.parametrize(
    "text, words",
    [
        ("Hello, world!", ["Hello", ",", "world", "!"]),
        ('"(quoted)."', ['"', "(", "quoted", ")", ".", '"']),
        ("U.S. Mr. e.g. A. etc.", ["U.S.", "Mr.", "e.g.", "A.", "etc", "."]),
        ("well-known 2020-2021 COVID-19 and/or km/h 10:30 1,000 a,b", [
            "well", "-", "known", "2020", "-", "2021", "COVID-19", "and/or", "km", "/", "h", "10:30", "1,000", "a",
            ",", "b"]),
        ("don't John's I'm im", ["do", "n't", "John", "'s", "I", "'m", "i", "m"]),
        ("10km 5% $5 US$5 9am", ["10", "km", "5", "%", "$", "5", "US$", "5", "9", "am"]),
        ("wait... end.Start a…b", ["wait", "...", "end", ".", "Start", "a", "…", "b"]),
        ("http://example.com/a-b. 😀hi #tag", ["http://example.com/a-b", ".", "😀", "hi", "#", "tag"]),
        ("中文字符，测试。 العربية", ["中文字符，测试", "。", "العربية"]),
    ],
)
def test_words_are_split_as_spacy_splits_english(text, words):
    assert split_words(text) == words
