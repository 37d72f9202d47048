"""The contamination tables: what a run's decontaminate stage found of each evaluation set, in stats/, the notebook
API and the report, summed from the units' markers (so a resumed run reports the same); and `pipeline
contamination`, which audits a finished run without the stage and finds the same, in this process or on Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import pipeline_cli
from pipeline import inspect
from pipeline.cli import _eval_sets
from pipeline.contamination import contamination_tables
from pipeline.stats import StageTally, merge_tallies

PLANTED_ITEMS = 6  # GSM8K problems 1..6, each planted in two pages of different hosts
PAGES = 40


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """This test's own cache, where prepare writes the index (the run's subprocess finds it through the env)."""
    monkeypatch.setenv("CCPIPELINE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def gsm8k_path(data_dir: Path) -> Path:
    return data_dir / "benchmarks" / "gsm8k" / "test.jsonl"


@pytest.fixture(scope="module")
def planted_pages(tmp_path_factory, gsm8k_path, real_page_texts) -> Path:
    """40 real pages as JSON lines; pages 0-11 end with GSM8K problem (page // 2) + 1 (question and answer), the
    even ones on host-a.example, the odd ones on host-b.example; the rest are untouched."""
    problems = [json.loads(line) for line in gsm8k_path.read_text().splitlines()[:PLANTED_ITEMS]]
    pages = [page for page in real_page_texts if len(page["text"].split()) >= 200][:PAGES]
    records = []
    for number, page in enumerate(pages):
        text, url = page["text"], page["url"]
        if number < 2 * PLANTED_ITEMS:
            problem = problems[number // 2]
            text = f"{text}\n{problem['question']}\n{problem['answer']}"
            url = f"https://host-{'ab'[number % 2]}.example/page{number}"
        records.append({"id": f"page{number}", "url": url, "text": text})
    path = tmp_path_factory.mktemp("planted") / "pages.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def run_config(tmp_path: Path, pages: Path, stages: list) -> Path:
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"name": "contamination", "output": str(tmp_path / "run"),
                                  "ray": {"in_process_max_mb": 20}, "input": {"paths": [str(pages)]},
                                  "stages": stages}))
    return config


def gsm8k_stage(gsm8k_path: Path, action: str) -> dict:
    return {"decontaminate": {"eval_sets": [{"name": "gsm8k", "paths": [str(gsm8k_path)],
                                             "fields": ["question", "answer"]}], "action": action}}


def expected_sets_row(kept: int, dropped: int) -> dict:
    return {"set": "gsm8k", "items": 1319, "items_found": PLANTED_ITEMS, "found_share": PLANTED_ITEMS / 1319,
            "documents": 2 * PLANTED_ITEMS, "kept": kept, "dropped": dropped,
            "top_domains": [{"domain": "host-a.example", "documents": PLANTED_ITEMS},
                            {"domain": "host-b.example", "documents": PLANTED_ITEMS}]}


def test_counts_are_summed_over_units_and_survive_a_marker_round_trip():
    first = StageTally("decontaminate", counts={"gsm8k": {"documents": 2, "dropped": 1, "items": {"3": 2},
                                                          "domains": {"a.example": 2}}})
    second = StageTally("decontaminate", counts={"gsm8k": {"documents": 1, "dropped": 1, "items": {"3": 1, "9": 1},
                                                           "domains": {"b.example": 1}},
                                                 "mmlu": {"documents": 1, "dropped": 0, "items": {"1": 1},
                                                          "domains": {"a.example": 1}}})
    [merged] = merge_tallies([[StageTally.from_dict(json.loads(json.dumps(first.to_dict())))],
                              [StageTally.from_dict(json.loads(json.dumps(second.to_dict())))]])
    assert merged.counts == {"gsm8k": {"documents": 3, "dropped": 2, "items": {"3": 3, "9": 1},
                                       "domains": {"a.example": 2, "b.example": 1}},
                             "mmlu": {"documents": 1, "dropped": 0, "items": {"1": 1}, "domains": {"a.example": 1}}}
    assert "counts" not in StageTally("langid").to_dict()  # other stages' markers are as before


def test_tables_give_every_set_a_row_and_order_items_and_domains():
    counts = {"gsm8k": {"documents": 3, "dropped": 1, "items": {"10": 1, "9": 2},
                        "domains": {"b.example": 1, "a.example": 1, "c.example": 2}}}
    tables = contamination_tables(counts, {"gsm8k": 1319, "other": 50}, top_domains=2)
    sets = tables["contamination"].to_pylist()
    assert sets[0]["items_found"] == 2 and sets[0]["kept"] == 2
    assert [entry["domain"] for entry in sets[0]["top_domains"]] == ["c.example", "a.example"]
    assert sets[1] == {"set": "other", "items": 50, "items_found": 0, "found_share": 0.0, "documents": 0, "kept": 0,
                       "dropped": 0, "top_domains": []}
    assert tables["contaminated_items"].to_pylist() == [{"set": "gsm8k", "item": 9, "documents": 2},
                                                        {"set": "gsm8k", "item": 10, "documents": 1}]


def test_a_run_writes_the_tables_and_reports_them_the_same_when_resumed(tmp_path, cache, gsm8k_path, planted_pages):
    config = run_config(tmp_path, planted_pages, [gsm8k_stage(gsm8k_path, "drop")])
    result = pipeline_cli("run", "--config", str(config), "--quiet")
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "run"
    written = (run_dir / "stats" / "contamination.parquet").read_bytes()
    assert pq.read_table(run_dir / "stats" / "contamination.parquet").to_pylist() == [expected_sets_row(0, 12)]
    items = pq.read_table(run_dir / "stats" / "contaminated_items.parquet").to_pylist()
    assert items == [{"set": "gsm8k", "item": item, "documents": 2} for item in range(1, PLANTED_ITEMS + 1)]

    run = inspect.load_run(run_dir)
    assert run.contamination().iloc[0]["items_found"] == PLANTED_ITEMS
    assert run.contaminated_items()["item"].tolist() == list(range(1, PLANTED_ITEMS + 1))
    shown = pipeline_cli("stats", str(run_dir))
    assert shown.returncode == 0 and "gsm8k" in shown.stdout and "host-a.example (6)" in shown.stdout
    report = pipeline_cli("report", str(run_dir))
    assert report.returncode == 0, report.stderr
    html = (run_dir / "report.html").read_text()
    assert "Evaluation sets in the data" in html and "host-a.example (6)" in html

    again = pipeline_cli("run", "--config", str(config), "--quiet")  # every unit done: stats from the markers
    assert again.returncode == 0, again.stderr
    assert (run_dir / "stats" / "contamination.parquet").read_bytes() == written


def test_a_run_without_the_stage_has_no_tables(tmp_path, planted_pages):
    result = pipeline_cli("run", "--config", str(run_config(tmp_path, planted_pages, ["fineweb"])), "--quiet")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "run" / "stats" / "contamination.parquet").exists()
    assert inspect.load_run(tmp_path / "run").contamination().empty


@pytest.mark.parametrize("where", ["in this process", "on a Ray cluster"])
def test_the_audit_of_a_run_without_the_stage_finds_what_the_stage_finds(tmp_path, cache, gsm8k_path,
                                                                          planted_pages, where, request):
    result = pipeline_cli("run", "--config", str(run_config(tmp_path, planted_pages, ["fineweb"])), "--quiet")
    assert result.returncode == 0, result.stderr
    kept_planted = pq.read_table(tmp_path / "run" / "documents", columns=["id"]).column("id").to_pylist()
    assert {f"page{number}" for number in range(2 * PLANTED_ITEMS)} <= set(kept_planted)

    table = tmp_path / "audit.parquet"
    audit = pipeline_cli("contamination", str(tmp_path / "run"), "--eval", f"gsm8k={gsm8k_path}:question,answer",
                         "--output", str(table),
                         *(["--address", cluster_address(request)] if where == "on a Ray cluster" else []))
    assert audit.returncode == 0, audit.stderr
    assert pq.read_table(table).to_pylist() == [expected_sets_row(12, 0)]
    assert audit.stdout.splitlines()[1].split()[:5] == ["gsm8k", "1,319", "6", "0.5%", "12"]


def cluster_address(request) -> str:
    """The address of the session's local Ray, which `pipeline contamination --address` joins for its tasks."""
    ray = request.getfixturevalue("local_ray")
    return ray.get_runtime_context().gcs_address


def test_eval_options_keep_a_uri_whole_and_gather_a_sets_files():
    assert _eval_sets(["gsm8k=s3://bucket/gsm8k/test.jsonl", "gsm8k=/data/more.jsonl",
                       "mmlu=https://host:8080/mmlu.csv:question,choices"]) == [
        {"name": "gsm8k", "paths": ["s3://bucket/gsm8k/test.jsonl", "/data/more.jsonl"], "fields": ["text"]},
        {"name": "mmlu", "paths": ["https://host:8080/mmlu.csv"], "fields": ["question", "choices"]}]
    with pytest.raises(ValueError, match="expected NAME=PATH"):
        _eval_sets(["gsm8k"])


@pytest.mark.parametrize("option, message", [
    ("gsm8k", "expected NAME=PATH"),
    ("gsm8k=/nonexistent/test.jsonl:question", "/nonexistent/test.jsonl"),
])
def test_a_bad_eval_option_is_one_line_and_status_2(tmp_path, cache, planted_pages, option, message):
    result = pipeline_cli("run", "--config", str(run_config(tmp_path, planted_pages, ["fineweb"])), "--quiet")
    assert result.returncode == 0, result.stderr
    audit = pipeline_cli("contamination", str(tmp_path / "run"), "--eval", option)
    assert audit.returncode == 2
    [line] = audit.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line


def test_the_audit_of_token_shards_decodes_them_and_finds_the_same_items(tmp_path, cache, gsm8k_path,
                                                                         planted_pages):
    """A run that kept only token shards' worth of output (tokenizer, tokenize) is audited from the shards, decoded
    with its own sentencepiece model: the same six problems in the same twelve documents (shards keep no domain)."""
    stages = ["fineweb", {"tokenizer": {"vocab_size": 600}}, "tokenize"]
    result = pipeline_cli("run", "--config", str(run_config(tmp_path, planted_pages, stages)), "--quiet")
    assert result.returncode == 0, result.stderr
    table = tmp_path / "audit.parquet"
    audit = pipeline_cli("contamination", str(tmp_path / "run"), "--source", "shards", "--output", str(table),
                         "--eval", f"gsm8k={gsm8k_path}:question,answer")
    assert audit.returncode == 0, audit.stderr
    [row] = pq.read_table(table).to_pylist()
    assert (row["items_found"], row["documents"], row["top_domains"]) == (
        PLANTED_ITEMS, 2 * PLANTED_ITEMS, [{"domain": "(none)", "documents": 2 * PLANTED_ITEMS}])
