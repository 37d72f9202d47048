"""Benchmark decontamination: GSM8K's test split planted into real pages is found (verbatim, question only, half a
question, words or numbers changed, split across paragraphs); new math problems, untouched pages and pages that share
only a phrase or a licence line with the set are not; the actions drop, redact and flag; the index, the same bytes
whoever builds it, read from JSONL, CSV or Parquet, local or over HTTP; bad evaluation files named by file and line;
and a whole run that stages the index for its workers."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from conftest import REPO, documents_table, pipeline_cli
from http_server import FileServer
from stages import STAGES
from stages.base import StageSetupError
from stages.decontaminate import Decontaminate, DecontaminateConfig
from stages.decontaminate.index import load_index
from stages.decontaminate.ngrams import numbers_only, text_ngrams
from stages.dedup.minhash import normalize, shingle_hash

SAMPLE = 200  # GSM8K problems planted per variant
_NUMBER = re.compile(r"\d+")

# Math word problems written for this test in GSM8K's style (not taken from GSM8K): the set must not claim them.
NEW_PROBLEMS = [
    ("Priya bakes 24 cupcakes for a school fair. She sells two thirds of them in the morning and gives 3 to her "
     "teachers. How many cupcakes does she have left to sell in the afternoon?",
     "Priya sells 24 * 2/3 = 16 cupcakes in the morning. After giving 3 away she has 24 - 16 - 3 = 5 cupcakes "
     "left.\n#### 5"),
    ("A cyclist rides 18 kilometers to the lake at a steady 12 kilometers per hour, rests for 30 minutes, then "
     "rides home at 9 kilometers per hour. How long does the whole trip take in hours?",
     "The ride out takes 18 / 12 = 1.5 hours. The ride home takes 18 / 9 = 2 hours. With the rest the trip takes "
     "1.5 + 0.5 + 2 = 4 hours.\n#### 4"),
    ("Marcus has a jar with 45 marbles. One fifth of them are green, 12 are blue and the rest are yellow. His "
     "sister adds 6 more yellow marbles. How many yellow marbles are in the jar now?",
     "There are 45 / 5 = 9 green marbles, so 45 - 9 - 12 = 24 were yellow. After his sister adds 6 there are "
     "24 + 6 = 30 yellow marbles.\n#### 30"),
    ("A library receives 3 boxes of new books every week, and each box holds 14 books. The librarian shelves 35 "
     "books each week. How many new books are still waiting to be shelved after 4 weeks?",
     "Each week 3 * 14 = 42 books arrive. Over 4 weeks 42 * 4 = 168 arrive and 35 * 4 = 140 are shelved, so "
     "168 - 140 = 28 books are waiting.\n#### 28"),
    ("Elena pays $7 for a sandwich and $3 for a juice every workday. How much does she spend on lunch in a month "
     "with 22 workdays if she brings food from home on 4 of those days?",
     "She buys lunch on 22 - 4 = 18 days. Each lunch costs 7 + 3 = $10, so she spends 18 * 10 = $180.\n#### 180"),
    ("A farmer plants tomato seedlings in 8 rows of 15 plants. A late frost kills one in every five seedlings. "
     "Each surviving plant yields 4 kilograms of tomatoes. How many kilograms does the farmer harvest?",
     "He plants 8 * 15 = 120 seedlings. The frost kills 120 / 5 = 24 of them, leaving 120 - 24 = 96 plants, "
     "which yield 96 * 4 = 384 kilograms.\n#### 384"),
    ("The school choir has 32 singers. For a concert they stand in rows of 6, and the singers who do not fill a "
     "whole row stand beside the piano. How many singers stand beside the piano?",
     "32 singers fill 5 whole rows of 6, which is 5 * 6 = 30 singers. So 32 - 30 = 2 singers stand beside the "
     "piano.\n#### 2"),
    ("A water tank holds 600 liters and is half full. A pump adds 25 liters every minute while a leak loses 5 "
     "liters every minute. How many minutes does it take until the tank is full?",
     "The tank needs 600 / 2 = 300 more liters. It gains 25 - 5 = 20 liters a minute, so it is full after "
     "300 / 20 = 15 minutes.\n#### 15"),
    ("Nadia buys 3 packs of stickers with 48 stickers in each pack and shares them equally between herself and 5 "
     "friends. She then loses 4 of her own stickers. How many stickers does Nadia have?",
     "She has 3 * 48 = 144 stickers. Shared among 6 people, each gets 144 / 6 = 24. After losing 4 she has "
     "24 - 4 = 20 stickers.\n#### 20"),
    ("Tomás reads 25 pages of his novel on each weekday and 40 pages on each day of the weekend. How many pages "
     "does he read in three full weeks?",
     "In one week he reads 5 * 25 + 2 * 40 = 125 + 80 = 205 pages. In three weeks he reads 3 * 205 = 615 "
     "pages.\n#### 615"),
]


@pytest.fixture(scope="module")
def gsm8k_path(data_dir: Path) -> Path:
    return data_dir / "benchmarks" / "gsm8k" / "test.jsonl"


@pytest.fixture(scope="module")
def gsm8k(gsm8k_path: Path) -> list[dict]:
    items = [json.loads(line) for line in gsm8k_path.read_text().splitlines()]
    assert len(items) == 1319
    return items


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """This test's own cache, where prepare writes the index (and a run's subprocess finds it through the env)."""
    monkeypatch.setenv("CCPIPELINE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def pages(real_page_texts) -> list[str]:
    """Real extracted pages long enough to hide a problem in (German-heavy, as the crawl is)."""
    texts = [page["text"] for page in real_page_texts if len(page["text"].split()) >= 150]
    assert len(texts) >= 300
    return texts


def gsm8k_set(path: Path | str, name: str = "gsm8k", fields: tuple[str, ...] = ("question", "answer")) -> dict:
    return {"name": name, "paths": [str(path)], "fields": list(fields)}


def prepared_stage(tmp_path: Path, **settings) -> Decontaminate:
    return Decontaminate(Decontaminate.prepare(DecontaminateConfig(**settings), tmp_path))


def plant(page: str, *passages: str) -> str:
    """The page with the passages as paragraphs of their own, spread evenly between its paragraphs."""
    paragraphs = page.split("\n")
    step = len(paragraphs) / (len(passages) + 1)
    for number, passage in reversed(list(enumerate(passages, 1))):
        paragraphs.insert(round(number * step), passage)
    return "\n".join(paragraphs)


def judged(stage: Decontaminate, texts: list[str]) -> list[dict]:
    """Signals and decision of each text, in batches of 256 as a worker runs them."""
    rows = []
    for start in range(0, len(texts), 256):
        out = stage(documents_table(texts[start:start + 256]))
        rows += out.drop_columns(["html"]).to_pylist()
    return rows


# ----------------------------------------------------------------------------------------------------- n-grams
def test_ngram_hashes_are_the_plain_definition_over_normalised_words(gsm8k):
    """Each item's n-gram hashes are minhash.shingle_hash of its normalised words, 13 at a time, in order; a text of
    fewer than 13 words has none."""
    from stages.decontaminate import DecontaminationNormalization

    texts = [item["question"] for item in gsm8k[:50]] + ["Only five words are here.", ""]
    normalization = DecontaminationNormalization()
    grams = text_ngrams(texts, 13, normalization)
    for number, text in enumerate(texts):
        words = normalize(text, normalization).split()
        expected = [shingle_hash(" ".join(words[i:i + 13])) for i in range(len(words) - 12)]
        assert grams.hashes[grams.offsets[number]:grams.offsets[number + 1]].tolist() == expected
    assert grams.offsets[-1] == grams.offsets[-3]  # the two short texts add none


def test_ngrams_of_numbers_alone_are_told_apart():
    from stages.decontaminate import DecontaminationNormalization

    text = "Janet pays 3 + 4 = 7 dollars, then 16 - 3 - 4 = 9, 9 * 2 = 18: 18 dollars a day at the market"
    flags = numbers_only([text], 5, DecontaminationNormalization()).tolist()
    words = normalize(text, DecontaminationNormalization()).split()
    assert flags == [all(word.isdigit() for word in words[i:i + 5]) for i in range(len(words) - 4)]
    assert sum(flags) == 4  # the eight numbers after "then": four windows of five


# ----------------------------------------------------------------------------------------------------- recall
def variants(item: dict, page: str, rng: random.Random) -> dict[str, str]:
    """The ways a page can hold a problem: whole, its question only, the first half of its question, with four words
    changed, with every number changed, and split across the page's paragraphs, sentence by sentence."""
    whole = f"{item['question']}\n{item['answer']}"
    question_words = item["question"].split()
    edited = whole.split(" ")
    page_words = [word for word in page.split() if word.isalpha()]
    for position in rng.sample(range(len(edited)), 4):
        edited[position] = rng.choice(page_words)
    renumbered = _NUMBER.sub(lambda number: str(int(number.group()) + rng.randint(1, 9)), whole)
    sentences = re.split(r"(?<=[.?!])\s+", item["question"]) + [item["answer"]]
    return {
        "verbatim": plant(page, whole),
        "question only": plant(page, item["question"]),
        "half the question": plant(page, " ".join(question_words[:len(question_words) // 2])),
        "four words changed": plant(page, " ".join(edited)),
        "numbers changed": plant(page, renumbered),
        "split across paragraphs": plant(page, *sentences),
    }


def test_gsm8k_problems_planted_in_real_pages_are_found(tmp_path, cache, gsm8k, gsm8k_path, pages):
    """200 problems in each form, each in another real page. A form is found when the planted problem is among the
    items named; the floors sit below the counts measured (README: Benchmark decontamination)."""
    rng = random.Random(7)
    chosen = rng.sample(range(len(gsm8k)), SAMPLE)
    planted: dict[str, list[str]] = {}
    for count, number in enumerate(chosen):
        for form, text in variants(gsm8k[number], pages[count % len(pages)], rng).items():
            planted.setdefault(form, []).append(text)
    stage = prepared_stage(tmp_path, eval_sets=[gsm8k_set(gsm8k_path)], action="flag")
    found = {form: sum(f"gsm8k:{number + 1}" in row["decon_items"] for number, row in zip(chosen, judged(stage, texts)))
             for form, texts in planted.items()}
    floors = {"verbatim": 1.0, "question only": 1.0, "split across paragraphs": 0.99, "four words changed": 0.95,
              "numbers changed": 0.95, "half the question": 0.75}
    assert {form: found[form] >= floors[form] * SAMPLE for form in floors} == dict.fromkeys(floors, True), found


def test_half_a_question_of_at_least_min_span_words_is_always_found(tmp_path, cache, gsm8k, gsm8k_path, pages):
    """The first half of every GSM8K question, in a real page: always found when it has at least min_span_words
    (15) words; and a half is found exactly when its signals reach a threshold (a span of 15 words, a fifth of the
    problem's n-grams)."""
    stage = prepared_stage(tmp_path, eval_sets=[gsm8k_set(gsm8k_path)], action="flag")
    halves = [" ".join(item["question"].split()[:len(item["question"].split()) // 2]) for item in gsm8k]
    rows = judged(stage, [plant(pages[number % len(pages)], half) for number, half in enumerate(halves)])
    long_halves = [number for number, half in enumerate(halves) if len(normalize(half).split()) >= 15]
    assert len(long_halves) > 1000
    assert [number for number in long_halves if not rows[number]["decon_items"]] == []
    for row in rows:
        assert bool(row["decon_items"]) == (row["decon_span_words"] >= 15 or row["decon_coverage"] >= 0.2)


# ----------------------------------------------------------------------------------------------------- precision
def test_untouched_pages_and_new_math_problems_are_not_contaminated(tmp_path, cache, gsm8k_path, real_page_texts):
    """Every real page, as it is and with the ten problems written for this test planted in it: no document is
    found contaminated, and not one of their n-grams is in the index."""
    stage = prepared_stage(tmp_path, eval_sets=[gsm8k_set(gsm8k_path)], action="flag")
    texts = [page["text"] for page in real_page_texts]
    written = [f"{question}\n{answer}" for question, answer in NEW_PROBLEMS]
    with_problems = [plant(text, *written) for text in texts]
    rows = judged(stage, texts + with_problems)
    assert len(rows) == 2 * len(real_page_texts) >= 1700
    assert sum(bool(row["decon_items"]) for row in rows) == 0
    assert sum(row["decon_ngrams"] for row in rows) == 0


def test_a_page_sharing_one_13_gram_with_a_problem_is_not_contaminated(tmp_path, cache, gsm8k, gsm8k_path, pages):
    """One 13-word phrase of a problem (from the middle of its question), in a real page: seen (its n-gram is found),
    and below both thresholds (the page's next word may happen to continue the phrase: 14 words), so not
    contaminated; 200 problems, 200 pages."""
    rng = random.Random(3)
    phrases = []
    for number in rng.sample(range(len(gsm8k)), SAMPLE):
        words = normalize(gsm8k[number]["question"]).split()
        start = (len(words) - 13) // 2
        phrases.append(" ".join(words[start:start + 13]))
    stage = prepared_stage(tmp_path, eval_sets=[gsm8k_set(gsm8k_path)], action="flag")
    rows = judged(stage, [plant(pages[count], phrase) for count, phrase in enumerate(phrases)])
    assert sum(row["decon_ngrams"] >= 1 for row in rows) >= 0.95 * SAMPLE  # a phrase of numbers alone is not counted
    assert max(row["decon_span_words"] for row in rows) < 15 and max(row["decon_coverage"] for row in rows) < 0.2
    assert sum(bool(row["decon_items"]) for row in rows) == 0


def test_a_licence_line_every_item_repeats_is_too_common_to_count(tmp_path, cache, gsm8k, data_dir):
    """An evaluation set whose items all open with Project Gutenberg's licence sentence, and the real Alice in
    Wonderland from Gutenberg, whose header holds it: with max_items_per_ngram (10) the sentence counts for no item
    and the book is clean, while a page quoting a problem is still found; with no limit the book would be claimed."""
    licence = (data_dir / "text" / "gutenberg" / "GUTENBERG_LICENSE.txt").read_text()
    sentence = re.search(r"This eBook is for the use of anyone anywhere[^.]*\.", licence).group()
    eval_file = tmp_path / "licensed.jsonl"
    eval_file.write_text("".join(json.dumps({"question": f"{sentence} {item['question']}", "answer": item["answer"]})
                                 + "\n" for item in gsm8k))
    with zipfile.ZipFile(data_dir / "text" / "gutenberg" / "en-alice.zip") as archive:
        alice = archive.read("en-alice.txt").decode("utf-8")
    assert normalize(sentence) in normalize(alice)
    quoting = plant(alice, gsm8k[41]["question"])
    limited = judged(prepared_stage(tmp_path, eval_sets=[gsm8k_set(eval_file)]), [alice, quoting])
    # All the book shares with the set then: "... almost no restrictions whatsoever. You", twice (its header and its
    # licence), the licence's end and the first word of the one question that starts with "You".
    assert [limited[0][key] for key in ("drop_reason", "decon_items", "decon_ngrams", "decon_span_words")] == [
        None, [], 2, 13]
    assert (limited[1]["drop_reason"], limited[1]["decon_items"]) == ("contaminated", ["gsm8k:42"])
    unlimited = judged(prepared_stage(tmp_path, eval_sets=[gsm8k_set(eval_file)], max_items_per_ngram=None), [alice])
    assert unlimited[0]["drop_reason"] == "contaminated" and len(unlimited[0]["decon_items"]) == len(gsm8k)


# ----------------------------------------------------------------------------------------------------- actions
def test_drop_flag_and_redact_decide_the_same_documents_differently(tmp_path, cache, gsm8k, gsm8k_path, pages):
    """A clean page, a page quoting a problem, a problem alone and a row without text, under each action."""
    problem = f"{gsm8k[0]['question']}\n{gsm8k[0]['answer']}"
    texts = [pages[0], plant(pages[1], problem), problem, None]
    outcomes = {}
    for action in ("drop", "flag", "redact"):
        out = prepared_stage(tmp_path, eval_sets=[gsm8k_set(gsm8k_path)], action=action)(documents_table(texts))
        outcomes[action] = out.column("drop_reason").to_pylist()
        assert out.column("decon_items").to_pylist() == [[], ["gsm8k:1"], ["gsm8k:1"], None]
        assert out.column("decon_sets").to_pylist() == [[], ["gsm8k"], ["gsm8k"], None]
        assert out.column("decon_coverage").to_pylist()[:3] == [0.0, 1.0, 1.0]
        assert out.column("decon_ngrams").to_pylist()[3] is None  # a row without text passes, signals null
        changed = [after != before for before, after in zip(texts, out.column("text").to_pylist())]
        assert changed == [False, action == "redact", False, False]
    assert outcomes == {"drop": [None, "contaminated", "contaminated", None], "flag": [None] * 4,
                        "redact": [None, None, "contaminated_too_short", None]}


def test_redact_cuts_the_planted_problem_with_its_margin_and_keeps_the_rest_of_the_page(tmp_path, cache, gsm8k,
                                                                                       gsm8k_path, pages):
    """On 50 real pages with a problem in the middle: nothing of the problem is left (the stage finds no n-gram of
    the set in the result); the page before and after it is kept as it was, up to the margin (200 characters, then
    to the edge of a word); decon_words_left counts the words kept."""
    stage = prepared_stage(tmp_path, eval_sets=[gsm8k_set(gsm8k_path)], action="redact")
    check = prepared_stage(tmp_path, eval_sets=[gsm8k_set(gsm8k_path)], action="flag")
    for number, page in enumerate(pages[:50]):
        problem = f"{gsm8k[number]['question']}\n{gsm8k[number]['answer']}"
        paragraphs = page.split("\n")
        before, after = "\n".join(paragraphs[:len(paragraphs) // 2]), "\n".join(paragraphs[len(paragraphs) // 2:])
        [row] = judged(stage, [f"{before}\n{problem}\n{after}"])
        redacted = row["text"]
        longest_word = max(len(word) for word in page.split())
        kept_before = before[:max(len(before) - 200 - longest_word, 0)].strip()
        kept_after = after[200 + longest_word:].strip()
        assert redacted.startswith(kept_before) and redacted.endswith(kept_after), number
        assert len(redacted) >= len(before) + len(after) - 2 * (200 + longest_word)
        assert row["decon_words_left"] == len(redacted.split())
        assert judged(check, [redacted])[0]["decon_ngrams"] == 0, number


# ----------------------------------------------------------------------------------------------------- the index
def test_the_same_sets_give_the_same_index_bytes_in_any_process(tmp_path, cache, gsm8k_path):
    """Prepared twice here, and once in another interpreter with another hash seed: one checksum."""
    settings = DecontaminateConfig(eval_sets=[gsm8k_set(gsm8k_path)])
    first = Path(Decontaminate.prepare(settings, tmp_path).index)
    digest = hashlib.sha256(first.read_bytes()).hexdigest()
    first.unlink()
    assert hashlib.sha256(Path(Decontaminate.prepare(settings, tmp_path).index).read_bytes()).hexdigest() == digest
    script = ("import hashlib, json, sys, pathlib; from stages.decontaminate import Decontaminate, "
              "DecontaminateConfig; config = DecontaminateConfig.model_validate(json.loads(sys.argv[1])); "
              "print(hashlib.sha256(pathlib.Path(Decontaminate.prepare(config, None).index).read_bytes())"
              ".hexdigest())")
    completed = subprocess.run([sys.executable, "-c", script, settings.model_dump_json()], cwd=REPO, text=True,
                               capture_output=True, timeout=120,
                               env={**os.environ, "PYTHONHASHSEED": "12345", "CCPIPELINE_CACHE": str(tmp_path / "o")})
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == digest


def test_the_index_holds_every_problem_and_its_screen_misses_nothing(tmp_path, cache, gsm8k_path, pages):
    """Every problem has n-grams to look for; the hashes are sorted; the bucket screen in `contains` answers as a
    plain membership test does, for the index's own n-grams and for those of real pages."""
    index = load_index(Decontaminate.prepare(DecontaminateConfig(eval_sets=[gsm8k_set(gsm8k_path)]), tmp_path).index)
    assert index.set_names == ["gsm8k"] and index.set_items.tolist() == [1319]
    assert index.set_unmatchable.tolist() == [0] and (index.item_ngrams > 0).all()
    assert (index.hashes[1:] >= index.hashes[:-1]).all() and index.item_ngrams.sum() == len(index.hashes)
    assert index.item_name(16) == "gsm8k:17"
    queries = np.concatenate((index.hashes, text_ngrams(pages, 13, index.normalization).hashes))
    assert np.array_equal(index.contains(queries), np.isin(queries, index.hashes))


def test_jsonl_csv_and_parquet_gzip_or_not_local_or_over_http_give_the_same_index(tmp_path, cache, gsm8k):
    """GSM8K written as JSON lines (gzip), CSV (gzip) and Parquet, and served over HTTP: one index."""
    table = pa.Table.from_pylist(gsm8k)
    (tmp_path / "test.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(item) + "\n"
                                                                   for item in gsm8k).encode()))
    pacsv.write_csv(table, tmp_path / "test.csv")
    (tmp_path / "test.csv.gz").write_bytes(gzip.compress((tmp_path / "test.csv").read_bytes()))
    pq.write_table(table, tmp_path / "test.parquet")
    digests = set()
    with FileServer({"/gsm8k/test.parquet": (tmp_path / "test.parquet").read_bytes()}) as server:
        for location in (tmp_path / "test.jsonl.gz", tmp_path / "test.csv.gz", tmp_path / "test.parquet",
                         f"file://{tmp_path / 'test.csv'}", f"{server.base_url}/gsm8k/test.parquet"):
            index = Decontaminate.prepare(DecontaminateConfig(eval_sets=[gsm8k_set(location)]), tmp_path).index
            digests.add(hashlib.sha256(Path(index).read_bytes()).hexdigest())
    assert len(digests) == 1


# ----------------------------------------------------------------------------------------------------- bad input
def broken_copy(gsm8k_path: Path, tmp_path: Path, line: int, replacement: str, name: str = "broken.jsonl") -> Path:
    lines = gsm8k_path.read_text().splitlines()
    lines[line - 1] = replacement
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("line, replacement, message", [
    (7, '{"question": "How many eggs?"}', "line 7: field 'answer' is missing (the item has: question)"),
    (3, '{"question": "  ", "answer": ""}', "line 3: empty item: question, answer hold no text"),
    (5, '{"question": "How many eggs?", "answer": null}', "line 5: field 'answer' is null"),
    (9, '{"question": "How many eggs?", "answer": 4', "line 9: not JSON"),
    (2, '["How many eggs?", "4"]', "line 2: not a JSON object"),
])
def test_a_bad_item_is_one_error_naming_the_file_and_its_line(tmp_path, cache, gsm8k_path, line, replacement,
                                                              message):
    path = broken_copy(gsm8k_path, tmp_path, line, replacement)
    with pytest.raises(StageSetupError) as raised:
        Decontaminate.prepare(DecontaminateConfig(eval_sets=[gsm8k_set(path)]), tmp_path)
    assert raised.value.setting == "eval_sets[0].paths"
    assert raised.value.message.startswith(f"{path}, {message}"), raised.value.message


def test_bad_csv_and_parquet_files_are_named_by_line_and_row(tmp_path, cache, gsm8k):
    (tmp_path / "no_answer.csv").write_text("question,solution\nHow many eggs?,4\n")
    (tmp_path / "short_row.csv").write_text("question,answer\nHow many eggs?,4\nHow many hens?\n")
    pq.write_table(pa.Table.from_pylist(gsm8k[:3] + [{"question": "How many eggs?", "answer": None}]),
                   tmp_path / "null.parquet")
    expected = {"no_answer.csv": "line 1: no column 'answer' in the header (its columns: question, solution)",
                "short_row.csv": "line 3: field 'answer' is missing", "null.parquet": "row 4: field 'answer' is null"}
    for name, message in expected.items():
        with pytest.raises(StageSetupError, match=re.escape(f"{tmp_path / name}, {message}")):
            Decontaminate.prepare(DecontaminateConfig(eval_sets=[gsm8k_set(tmp_path / name)]), tmp_path)


def test_sets_with_nothing_to_look_for_are_refused(tmp_path, cache, gsm8k_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "short.jsonl").write_text('{"question": "What is 2 + 2?", "answer": "4"}\n')
    (tmp_path / "notes.txt").write_text("question answer\n")
    cases = {
        "no evaluation set given": DecontaminateConfig(),
        "gsm8k: its files hold no item": DecontaminateConfig(eval_sets=[gsm8k_set(tmp_path / "empty.jsonl")]),
        "none of its 1 items has an n-gram": DecontaminateConfig(eval_sets=[gsm8k_set(tmp_path / "short.jsonl")]),
        "not a format evaluation items are read from": DecontaminateConfig(
            eval_sets=[gsm8k_set(gsm8k_path), gsm8k_set(tmp_path / "notes.txt", name="notes")]),
        "cannot be read: [Errno 2]": DecontaminateConfig(eval_sets=[gsm8k_set(tmp_path / "missing.jsonl")]),
    }
    for message, config in cases.items():
        with pytest.raises(StageSetupError, match=re.escape(message)):
            Decontaminate.prepare(config, tmp_path)


def test_the_command_names_the_bad_file_and_line_and_does_not_start(tmp_path, cache, gsm8k_path, warc_dir):
    path = broken_copy(gsm8k_path, tmp_path, 12, '{"question": "How many eggs?"}')
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"name": "decon", "output": str(tmp_path / "run"),
                                  "input": {"paths": [str(warc_dir / "cc_jwarc" / "cc.warc.gz")]},
                                  "stages": ["extract", {"decontaminate": {"eval_sets": [gsm8k_set(path)]}}]}))
    completed = pipeline_cli("run", "--config", str(config))
    assert completed.returncode == 2, completed.stderr
    [line] = completed.stderr.strip().splitlines()
    assert f"stages[1].decontaminate.eval_sets[0].paths: {path}, line 12: field 'answer' is missing" in line
    assert not (tmp_path / "run" / "documents").exists()


# ----------------------------------------------------------------------------------------------------- in a run
def test_the_stage_comes_after_pii_and_names_the_signal_behind_each_reason():
    names = list(STAGES)
    assert names.index("pii") + 1 == names.index("decontaminate") == names.index("dedup") - 1
    assert Decontaminate.signal_of("contaminated") == "decon_coverage"
    assert Decontaminate.signal_of("contaminated_too_short") == "decon_words_left"


def test_a_run_stages_the_index_and_redacts_or_drops_the_pages_that_quote_gsm8k(tmp_path, cache, gsm8k, gsm8k_path,
                                                                               real_page_texts):
    """`pipeline run` over 60 real pages as JSON lines, in this process: 10 quote a problem in the middle (redacted
    and kept), 5 are a problem alone (dropped: too short once redacted), 45 are untouched. The index was staged in
    the run directory under its checksum, and the workers read it from there."""
    pages = [page for page in real_page_texts if len(page["text"].split()) >= 300][:60]
    records = []
    for number, page in enumerate(pages):
        problem = f"{gsm8k[number]['question']}\n{gsm8k[number]['answer']}"
        text = plant(page["text"], problem) if number < 10 else problem if number < 15 else page["text"]
        records.append({"id": f"page{number}", "url": page["url"], "text": text})
    (tmp_path / "pages.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({
        "name": "decon", "output": str(tmp_path / "run"), "rejects": True, "ray": {"in_process_max_mb": 20},
        "input": {"paths": [str(tmp_path / "pages.jsonl")]},
        "stages": [{"decontaminate": {"eval_sets": [gsm8k_set(gsm8k_path)], "action": "redact"}}]}))
    result = pipeline_cli("run", "--config", str(config), "--quiet")
    assert result.returncode == 0, result.stderr

    run = tmp_path / "run"
    stage = next(s for s in json.loads((run / "stats" / "summary.json").read_text())["stages"]
                 if s["stage"] == "decontaminate")
    assert (stage["rows_in"], stage["kept"], stage["dropped"]) == (60, 55, {"contaminated_too_short": 5})
    kept = {row["id"]: row for row in pads.dataset(run / "documents").to_table().to_pylist()}
    assert [kept[f"page{number}"]["decon_items"] for number in range(10)] == [[f"gsm8k:{n + 1}"] for n in range(10)]
    assert all(gsm8k[number]["question"][:60] not in kept[f"page{number}"]["text"] for number in range(10))
    assert all(kept[f"page{number}"]["text"] == pages[number]["text"] for number in range(15, 60))
    rejected = pads.dataset(run / "rejects").to_table(columns=["id", "decon_items"]).to_pylist()
    assert sorted(row["id"] for row in rejected) == [f"page{number}" for number in range(10, 15)]
    [staged] = (run / "_assets").iterdir()
    assert staged.name.endswith("-decontamination-index.npz")
    assert staged.name.startswith(hashlib.sha256(staged.read_bytes()).hexdigest()[:16])
