"""C4's rules: line rules remove lines (each with a line just inside and just outside), document rules drop (each
with a document on both sides), and sentences are counted as spaCy's sentencizer counts them."""

import pytest

from conftest import documents_table
from stages.base import StageSetupError
from stages.c4 import C4, C4Config
from stages.text_tools import count_sentences

NORMAL = "A normal sentence stays here."
FIVE_SENTENCES = "The cat sat down. It purred.\nThe dog barked. It ran away. Then it slept."


def run(text: str, **settings):
    """C4 on one document; the sentence minimum is off unless set, so that short documents survive."""
    return C4(C4Config(**{"min_sentences": None} | settings))(documents_table([text]))


# rule setting, value that switches it off -> (line just inside, line just outside, count of removed lines)
LINE_RULES = {
    ("max_word_length", None): (f"A word of {'x' * 1000} letters.", f"A word of {'x' * 1001} letters.",
                                "c4_lines_too_long_word"),
    ("require_terminal_punct", False): ('He said "it ends here."', "This line does not end well",
                                        "c4_lines_no_terminal_punct"),
    ("min_words_per_line", None): ("Three words here.", "Two words.", "c4_lines_too_few_words"),
    ("remove_javascript_lines", False): ("Please enable Java in your browser.",
                                         "Please enable JavaScript in your browser.", "c4_lines_javascript"),
    ("remove_policy_lines", False): ("Read our history for details.", "Read our Privacy Policy for details.",
                                     "c4_lines_policy"),
}


@pytest.mark.parametrize("rule", LINE_RULES, ids=[setting for setting, _ in LINE_RULES])
def test_a_line_just_inside_a_line_rule_is_kept(rule):
    inside, _, counter = LINE_RULES[rule]
    out = run(f"{NORMAL}\n{inside}")
    assert out.column("text").to_pylist() == [f"{NORMAL}\n{inside}"]
    assert out.column(counter).to_pylist() == [0]


@pytest.mark.parametrize("rule", LINE_RULES, ids=[setting for setting, _ in LINE_RULES])
def test_a_line_just_outside_a_line_rule_is_removed_and_counted(rule):
    _, outside, counter = LINE_RULES[rule]
    out = run(f"{NORMAL}\n{outside}")
    assert out.column("drop_reason").to_pylist() == [None]
    assert out.column("text").to_pylist() == [NORMAL]
    assert out.column(counter).to_pylist() == [1]
    assert out.column("c4_lines_removed").to_pylist() == [1]
    assert out.column("c4_lines_kept").to_pylist() == [1]


@pytest.mark.parametrize("rule", LINE_RULES, ids=[setting for setting, _ in LINE_RULES])
def test_a_line_rule_switched_off_keeps_the_line(rule):
    (setting, off), (_, outside, counter) = rule, LINE_RULES[rule]
    out = run(f"{NORMAL}\n{outside}", **{setting: off})
    assert out.column("text").to_pylist() == [f"{NORMAL}\n{outside}"]
    assert out.column(counter).to_pylist() == [0]


def test_a_line_ending_with_an_ellipsis_has_no_terminal_punctuation():
    out = run(f"{NORMAL}\nAnd the story goes on...")
    assert out.column("text").to_pylist() == [NORMAL]


def test_citation_markers_are_cut_out_of_lines():
    out = run("It was discovered in 1901.[1][citation needed] It grew.[edit]")
    assert out.column("text").to_pylist() == ["It was discovered in 1901. It grew."]
    assert out.column("c4_citations_removed").to_pylist() == [3]


def test_without_citation_removal_a_line_ending_with_a_marker_lacks_terminal_punctuation():
    out = run(f"{NORMAL}\nIt was discovered in 1901.[1]", remove_citations=False)
    assert out.column("text").to_pylist() == [NORMAL]


def test_lines_are_stripped_and_blank_lines_dropped():
    out = run(f"   {NORMAL}   \n\n \t\nAnother fine line here.")
    assert out.column("text").to_pylist() == [f"{NORMAL}\nAnother fine line here."]


# document rule, value that switches it off -> (document just inside, document just outside, drop reason)
DOCUMENT_RULES = {
    ("drop_lorem_ipsum", False): (FIVE_SENTENCES, f"{FIVE_SENTENCES}\nLorem ipsum dolor sit amet.", "lorem_ipsum"),
    ("drop_curly_bracket", False): (FIVE_SENTENCES, f"{FIVE_SENTENCES}\nCall it as f(x) with care.\nIt returns "
                                                    "{x: 1} to you.", "curly_bracket"),
    ("min_sentences", None): (FIVE_SENTENCES, FIVE_SENTENCES.replace(" Then it slept.", ""), "sentence_count"),
}


@pytest.mark.parametrize("rule", DOCUMENT_RULES, ids=[setting for setting, _ in DOCUMENT_RULES])
def test_a_document_just_inside_a_document_rule_is_kept(rule):
    inside, _, _ = DOCUMENT_RULES[rule]
    assert C4(C4Config())(documents_table([inside])).column("drop_reason").to_pylist() == [None]


@pytest.mark.parametrize("rule", DOCUMENT_RULES, ids=[setting for setting, _ in DOCUMENT_RULES])
def test_a_document_just_outside_a_document_rule_is_dropped_with_its_reason(rule):
    _, outside, reason = DOCUMENT_RULES[rule]
    assert C4(C4Config())(documents_table([outside])).column("drop_reason").to_pylist() == [reason]


@pytest.mark.parametrize("rule", DOCUMENT_RULES, ids=[setting for setting, _ in DOCUMENT_RULES])
def test_a_document_rule_switched_off_keeps_the_document(rule):
    (setting, off), (_, outside, _) = rule, DOCUMENT_RULES[rule]
    assert C4(C4Config(**{setting: off}))(documents_table([outside])).column("drop_reason").to_pylist() == [None]


def test_lorem_ipsum_and_curly_brackets_count_only_in_lines_that_survive_the_line_rules_before_them():
    text = f"{FIVE_SENTENCES}\nLorem ipsum dolor sit amet\nEnable JavaScript: function() {{ run(); }}."
    out = C4(C4Config())(documents_table([text]))
    assert out.column("drop_reason").to_pylist() == [None]
    assert out.column("c4_lorem_ipsum").to_pylist() == [False]
    assert out.column("c4_curly_bracket").to_pylist() == [False]


def test_a_document_whose_lines_are_all_removed_is_dropped_whatever_the_thresholds():
    out = run("Home\nAbout us\nContact")
    assert out.column("drop_reason").to_pylist() == ["no_lines_left"]
    assert out.column("c4_lines_kept").to_pylist() == [0]
    assert out.column("c4_lines_removed").to_pylist() == [3]


def test_a_dropped_document_keeps_its_original_text():
    out = C4(C4Config())(documents_table(["Home\nOne short sentence here."]))
    assert out.column("drop_reason").to_pylist() == ["sentence_count"]
    assert out.column("text").to_pylist() == ["Home\nOne short sentence here."]


def test_the_published_defaults():
    config = C4Config()
    assert (config.max_word_length, config.min_words_per_line, config.min_sentences) == (1000, 3, 5)
    assert all((config.remove_citations, config.require_terminal_punct, config.drop_lorem_ipsum,
                config.remove_javascript_lines, config.drop_curly_bracket, config.remove_policy_lines))
    assert config.bad_words is None and config.max_bad_words == 0


@pytest.fixture
def bad_words(tmp_path):
    path = tmp_path / "bad_words.txt"
    path.write_text("# a comment\nidiot\ngo to hell\n")
    return str(path)


def test_a_bad_word_in_the_kept_text_drops_the_document(bad_words):
    out = C4(C4Config(bad_words=bad_words))(documents_table([FIVE_SENTENCES + "\nWhat an idiot he was.",
                                                               FIVE_SENTENCES + "\nidiot"]))
    assert out.column("c4_bad_words").to_pylist() == [1, 0]  # the second one is in a removed line
    assert out.column("drop_reason").to_pylist() == ["bad_words", None]


def test_max_bad_words_allows_that_many(bad_words):
    out = C4(C4Config(bad_words=bad_words, max_bad_words=1))(documents_table([FIVE_SENTENCES + "\nWhat an idiot."]))
    assert out.column("drop_reason").to_pylist() == [None]


def test_without_a_bad_words_list_the_rule_is_off_and_its_signal_null():
    out = C4(C4Config())(documents_table([FIVE_SENTENCES + "\nWhat an idiot he was."]))
    assert out.column("c4_bad_words").to_pylist() == [None]
    assert out.column("drop_reason").to_pylist() == [None]


def test_a_missing_bad_words_list_stops_the_run_before_it_starts(tmp_path):
    with pytest.raises(StageSetupError, match="does not exist"):
        C4.prepare(C4Config(bad_words=str(tmp_path / "none.txt")), tmp_path)


def test_the_real_ldnoobw_list_loads(data_dir):
    config = C4.prepare(C4Config(bad_words=str(data_dir / "toxicity" / "ldnoobw" / "lists" / "en")), data_dir)
    out = C4(config)(documents_table([FIVE_SENTENCES]))
    assert out.column("c4_bad_words").to_pylist() == [0]


@pytest.mark.parametrize(
    "text, sentences",
    [
        ("One sentence.", 1),
        ("First. Second! Third?", 3),
        ('He said "Stop." Then he left.', 2),
        ("Mr. Smith and Dr. Jones met e.g. here.", 1),
        ("Version 3.5 is out.", 1),
        ("Wait... what?", 1),
        ("这是第一句。这是第二句。", 1),  # one token to an English tokenizer
        ("", 0),
    ],
)
def test_sentences_end_at_a_terminal_token_followed_by_a_word(text, sentences):
    assert count_sentences(text) == sentences
