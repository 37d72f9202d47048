"""FineWeb's quality rules: each threshold on its own, with hand-made documents just inside and just outside it."""

import pytest

from conftest import documents_table
from stages.fineweb import FineWeb, FineWebConfig

THRESHOLDS = ("min_line_punct_ratio", "max_short_line_ratio", "max_dup_line_char_ratio", "max_newline_word_ratio")


def only(threshold: str, **settings) -> FineWebConfig:
    """The published defaults with every threshold off except `threshold`."""
    return FineWebConfig(**{name: None for name in THRESHOLDS if name != threshold}, **settings)


def long_lines(count: int, end: str = "", start: int = 0) -> list[str]:
    """Different lines of more than 30 characters, ending with `end`."""
    return [f"This is line number {index:04d} of the page{end}" for index in range(start, start + count)]


def text_of(lines: list[str]) -> str:
    return "\n".join(lines)


# threshold -> (document just inside, document just outside, drop reason)
CASES = {
    # 3 of 25 lines end with terminal punctuation = 0.12; then 2 of 25
    "min_line_punct_ratio": (text_of(long_lines(3, ".") + long_lines(22, start=3)),
                             text_of(long_lines(2, "!") + long_lines(23, start=2)), "line_punct_ratio"),
    # 67 of 100 lines have at most 30 characters; then 68 of 100
    "max_short_line_ratio": (text_of([f"Menu entry {index}." for index in range(67)] + long_lines(33, ".")),
                             text_of([f"Menu entry {index}." for index in range(68)] + long_lines(32, ".")),
                             "short_line_ratio"),
    # a 10-character line repeated once among 1,000 characters that are not line breaks = 0.01; then among 999
    "max_dup_line_char_ratio": (text_of(["Repeated.."] * 2 + ["x" * 980]), text_of(["Repeated.."] * 2 + ["x" * 979]),
                                "dup_line_char_ratio"),
    # 3 line breaks for 10 words = 0.3; then 3 for 9
    "max_newline_word_ratio": ("one two three\nfour five six\nseven eight nine\nten",
                               "one two three\nfour five six\nseven eight\nnine", "newline_word_ratio"),
}


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_a_document_just_inside_the_threshold_is_kept(threshold):
    inside, _, _ = CASES[threshold]
    out = FineWeb(only(threshold))(documents_table([inside]))
    assert out.column("drop_reason").to_pylist() == [None]


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_a_document_just_outside_the_threshold_is_dropped_with_the_rule_as_reason(threshold):
    _, outside, reason = CASES[threshold]
    out = FineWeb(only(threshold))(documents_table([outside]))
    assert out.column("drop_reason").to_pylist() == [reason]


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_a_threshold_set_to_none_keeps_the_document_outside_it(threshold):
    _, outside, _ = CASES[threshold]
    out = FineWeb(FineWebConfig(**{name: None for name in THRESHOLDS}))(documents_table([outside]))
    assert out.column("drop_reason").to_pylist() == [None]


def test_the_published_defaults():
    config = FineWebConfig()
    assert (config.min_line_punct_ratio, config.max_short_line_ratio, config.short_line_length,
            config.max_dup_line_char_ratio, config.max_newline_word_ratio) == (0.12, 0.67, 30, 0.01, 0.3)


def test_the_short_line_length_is_tunable():
    text = text_of(["Twelve chars"] * 1 + long_lines(1))
    assert FineWeb(FineWebConfig(short_line_length=12))(documents_table([text])).column(
        "fineweb_short_line_ratio").to_pylist() == [0.5]
    assert FineWeb(FineWebConfig(short_line_length=11))(documents_table([text])).column(
        "fineweb_short_line_ratio").to_pylist() == [0.0]


@pytest.mark.parametrize("line", ["Ein Satz.", "Eine Frage?", "这是一个句子。", "यह एक वाक्य है।", "هل هذا سؤال؟"])
def test_sentence_terminals_of_any_script_end_a_line(line):
    out = FineWeb(FineWebConfig())(documents_table([line]))
    assert out.column("fineweb_line_punct_ratio").to_pylist() == [1.0]


@pytest.mark.parametrize("line", ["No terminal at all", "A trailing space after the period. ", "A colon:"])
def test_a_line_not_ending_with_a_sentence_terminal_does_not_count(line):
    out = FineWeb(FineWebConfig())(documents_table([line]))
    assert out.column("fineweb_line_punct_ratio").to_pylist() == [0.0]


def test_blank_lines_are_not_lines_but_their_breaks_count_per_word():
    out = FineWeb(FineWebConfig())(documents_table(["First line here.\n\n   \nSecond line here."]))
    assert out.column("fineweb_short_line_ratio").to_pylist() == [1.0]  # two lines, both short
    assert out.column("fineweb_newline_word_ratio").to_pylist() == [3 / 8]
