"""Gopher repetition rules: each threshold on its own, with hand-made documents just inside and just outside it.

Most documents are built to an exact length so that a fraction sits exactly on the threshold (kept: a rule drops
only above it) or one character past it.
"""

import pytest

from conftest import documents_table
from stages.gopher_repetition import DUPLICATE_NGRAM_SIZES, TOP_NGRAM_SIZES, GopherRepetition, GopherRepetitionConfig
from stages.text_tools import RuleConfig

THRESHOLDS = tuple(name for name in GopherRepetitionConfig.model_fields if name not in RuleConfig.model_fields)


def only(threshold: str) -> GopherRepetitionConfig:
    """The published defaults with every threshold off except `threshold`."""
    return GopherRepetitionConfig(**{name: None for name in THRESHOLDS if name != threshold})


def padded(text: str, length: int) -> str:
    """`text`, then a word of z's making it exactly `length` characters long."""
    return f"{text} {'z' * (length - len(text) - 1)}"


def unique_words(count: int, start: int = 0) -> list[str]:
    return [f"u{index:03d}" for index in range(start, start + count)]


def repeated_paragraphs(copies: int) -> str:
    """Six different paragraphs of three lines, with `copies` copies of one short paragraph in between."""
    unique = ["\n".join(f"Line {word} of a paragraph that differs." for word in unique_words(3, 3 * index))
              for index in range(6)]
    repeats = ["Same again."] * copies
    return "\n\n".join(part for pair in zip(unique, repeats + [""] * 6) for part in pair if part)


def repeated_lines(copies: int) -> str:
    """Six different lines and `copies` copies of one line."""
    unique = [f"Line {word} differs from the others." for word in unique_words(6)]
    return "\n".join(part for pair in zip(unique, ["Same again."] * copies + [""] * 6) for part in pair if part)


def top_ngram(n: int, copies: int, length: int) -> str:
    """`copies` copies of one n-gram of two-letter words, each followed by a different word; `length` characters."""
    ngram = " ".join(["ab", "cd", "ef", "gh"][:n])
    return padded(" ".join(f"{ngram} {word}" for word in unique_words(copies)), length)


def duplicated_ngram(n: int, length: int) -> str:
    """n words of 20 - n characters in all, twice in a row, padded to `length`: the second copy repeats 20 - n
    characters, which is the threshold's fraction of 100 characters."""
    sizes = [3] * (20 - 3 * n) + [2] * (4 * n - 20) if n <= 6 else [2] * (20 - 2 * n) + [1] * (3 * n - 20)
    words = [letter * size for letter, size in zip("ABCDEFGHIJ", sizes)]
    assert len(words) == n and sum(sizes) == 20 - n
    return padded(" ".join(words + words), length)


# threshold -> (document just inside, document just outside, drop reason)
CASES = {
    # 3 of 10 paragraphs repeat an earlier one; then 4 of 11 (the same for lines)
    "max_dup_para_frac": (repeated_paragraphs(4), repeated_paragraphs(5), "dup_para_frac"),
    # one repeated paragraph of 20 characters in a 100-character text; then in 98
    "max_dup_para_char_frac": ("\n\n".join(["a" * 27, "b" * 27, "c" * 20, "c" * 20]),
                               "\n\n".join(["a" * 26, "b" * 26, "c" * 20, "c" * 20]), "dup_para_char_frac"),
    "max_dup_line_frac": (repeated_lines(4), repeated_lines(5), "dup_line_frac"),
    "max_dup_line_char_frac": ("\n".join(["a" * 58, "c" * 20, "c" * 20]), "\n".join(["a" * 57, "c" * 20, "c" * 20]),
                               "dup_line_char_frac"),
    # "ab cd" (5 characters) 4 times in 100 characters = 0.20; "ab cd ef" 9 times in 400 = 0.18; "ab cd ef gh" 16 times
    # in 1100 = 0.16
    "max_top_2gram_frac": (top_ngram(2, 4, 100), top_ngram(2, 4, 99), "top_2gram_frac"),
    "max_top_3gram_frac": (top_ngram(3, 9, 400), top_ngram(3, 9, 399), "top_3gram_frac"),
    "max_top_4gram_frac": (top_ngram(4, 16, 1100), top_ngram(4, 16, 1099), "top_4gram_frac"),
    **{
        f"max_dup_{n}gram_frac": (duplicated_ngram(n, 100), duplicated_ngram(n, 99), f"dup_{n}gram_frac")
        for n in DUPLICATE_NGRAM_SIZES
    },
}


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_a_document_just_inside_the_threshold_is_kept(threshold):
    inside, _, _ = CASES[threshold]
    out = GopherRepetition(only(threshold))(documents_table([inside]))
    assert out.column("drop_reason").to_pylist() == [None]


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_a_document_just_outside_the_threshold_is_dropped_with_the_rule_as_reason(threshold):
    _, outside, reason = CASES[threshold]
    out = GopherRepetition(only(threshold))(documents_table([outside]))
    assert out.column("drop_reason").to_pylist() == [reason]


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_a_threshold_set_to_none_keeps_the_document_outside_it(threshold):
    _, outside, _ = CASES[threshold]
    out = GopherRepetition(GopherRepetitionConfig(**{name: None for name in THRESHOLDS}))(documents_table([outside]))
    assert out.column("drop_reason").to_pylist() == [None]


def test_the_published_defaults():
    config = GopherRepetitionConfig()
    assert [config.max_dup_para_frac, config.max_dup_para_char_frac, config.max_dup_line_frac,
            config.max_dup_line_char_frac] == [0.3, 0.2, 0.3, 0.2]
    assert [getattr(config, f"max_top_{n}gram_frac") for n in TOP_NGRAM_SIZES] == [0.20, 0.18, 0.16]
    assert [getattr(config, f"max_dup_{n}gram_frac") for n in DUPLICATE_NGRAM_SIZES] == [
        0.15, 0.14, 0.13, 0.12, 0.11, 0.10]


def test_the_most_frequent_ngram_counts_its_spaces_and_ties_go_to_the_first_seen():
    # "x y" and "long words" both occur twice; "x y" comes first: 3 characters x 2 in a 33-character text
    text = "x y long words x y long words end"
    out = GopherRepetition(GopherRepetitionConfig())(documents_table([text]))
    assert out.column("gopher_repetition_top_2gram_frac").to_pylist() == [6 / 33]


def test_a_repeated_ngram_is_counted_once_and_the_scan_jumps_past_it():
    # "a b c d e" three times: the 2nd and 3rd copies repeat 5 characters each (spaces not counted); the 5-grams
    # overlapping them are jumped over, not counted again
    text = "a b c d e a b c d e a b c d e"
    out = GopherRepetition(GopherRepetitionConfig())(documents_table([text]))
    assert out.column("gopher_repetition_dup_5gram_frac").to_pylist() == [10 / len(text)]


def test_prose_without_repetition_has_zero_signals_and_is_kept():
    text = ("The lobster is a species of clawed lobster from the eastern Atlantic Ocean.\n"
            "It is closely related to the American lobster and may grow to a length of sixty centimetres.\n\n"
            "Mating occurs in the summer, producing eggs which the females carry for up to a year.")
    out = GopherRepetition(GopherRepetitionConfig())(documents_table([text]))
    assert out.column("drop_reason").to_pylist() == [None]
    assert out.column("gopher_repetition_dup_line_frac").to_pylist() == [0.0]
    assert out.column("gopher_repetition_dup_5gram_frac").to_pylist() == [0.0]
