"""End to end on a real local Ray: real pages in, Parquet out, every record accounted for."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipeline.config import load_config
from pipeline.run_dir import RunDirConflict
from pipeline.runner import run_pipeline
from pipeline.stats import accounting_problems

from conftest import pipeline_cli

pytestmark = pytest.mark.slow


def write_config(path: Path, **values) -> Path:
    import yaml

    document = {"name": "test", "stages": ["extract"], **values}
    path.write_text(yaml.safe_dump(document))
    return path


def run(tmp_path: Path, inputs: list[str], input_options: dict | None = None, **values):
    config_file = write_config(tmp_path / "config.yaml", input={"paths": inputs, **(input_options or {})}, **values)
    config = load_config(config_file, output=str(tmp_path / "run"))
    return run_pipeline(config, show_progress=False)


def documents(run_dir: Path) -> pd.DataFrame:
    return ds.dataset(run_dir / "documents", format="parquet").to_table().to_pandas()


def by_stage(result) -> dict:
    return {tally.stage: tally for tally in result.funnel}


def test_real_pages_are_extracted_and_every_record_is_accounted_for(tmp_path, data_dir, local_ray):
    warcs = sorted(str(p) for p in (data_dir / "warc" / "derived_real_html").glob("*.warc.gz"))
    result = run(tmp_path, warcs, rejects=True)
    stages = by_stage(result)

    assert result.ok and not accounting_problems(result.funnel)
    read, extract = stages["read"], stages["extract"]
    assert read.rows_in == 879 + len(warcs)  # every page plus one warcinfo record per file
    assert read.dropped == {"record_type:warcinfo": len(warcs)}
    assert read.rows_in == extract.kept + read.dropped_total + read.failed_total + extract.dropped_total + extract.failed_total
    assert extract.rows_in == 879
    assert extract.kept >= 0.95 * 879

    docs = documents(result.run_dir)
    assert len(docs) == extract.kept and docs["id"].is_unique
    assert docs["text"].str.strip().str.len().gt(0).all()
    assert {"id", "url", "domain", "source", "offset", "date", "payload_bytes", "text"} <= set(docs.columns)
    rejects = ds.dataset(result.run_dir / "rejects", format="parquet").to_table().to_pandas()
    assert len(rejects) == extract.dropped_total + extract.failed_total
    assert set(rejects["stage"]) <= {"extract"}

    funnel = pd.read_parquet(result.run_dir / "stats" / "funnel.parquet")
    assert funnel.set_index("stage").loc["extract", "kept"] == extract.kept
    summary = json.loads((result.run_dir / "stats" / "summary.json").read_text())
    assert summary["records_read"] == read.rows_in and summary["accounting_problems"] == []

    include, exclude = extraction_quality(data_dir, docs)
    assert include >= 0.80, f"must-include snippets found: {include:.3f}"
    assert exclude <= 0.15, f"must-exclude snippets present: {exclude:.3f}"


def extraction_quality(data_dir: Path, docs: pd.DataFrame) -> tuple[float, float]:
    """Share of English and German must-include snippets in our text, and of must-exclude ones (trafilatura eval).

    The page language is that of its must-include snippets, by fastText lid.176.
    """
    import fasttext

    gold = json.loads((data_dir / "extraction" / "trafilatura_eval" / "evaldata.json").read_text())
    model = fasttext.load_model(str(data_dir / "models" / "lid176" / "lid.176.ftz"))
    text_by_record = dict(zip(docs["record_id"], docs["text"]))
    found = total = leaked = boilerplate = 0
    for line in (data_dir / "warc" / "derived_real_html" / "index.jsonl").read_text().splitlines():
        page = json.loads(line)
        if page["source"] != "trafilatura_eval":
            continue
        snippets = gold[page["gold_ref"].split(" | ")[0]]
        labels, _ = model.predict([" ".join(snippets["with"]).replace("\n", " ")])
        if labels[0][0] not in ("__label__en", "__label__de"):
            continue
        text = text_by_record.get(page["record_id"]) or ""
        found += sum(snippet in text for snippet in snippets["with"])
        total += len(snippets["with"])
        leaked += sum(snippet in text for snippet in snippets["without"])
        boilerplate += len(snippets["without"])
    assert total > 1500 and boilerplate > 1500  # the English and German pages are most of the set
    return found / total, leaked / boilerplate


ORIGINAL_WARC = ("cc_resiliparse", "CC-MAIN-2020-34-excerpt.warc.gz")
DAMAGE_AT = 0.5


def damaged_copies(data_dir: Path, directory: Path) -> dict[str, Path]:
    """A real Common Crawl WARC damaged in known ways: cut short, and 200 bytes zeroed inside a member."""
    directory.mkdir()
    original = data_dir.joinpath("warc", *ORIGINAL_WARC).read_bytes()
    cut = directory / "cut-short.warc.gz"
    cut.write_bytes(original[: len(original) * 6 // 10])
    zeroed = directory / "zeroed-member.warc.gz"
    middle = int(len(original) * DAMAGE_AT)
    zeroed.write_bytes(original[:middle] + bytes(200) + original[middle + 200:])
    return {"cut": cut, "zeroed": zeroed}


def test_malformed_and_old_archives_go_through_with_errors_counted_where_they_happened(tmp_path, data_dir, local_ray):
    damaged = damaged_copies(data_dir, tmp_path / "damaged")
    inputs = [str(p) for p in (data_dir / "warc" / "robustness_warcio").iterdir() if p.name != "SOURCE.txt"]
    inputs += [str(data_dir / "warc" / "aut_heritrix" / "IAH-archive.org-2008.warc.gz")]
    inputs += [str(p) for p in damaged.values()] + [str(data_dir.joinpath("warc", *ORIGINAL_WARC))]
    result = run(tmp_path, inputs, rejects=True)
    stages = by_stage(result)

    assert result.ok and not accounting_problems(result.funnel)
    read = stages["read"]
    assert read.failed["damaged_gzip"] == 2
    examples = [ex for ex in read.examples if ex["reason"] == "damaged_gzip"]
    assert {Path(ex["source"]).name for ex in examples} == {"cut-short.warc.gz", "zeroed-member.warc.gz"}
    assert all(ex["offset"] > 0 for ex in examples)
    for reason in ("record_type:request", "record_type:revisit", "not_html", "http_status:404", "not_http"):
        assert read.dropped[reason] > 0, reason
    # every record that failed to be read is in rejects/, with its file and offset (the crawl's drops are not)
    rejects = ds.dataset(result.run_dir / "rejects", format="parquet").to_table().to_pandas()
    read_rejects = rejects[rejects["stage"] == "read"]
    assert len(read_rejects) == read.failed_total and read_rejects["error"].notna().all()
    assert sorted(read_rejects["error"].value_counts().items()) == sorted(read.failed.items())
    assert read_rejects["source"].notna().all() and read_rejects["offset"].notna().all()

    docs = documents(result.run_dir)
    kept_per_file = docs.groupby(docs["source"].map(lambda s: Path(s).name)).size()
    assert kept_per_file["IAH-archive.org-2008.warc.gz"] > 50  # the 2008 WARC/0.17 crawl is read
    intact = docs[docs["source"].str.endswith(ORIGINAL_WARC[1])]
    zeroed = docs[docs["source"].str.endswith("zeroed-member.warc.gz")]
    cut = docs[docs["source"].str.endswith("cut-short.warc.gz")]
    # One damaged member costs at most its own page; the pages after the damage are read again.
    assert set(zeroed["record_id"]) <= set(intact["record_id"]) and len(zeroed) >= len(intact) - 1
    damage_offset = int(Path(damaged["zeroed"]).stat().st_size * DAMAGE_AT)
    assert (zeroed["offset"] > damage_offset).sum() == (intact["offset"] > damage_offset).sum()
    assert set(cut["record_id"]) < set(intact["record_id"]) and len(cut) > 0
    for name in ("example-bad-non-chunked.warc.gz", "example-wrong-chunks.warc.gz", "example.arc", "example.arc.gz"):
        assert kept_per_file[name] == 1, name


def test_text_corpora_are_reprocessed_with_their_ids(tmp_path, local_ray):
    corpus = tmp_path / "corpus.jsonl"
    lines = [json.dumps({"id": f"doc-{i}", "text": f"document number {i}", "url": f"https://site{i % 3}.example.com/"})
             for i in range(50)]
    corpus.write_text("\n".join(lines[:20] + ["{not json"] + lines[20:]) + "\n")
    result = run(tmp_path, [str(corpus)])
    stages = by_stage(result)
    assert stages["read"].failed == {"invalid_json": 1}
    docs = documents(result.run_dir)
    assert sorted(docs["id"]) == sorted(f"doc-{i}" for i in range(50))
    assert set(docs["domain"]) == {"example.com"}


def test_a_rerun_resumes_and_rebuilds_only_what_is_missing(tmp_path, data_dir, local_ray):
    inputs = [str(p) for p in (data_dir / "warc" / "dolma_wget").glob("*.warc.gz")]
    first = run(tmp_path, inputs, input_options={"unit_mb": 0.05})
    before = documents(first.run_dir).sort_values("id").reset_index(drop=True)
    assert first.units_total > 2

    again = run(tmp_path, inputs, input_options={"unit_mb": 0.05})
    assert again.units_resumed == again.units_total

    markers = sorted((first.run_dir / "_done").glob("*.json"))
    lost = markers[1]
    (first.run_dir / "documents" / f"part-{lost.stem}.parquet").unlink()
    lost.unlink()
    resumed = run(tmp_path, inputs, input_options={"unit_mb": 0.05})
    assert resumed.units_resumed == resumed.units_total - 1
    after = documents(resumed.run_dir).sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)
    assert [t.to_dict()["kept"] for t in resumed.funnel] == [t.to_dict()["kept"] for t in first.funnel]


def test_a_run_directory_is_not_mixed_with_another_config(tmp_path, data_dir, local_ray):
    inputs = [str(data_dir / "warc" / "cc_jwarc" / "cc.warc.gz")]
    run(tmp_path, inputs)
    with pytest.raises(RunDirConflict, match=r"stages\[0\].extract.favor"):
        run(tmp_path, inputs, stages=[{"extract": {"favor": "recall"}}])


cli = pipeline_cli


def test_a_config_error_exits_2_with_one_clear_line(tmp_path):
    bad = write_config(tmp_path / "bad.yaml", input={"paths": ["/nowhere/*.warc.gz"]},
                       stages=[{"extract": {"favor": "fastest"}}])
    completed = cli("run", "--config", str(bad))
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(bad) in lines[0] and "input.paths" in lines[0] and "stages[0].extract.favor" in lines[0]


def test_quickstart_runs_offline_and_its_output_reads_back(quickstart_run):
    output, completed = quickstart_run
    assert "documents in" in completed.stdout
    summary = json.loads((output / "stats" / "summary.json").read_text())
    assert summary["output"] == str(output / "dedup" / "documents")  # the last stage is dedup
    docs = pd.read_parquet(summary["output"])
    table = pq.read_table(summary["output"])
    assert len(docs) == table.num_rows > 100 and docs["id"].is_unique
    assert summary["documents"] == len(docs) and summary["accounting_problems"] == []
    dedup = next(stage for stage in summary["stages"] if stage["stage"] == "dedup")
    assert dedup["rows_in"] == len(pd.read_parquet(output / "documents")) > dedup["kept"] == len(docs)
    assert {example["reason"] for example in dedup["examples"]} <= {"near_duplicate", "exact_duplicate"}
    assert dedup["examples"] and all("kept" in example["detail"] for example in dedup["examples"])
    manifest = json.loads((output / "shards" / "manifest.json").read_text())  # tokenizer and shards ran last
    assert manifest["documents"] == len(docs) and len(manifest["splits"]["train"]["shards"]) >= 2
    assert "tokens" in completed.stdout and (output / "tokenizer" / "tokenizer.model").exists()
    trained = json.loads((output / "train" / "_done.json").read_text())["final"]  # and a tiny GPT trained on them
    assert trained["step"] == 200 and trained["val_loss"] < 6 and (output / "train" / "checkpoint.pt").exists()
    [found] = pd.read_parquet(output / "stats" / "contamination.parquet").to_dict("records")  # the quoted problems
    assert (found["set"], found["items"], found["items_found"], found["documents"], found["dropped"]) == (
        "demo_eval", 12, 6, 6, 6)
    shown = cli("stats", str(output))
    assert shown.returncode == 0 and "extract" in shown.stdout and "record_type:request" in shown.stdout


def test_a_quickstart_in_a_job_log_prints_at_most_one_progress_line_per_5_s_and_no_ray_chatter(quickstart_run):
    """stdout and stderr are pipes (a job log): the status comes as plain lines, never two within 5 s, and none of
    Ray's start-up errors or Ray Data's INFO lines reach the user."""
    _, completed = quickstart_run
    lines = completed.stderr_lines
    progress = [(at, line) for at, line in lines if line.startswith("[")]
    assert progress, completed.stderr  # the quickstart runs longer than one interval
    assert len(progress) == len(lines), completed.stderr  # nothing else: no warnings, no Ray lines
    gaps = [later - earlier for (earlier, _), (later, _) in zip(progress, progress[1:])]
    assert all(gap >= 5 for gap in gaps), (gaps, completed.stderr)
    assert all("\r" not in line and "\x1b" not in line for _, line in lines)
    for output in (completed.stdout, completed.stderr):
        for noise in ("core_worker.cc", "streaming_executor", "ERROR", "Traceback"):
            assert noise not in output, output
    # each a status line with a count, whichever phase the 10 s tick finds running (the per-document pass, a global
    # stage's step, training: on a fast machine the pass can end before the first tick)
    assert all(re.match(r"\[\s*[\dhms]+\] [\w :]+ · [\d,]+(/[\d,]+)? \w+", line) for _, line in progress), progress


def test_stats_of_a_directory_that_is_not_a_run_is_an_error(tmp_path):
    completed = cli("stats", str(tmp_path))
    assert completed.returncode == 2 and "no statistics" in completed.stderr


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    """A run of three JSONL documents through gopher_quality (in this process: no Ray)."""
    directory = tmp_path_factory.mktemp("small")
    corpus = directory / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": "The boats rocked in the harbour and the tide "
                                          "came in with the wind. " * 8}) + "\n" for i in range(3)))
    assert run(directory, [str(corpus)], stages=["gopher_quality"]).ok
    return directory / "run"


SUMMARY_DAMAGES = {
    "cut short": lambda text: text[:len(text) // 2],
    "not a mapping": lambda text: "[1, 2, 3]",
    "without its stages": lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "stages"}),
    "a stage without counts": lambda text: json.dumps({**json.loads(text), "stages": [{"stage": "read"}]}),
}


@pytest.mark.parametrize("damage", SUMMARY_DAMAGES.values(), ids=SUMMARY_DAMAGES.keys())
def test_a_damaged_summary_makes_stats_and_report_exit_2_with_one_line_naming_it(small_run, tmp_path, damage):
    copy = tmp_path / "run"
    shutil.copytree(small_run, copy)
    summary = copy / "stats" / "summary.json"
    summary.write_text(damage(summary.read_text()))
    for command in ("stats", "report"):
        completed = cli(command, str(copy))
        assert completed.returncode == 2, (command, completed.stderr)
        # `report` first says what it does ("report: reading stats"); the error is one line of its own
        [line] = [line for line in completed.stderr.strip().splitlines() if not line.startswith("report: ")]
        assert line.startswith(f"error: {summary}: "), (command, line)



def test_bad_texts_go_through_every_filter_of_a_run_and_each_gets_a_decision(tmp_path, lid_model, local_ray):
    from pipeline.demo_crawl import write_demo_labels

    labels = write_demo_labels(tmp_path / "demo")
    corpus = tmp_path / "bad.jsonl"
    texts = ["", "12345 !!! ??? 678", "word " * 1_000_000, "English, Deutsch, русский, 中文, العربية, 😀 " * 20,
             "The harbour was quiet in the early morning and the boats rocked gently at their moorings. " * 20]
    lines = [json.dumps({"id": f"t{i}", "text": text}) for i, text in enumerate(texts)]
    lines.append('{"id": "surrogates", "text": "broken \\udcff bytes \\ud800 here and the rest of a sentence."}')
    corpus.write_text("\n".join(lines) + "\n")
    every_filter = [
        "extract", {"langid": {"model": str(lid_model), "languages": None, "min_score": 0.0}},
        "gopher_repetition", "gopher_quality", "c4", "fineweb", {"toxic_words": {"word_list": str(labels["badwords"])}},
        {"toxicity_classifier": {"model": str(tmp_path / "t.bin"), "train_from": str(labels["toxicity"])}},
        {"quality_classifier": {"model": str(tmp_path / "q.bin"), "train_from": str(labels["quality"])}}, "pii",
    ]
    result = run(tmp_path, [str(corpus)], stages=every_filter, rejects=True)

    assert result.ok and not accounting_problems(result.funnel)
    stages = by_stage(result)
    assert stages["read"].rows_in == len(texts) + 1 and stages["read"].failed_total == 0
    assert all(tally.failed_total == 0 for tally in result.funnel)
    decided = set(documents(result.run_dir)["id"]) | set(
        ds.dataset(result.run_dir / "rejects", format="parquet").to_table().column("id").to_pylist())
    assert decided == {f"t{i}" for i in range(len(texts))} | {"surrogates"}
