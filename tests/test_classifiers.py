"""fastText classifiers: trained here on real labelled data, evaluated on held-out data, used as filter stages."""

import json
import re
import subprocess
import sys

import pyarrow as pa
import pytest

from conftest import BAD_INPUTS, REPO, documents_table
from stages.base import StageSetupError
from stages.classifiers import QualityClassifier, QualityConfig, ToxicityClassifier, ToxicityConfig
from stages.fasttext_training import (
    MissingField,
    TrainingSettings,
    UnmappedLabels,
    read_labelled_file,
    read_labelled_folders,
    split_holdout,
    train_classifier,
)

SMALL = TrainingSettings(dim=32, bucket=50_000)  # small models: quick to train and to write in tests


def macro(report) -> tuple[float, float]:
    """Macro F1 and the macro F1 of chance (guessing each label at its held-out rate)."""
    return (sum(s.f1 for s in report.scores) / len(report.scores),
            sum(s.chance_f1 for s in report.scores) / len(report.scores))


@pytest.fixture(scope="module")
def davidson(data_dir):
    return read_labelled_file(data_dir / "toxicity" / "davidson" / "labeled_data.csv", text_field="tweet",
                              label_field="class", label_map={"0": "toxic", "1": "toxic", "2": "clean"})


@pytest.fixture(scope="module")
def toxicity_model(davidson, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "toxicity.bin"
    return path, train_classifier(davidson, path, SMALL)


def test_toxicity_classifier_trained_on_davidson_beats_chance_clearly(toxicity_model):
    _, report = toxicity_model
    assert report.test_counts == {"toxic": 2071, "clean": 440}
    f1, chance = macro(report)
    assert f1 >= chance + 0.3, report.format()
    assert report.score("toxic").f1 >= 0.9 and report.score("clean").f1 >= 0.7, report.format()


def wikitext_paragraphs(data_dir) -> list[str]:
    """Wikipedia paragraphs from the tokenised WikiText-2 splits, detokenised and without its <unk> markers, so
    that the classifier cannot tell them from web text by tokenisation artefacts alone."""
    paragraphs = []
    for split in ("valid.txt", "test.txt"):
        for line in (data_dir / "quality" / "wikipedia" / "wikitext2" / split).read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("="):
                continue
            if line.count("<unk>") > len(line.split()) / 20:  # at most one unknown word in twenty
                continue
            line = line.replace("<unk>", "").replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
            line = re.sub(r" ([.,;:!?)%]|'s|n't)", r"\1", line)
            line = re.sub(r"([($]) ", r"\1", line)
            line = re.sub(r" {2,}", " ", line)
            if len(line) >= 200:
                paragraphs.append(line)
    return paragraphs


def web_chunks(pages: list[dict]) -> list[str]:
    """English extracted web text, cut into runs of lines of at least 200 characters."""
    chunks = []
    for page in pages:
        if page["lang"] != "en":
            continue
        current = ""
        for line in page["text"].splitlines():
            current = f"{current}\n{line}" if current else line
            if len(current) >= 200:
                chunks.append(current)
                current = ""
    return chunks


def test_quality_classifier_wikipedia_against_extracted_web_text_beats_chance_clearly(
    data_dir, real_page_texts, tmp_path
):
    positives, negatives = wikitext_paragraphs(data_dir), web_chunks(real_page_texts)
    assert len(positives) > 1000 and len(negatives) > 300
    pairs = [(text, "hq") for text in positives] + [(text, "lq") for text in negatives]
    report = train_classifier(pairs, tmp_path / "quality.bin", TrainingSettings(dim=32, bucket=50_000, balance=True))
    f1, chance = macro(report)
    assert f1 >= chance + 0.3, report.format()


def test_the_holdout_split_is_deterministic_and_disjoint(davidson):
    train, test = split_holdout(davidson, 0.1, seed=3)
    again_train, again_test = split_holdout(davidson, 0.1, seed=3)
    assert test == again_test and len(train) + len(test) == len(davidson)
    assert 0.08 < len(test) / len(davidson) < 0.12


def test_the_same_data_and_seed_give_the_same_model(davidson, tmp_path):
    sample = davidson[:3000]
    first = train_classifier(sample, tmp_path / "a.bin", SMALL)
    second = train_classifier(sample, tmp_path / "b.bin", SMALL)
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()
    assert first.format().splitlines()[1:] == second.format().splitlines()[1:]


def test_the_toxicity_stage_drops_above_its_threshold(toxicity_model):
    path, _ = toxicity_model
    texts = ["you are a fucking idiot and a bitch", "thank you for the lovely photos of the garden"]
    stage = ToxicityClassifier(ToxicityConfig(model=str(path)))
    out = stage(documents_table(texts))
    toxic, clean = out.column("toxicity_score").to_pylist()
    assert toxic > 0.5 > clean
    assert out.column("drop_reason").to_pylist() == ["toxic", None]
    lenient = ToxicityClassifier(ToxicityConfig(model=str(path), threshold=min(1.0, toxic + 1e-3)))
    assert lenient(documents_table(texts)).column("drop_reason").to_pylist() == [None, None]


def test_the_quality_stage_drops_below_its_threshold(tmp_path):
    pairs = ([(f"the museum opened a new gallery of {w} paintings last year", "hq") for w in ("old", "modern", "dutch")] * 30
             + [(f"cheap {w} buy now click here best price", "lq") for w in ("pills", "loans", "deals")] * 30)
    path = tmp_path / "q.bin"
    train_classifier(pairs, path, TrainingSettings(dim=16, bucket=10_000, holdout=0.0, min_count=1))
    stage = QualityClassifier(QualityConfig(model=str(path)))
    out = stage(documents_table(["the museum opened a new gallery", "buy cheap pills now click here"]))
    good, bad = out.column("quality_score").to_pylist()
    assert good > 0.5 > bad
    assert out.column("drop_reason").to_pylist() == [None, "low_quality"]
    assert out.schema.field("quality_score").type == pa.float32()


def test_a_missing_model_is_trained_from_train_from_when_the_run_starts(tmp_path):
    data = tmp_path / "labels.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in
                            [("calm and kind words about gardens", "clean"), ("stupid idiot shut up", "toxic")] * 40))
    config = ToxicityConfig(model=str(tmp_path / "models" / "tox.bin"), train_from=str(data))
    prepared = ToxicityClassifier.prepare(config, tmp_path)
    assert (tmp_path / "models" / "tox.bin").is_file() and prepared.model == str(tmp_path / "models" / "tox.bin")


def test_set_up_errors_name_the_setting(tmp_path, toxicity_model):
    with pytest.raises(StageSetupError) as missing:
        ToxicityClassifier.prepare(ToxicityConfig(model=str(tmp_path / "none.bin")), tmp_path)
    assert missing.value.setting == "model"
    with pytest.raises(StageSetupError) as wrong_label:
        ToxicityClassifier.prepare(ToxicityConfig(model=str(toxicity_model[0]), label="spam"), tmp_path)
    assert wrong_label.value.setting == "label" and "toxic" in wrong_label.value.message


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_gets_a_decision(toxicity_model, kind):
    stage = ToxicityClassifier(ToxicityConfig(model=str(toxicity_model[0])))
    out = stage(documents_table([BAD_INPUTS[kind]]))
    assert out.column("error").to_pylist() == [None] and out.column("toxicity_score")[0].as_py() is not None


def test_labelled_folders_give_one_document_per_file(tmp_path):
    for label, texts in {"good": ["a", "b"], "bad": ["c"]}.items():
        (tmp_path / label).mkdir()
        for index, text in enumerate(texts):
            (tmp_path / label / f"{index}.txt").write_text(text)
    pairs = read_labelled_folders({"good": tmp_path / "good", "bad": tmp_path / "bad"})
    assert sorted(pairs) == [("a", "good"), ("b", "good"), ("c", "bad")]


def test_the_cli_trains_from_folders_and_prints_the_held_out_evaluation(tmp_path):
    for label, word in (("pos", "harbour ships sailing calm sea morning"), ("neg", "casino bonus spins win cash now")):
        (tmp_path / label).mkdir()
        for index in range(60):
            (tmp_path / label / f"{index}.txt").write_text(f"{word} {index}")
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "train-classifier", "--folder", f"good={tmp_path / 'pos'}",
         "--folder", f"spam={tmp_path / 'neg'}", "--output", str(tmp_path / "m.bin"), "--holdout", "0.3",
         "--bucket", "10000", "--dim", "16", "--min-count", "1"],
        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert re.search(r"^good\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+$", completed.stdout, re.M), completed.stdout
    assert (tmp_path / "m.bin").is_file()


def test_the_cli_reports_a_missing_data_file_in_one_line(tmp_path):
    completed = subprocess.run([sys.executable, "-m", "pipeline.cli", "train-classifier", "--data",
                                str(tmp_path / "none.csv"), "--output", str(tmp_path / "m.bin")],
                               capture_output=True, text=True, cwd=REPO, timeout=60)
    assert completed.returncode == 2 and completed.stderr.strip().count("\n") == 0 and "none.csv" in completed.stderr


def test_a_field_no_json_record_has_is_a_missing_field_naming_those_they_have(tmp_path):
    path = tmp_path / "labelled.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"body": "b", "label": "y"}\n')
    with pytest.raises(MissingField, match=r"no label field 'class'; fields: text, label, body$"):
        read_labelled_file(path, label_field="class")
    assert read_labelled_file(path) == [("a", "x")]  # a field some records lack: those rows are skipped


def test_labels_left_out_of_the_map_are_refused_unless_kept(tmp_path):
    path = tmp_path / "labelled.csv"
    path.write_text("text,label\na,0\nb,1\nc,2\nd,2\ne,clean\n")
    label_map = {"0": "toxic", "1": "toxic"}
    with pytest.raises(UnmappedLabels) as refused:
        read_labelled_file(path, label_map=label_map)
    assert refused.value.counts == {"2": 2, "clean": 1}
    assert str(refused.value) == "labels not in the label map: '2' (2 rows), 'clean' (1 row)"
    kept = read_labelled_file(path, label_map=label_map, keep_unmapped=True)
    assert [label for _, label in kept] == ["toxic", "toxic", "2", "2", "clean"]


def test_a_label_the_map_produces_is_not_unmapped(tmp_path):
    path = tmp_path / "labelled.csv"
    path.write_text("text,label\na,offensive\nb,toxic\nc,clean\n")
    pairs = read_labelled_file(path, label_map={"offensive": "toxic", "clean": "clean"})
    assert [label for _, label in pairs] == ["toxic", "toxic", "clean"]
