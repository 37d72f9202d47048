"""Language ID: lid.176 accuracy on real labelled sentences, the keep-list and threshold, and bad input."""

import tarfile

import pyarrow as pa
import pytest

from conftest import BAD_INPUTS, documents_table
from stages.langid import LangId, LangIdConfig


@pytest.fixture(scope="module")
def keep_all(lid_model):
    return LangId(LangIdConfig(model=str(lid_model), languages=None, min_score=0.0))


def leipzig_sentences(data_dir, language: str) -> list[str]:
    with tarfile.open(data_dir / "langid" / "leipzig" / "language-testdata.tar.gz") as archive:
        member = archive.extractfile(f"language-testdata/sentences/{language}.txt")
        return [line for line in member.read().decode("utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("language", ["en", "de", "fr", "es"])
def test_accuracy_on_leipzig_sentences_is_at_least_97_percent(data_dir, keep_all, language):
    sentences = leipzig_sentences(data_dir, language)
    assert len(sentences) >= 1000
    predicted = keep_all(documents_table(sentences)).column("lang").to_pylist()
    accuracy = sum(label == language for label in predicted) / len(sentences)
    assert accuracy >= 0.97, f"{language}: {accuracy:.3f}"


def test_documents_in_other_languages_are_dropped_as_other_language(lid_model):
    stage = LangId(LangIdConfig(model=str(lid_model), languages=["en"]))
    out = stage(documents_table([
        "The committee will publish its final report on the new railway line next spring.",
        "Der Ausschuss wird seinen Abschlussbericht über die neue Bahnstrecke im Frühjahr veröffentlichen.",
    ]))
    assert out.column("lang").to_pylist() == ["en", "de"]
    assert out.column("drop_reason").to_pylist() == [None, "other_language"]


def test_the_threshold_drops_an_uncertain_document_and_keeps_a_clear_one(lid_model, keep_all):
    clear, unclear = "The committee will publish its final report on the new railway line next spring.", "ok ok"
    clear_score, unclear_score = keep_all(documents_table([clear, unclear])).column("lang_score").to_pylist()
    assert unclear_score < clear_score
    threshold = (clear_score + unclear_score) / 2
    stage = LangId(LangIdConfig(model=str(lid_model), languages=None, min_score=threshold))
    assert stage(documents_table([clear, unclear])).column("drop_reason").to_pylist() == [None, "low_score"]


def test_several_languages_can_be_kept(lid_model):
    stage = LangId(LangIdConfig(model=str(lid_model), languages=["en", "fr"], min_score=0.5))
    out = stage(documents_table(["Le comité publiera son rapport final sur la nouvelle ligne au printemps prochain.",
                                 "El comité publicará su informe final sobre la nueva línea la próxima primavera."]))
    assert out.column("drop_reason").to_pylist() == [None, "other_language"]


def test_signals_are_typed_and_rows_keep_their_order(keep_all):
    out = keep_all(documents_table(["one text here in english", "ein deutscher Text hier", ""]))
    assert out.schema.field("lang").type == pa.string() and out.schema.field("lang_score").type == pa.float32()
    assert out.column("id").to_pylist() == ["doc0", "doc1", "doc2"]
    assert all(0.0 <= score <= 1.0 for score in out.column("lang_score").to_pylist())


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_gets_a_decision(lid_model, kind):
    stage = LangId(LangIdConfig(model=str(lid_model)))
    out = stage(documents_table([BAD_INPUTS[kind]]))
    assert out.num_rows == 1 and out.column("error").to_pylist() == [None]
    assert out.column("lang_score")[0].as_py() is not None
