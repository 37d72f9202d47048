"""The word-list toxicity rule (C4 style): whole-word, case-insensitive matches of words and phrases."""

import pytest

from conftest import BAD_INPUTS, documents_table
from stages.base import StageSetupError
from stages.word_list import ToxicWords, ToxicWordsConfig, WordList


@pytest.fixture
def word_file(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("# a comment\ndamn\nidiot\ngo to hell\n\n")
    return path


def test_words_and_phrases_match_whole_words_in_any_case():
    words = WordList(["damn", "go to hell"])
    assert words.count("Damn it. DAMN! Go   to\nHell, please.") == 3
    assert words.count("damnation and goto hello") == 0


def test_a_word_inside_a_longer_word_does_not_match(data_dir):
    words = WordList.load(data_dir / "toxicity" / "ldnoobw" / "lists" / "en")
    assert len(words) > 300
    assert words.count("Scunthorpe United won at the weekend") == 0


def test_any_match_drops_with_the_c4_default(word_file):
    stage = ToxicWords(ToxicWordsConfig(word_list=str(word_file)))
    out = stage(documents_table(["what an idiot", "what a nice day"]))
    assert out.column("toxic_words_count").to_pylist() == [1, 0]
    assert out.column("drop_reason").to_pylist() == ["toxic_words", None]


def test_max_matches_allows_that_many(word_file):
    stage = ToxicWords(ToxicWordsConfig(word_list=str(word_file), max_matches=1))
    out = stage(documents_table(["one idiot", "damn idiot"]))
    assert out.column("drop_reason").to_pylist() == [None, "toxic_words"]


def test_a_missing_or_empty_list_stops_the_run_before_it_starts(tmp_path):
    with pytest.raises(StageSetupError, match="does not exist"):
        ToxicWords.prepare(ToxicWordsConfig(word_list=str(tmp_path / "none.txt")), tmp_path)
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(StageSetupError, match="no words"):
        ToxicWords.prepare(ToxicWordsConfig(word_list=str(tmp_path / "empty.txt")), tmp_path)


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_gets_a_decision(word_file, kind):
    out = ToxicWords(ToxicWordsConfig(word_list=str(word_file)))(documents_table([BAD_INPUTS[kind]]))
    assert out.column("error").to_pylist() == [None] and out.column("toxic_words_count")[0].as_py() == 0
