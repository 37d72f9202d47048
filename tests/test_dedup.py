"""Deduplication end to end on a real local Ray: exact and MinHash-LSH, across files, one kept per cluster."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyarrow.dataset as ds
import pytest
import yaml

from conftest import pipeline_cli
from pipeline.config import load_config
from pipeline.runner import run_pipeline
from pipeline.stats import accounting_problems
from stages.dedup.minhash import MinHashSettings, band_keys, signatures

pytestmark = pytest.mark.slow


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def dedup_run(tmp_path: Path, inputs: list[Path], **dedup_settings):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump({
        "name": "dedup-test", "input": {"paths": [str(p) for p in inputs]},
        "stages": [{"dedup": dedup_settings}], "rejects": True,
    }))
    return run_pipeline(load_config(config_file, output=str(tmp_path / "run")), show_progress=False)


def kept(result) -> pd.DataFrame:
    return ds.dataset(result.run_dir / "dedup" / "documents", format="parquet").to_table().to_pandas()


def clusters(result) -> pd.DataFrame:
    return read_clusters(result.run_dir)


def read_clusters(run_dir: Path) -> pd.DataFrame:
    """dedup/clusters/, its part files together, by cluster."""
    table = ds.dataset(run_dir / "dedup" / "clusters", format="parquet").to_table()
    return table.to_pandas().sort_values("cluster", ignore_index=True)


def edited(words: list[str], rng: random.Random, vocabulary: list[str]) -> list[str]:
    """One small edit: a word replaced, deleted, inserted, or two neighbours swapped."""
    words = list(words)
    position = rng.randrange(1, len(words) - 1)
    kind = rng.choice(("replace", "delete", "insert", "swap"))
    if kind == "replace":
        words[position] = rng.choice(vocabulary)
    elif kind == "delete":
        del words[position]
    elif kind == "insert":
        words.insert(position, rng.choice(vocabulary))
    else:
        words[position], words[position + 1] = words[position + 1], words[position]
    return words


def test_each_of_1000_real_documents_seen_k_times_with_small_edits_keeps_exactly_one_copy(
    tmp_path, english_words, local_ray
):
    rng = random.Random(7)
    originals = [english_words[i * 280:(i + 1) * 280] for i in range(1000)]
    records, origin_of = [], {}
    for index, words in enumerate(originals):
        copies = 1 + index % 5  # k = 1..5
        for copy in range(copies):
            text = " ".join(words if copy == 0 else edited(words, rng, english_words[:5000]))
            doc_id = f"doc{index}-copy{copy}"
            records.append({"id": doc_id, "text": text})
            origin_of[doc_id] = index
    rng.shuffle(records)
    half = len(records) // 2  # two input files: duplicates must be found across files
    inputs = [write_jsonl(tmp_path / "a.jsonl", records[:half]), write_jsonl(tmp_path / "b.jsonl", records[half:])]
    result = dedup_run(tmp_path, inputs)

    assert result.ok and not accounting_problems(result.funnel)
    docs = kept(result)
    assert sorted(origin_of[doc_id] for doc_id in docs["id"]) == list(range(1000))
    table = clusters(result)
    assert len(table) == 800 and sorted(table["size"].value_counts().to_dict().items()) == [(2, 200), (3, 200),
                                                                                            (4, 200), (5, 200)]
    assert all(origin_of[kept_id] == origin_of[removed] for kept_id, removed_ids in
               zip(table["kept_id"], table["removed_ids"]) for removed in removed_ids)
    dedup = {tally.stage: tally for tally in result.funnel}["dedup"]
    assert dedup.rows_in == len(records) and dedup.kept == 1000 and dedup.dropped_total == len(records) - 1000


def first_transitive_triple(words: list[str], settings: MinHashSettings) -> list[str]:
    """Three overlapping windows of real text where LSH pairs A with B and B with C, but not A with C."""
    for start in range(0, 200_000, 997):
        texts = [" ".join(words[start + shift:start + shift + 200]) for shift in (0, 18, 36)]
        keys = band_keys(signatures(texts, settings), settings.bands, settings.rows)
        shared = lambda i, j: bool(set(keys[i].tolist()) & set(keys[j].tolist()))  # noqa: E731
        if shared(0, 1) and shared(1, 2) and not shared(0, 2):
            return texts
    raise AssertionError("no transitive triple found")


def test_a_transitive_cluster_collapses_to_one_kept_document(tmp_path, english_words, local_ray):
    a, b, c = first_transitive_triple(english_words, MinHashSettings())
    others = [" ".join(english_words[250_000 + i * 300:250_000 + (i + 1) * 300]) for i in range(20)]
    records = [{"id": "A", "text": a}, {"id": "B", "text": b}, {"id": "C", "text": c}]
    records += [{"id": f"other{i}", "text": text} for i, text in enumerate(others)]
    result = dedup_run(tmp_path, [write_jsonl(tmp_path / "corpus.jsonl", records)])
    docs = kept(result)
    assert len(set(docs["id"]) & {"A", "B", "C"}) == 1 and len(docs) == 21
    table = clusters(result)
    assert table["size"].tolist() == [3] and table["removed_reasons"][0].tolist() == ["near_duplicate"] * 2


def test_exact_duplicates_differ_only_in_case_space_and_punctuation_and_are_named_so(tmp_path, english_words,
                                                                                       local_ray):
    text = " ".join(english_words[1000:1300])
    records = [{"id": "plain", "text": text}, {"id": "shouty", "text": text.upper()},
               {"id": "spaced", "text": text.replace(" ", "   \n")}, {"id": "unrelated", "text": " ".join(english_words[5000:5300])}]
    result = dedup_run(tmp_path, [write_jsonl(tmp_path / "corpus.jsonl", records)], near=False)
    docs = kept(result)
    assert len(docs) == 2 and "unrelated" in set(docs["id"])
    assert clusters(result)["removed_reasons"][0].tolist() == ["exact_duplicate", "exact_duplicate"]
    rejects = ds.dataset(result.run_dir / "rejects" / "dedup", format="parquet").to_table().to_pandas()
    assert sorted(rejects["drop_reason"]) == ["exact_duplicate", "exact_duplicate"]


def test_the_exact_jaccard_check_drops_pairs_below_its_threshold(tmp_path, english_words, local_ray):
    words = english_words[20_000:20_300]
    rng = random.Random(3)
    near_copy = edited(edited(words, rng, english_words[:5000]), rng, english_words[:5000])
    records = [{"id": "original", "text": " ".join(words)}, {"id": "copy", "text": " ".join(near_copy)}]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", records)
    for name, threshold, expected in (("lsh", None, 1), ("strict", 0.99, 2), ("lenient", 0.8, 1)):
        (tmp_path / name).mkdir()
        settings = {} if threshold is None else {"verify_jaccard": threshold}
        assert len(kept(dedup_run(tmp_path / name, [corpus], **settings))) == expected, name


def test_dedup_follows_the_filters_in_a_run_and_is_resumed_not_redone(tmp_path, data_dir, local_ray):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump({
        "name": "crawl", "input": {"demo_crawl": {"pages": 300, "files": 2, "seed": 0,
                                                 "directory": str(tmp_path / "demo")}},
        "stages": ["extract", "dedup"],
    }))
    config = load_config(config_file, output=str(tmp_path / "run"))
    result = run_pipeline(config, show_progress=False)
    stages = {tally.stage: tally for tally in result.funnel}
    assert not accounting_problems(result.funnel) and stages["dedup"].rows_in == stages["extract"].kept
    truth = [json.loads(line) for line in (tmp_path / "demo" / "demo-crawl-truth.jsonl").read_text().splitlines()]
    copies = sum(1 for page in truth if page["kind"] in ("near_duplicate", "exact_duplicate"))
    assert stages["dedup"].dropped_total >= copies
    marker = (result.run_dir / "dedup" / "_done.json").stat().st_mtime_ns
    again = run_pipeline(config, show_progress=False)
    assert (result.run_dir / "dedup" / "_done.json").stat().st_mtime_ns == marker
    assert [t.to_dict()["kept"] for t in again.funnel] == [t.to_dict()["kept"] for t in result.funnel]


def test_dedup_alone_on_parquet_files_and_texts_without_words_are_never_near_duplicates(tmp_path, english_words,
                                                                                          local_ray):
    article = " ".join(english_words[40_000:40_250])
    wordless = ["", "   ", "!!! ... ---", "— … ¿?"]  # (not ™: NFKC makes it the word "tm")
    first = pa.table({"id": ["article", *[f"wordless{i}" for i in range(4)]], "text": [article, *wordless]})
    second = pa.table({"id": ["article-again"], "text": [article.upper()]})
    pq.write_table(first, tmp_path / "one.parquet")
    pq.write_table(second, tmp_path / "two.parquet")
    inputs = [tmp_path / "one.parquet", tmp_path / "two.parquet"]

    (tmp_path / "near").mkdir()
    near_only = dedup_run(tmp_path / "near", inputs, exact=False)
    assert set(kept(near_only)["id"]) == {"article", *[f"wordless{i}" for i in range(4)]}  # longest; then first
    # found by LSH, but named by what it is: its normalised text equals the kept one's
    assert clusters(near_only)["removed_reasons"].tolist()[0].tolist() == ["exact_duplicate"]

    (tmp_path / "both").mkdir()
    both = dedup_run(tmp_path / "both", inputs)
    assert not accounting_problems(both.funnel)
    # normalised, the four wordless texts are all the empty text: exact duplicates; the longest is kept
    assert set(kept(both)["id"]) == {"article", "wordless2"}
    dedup = {tally.stage: tally for tally in both.funnel}["dedup"]
    assert dict(dedup.dropped) == {"exact_duplicate": 4}
    assert [(Path(ex["source"]).name, ex["offset"], ex["detail"].split(": ")[1]) for ex in dedup.examples] == [
        ("one.parquet", row, "kept wordless2") for row in (1, 2, 4)]  # the first three removed, in input order


def test_a_dedup_that_dies_after_its_shuffles_resumes_from_the_saved_graph(tmp_path, english_words, local_ray,
                                                                          monkeypatch):
    import stages.dedup.runner as dedup_runner

    text = " ".join(english_words[60_000:60_300])
    records = [{"id": f"d{i}", "text": text if i % 3 == 0 else " ".join(english_words[61_000 + i * 300:61_300 + i * 300])}
               for i in range(30)]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", records)
    (tmp_path / "straight").mkdir()
    straight = dedup_run(tmp_path / "straight", [corpus])

    real_filter = dedup_runner._filter_and_cluster
    calls = []

    def dies_once(*args):
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("killed while filtering the parts")
        return real_filter(*args)

    monkeypatch.setattr(dedup_runner, "_filter_and_cluster", dies_once)
    (tmp_path / "crashed").mkdir()
    failed = dedup_run(tmp_path / "crashed", [corpus])
    graph = failed.run_dir / "dedup" / "_members" / "_done.json"
    assert list(failed.failed_stages) == ["dedup"] and graph.exists()
    resumed = dedup_run(tmp_path / "crashed", [corpus])
    assert resumed.ok and json.loads((resumed.run_dir / "dedup" / "_done.json").read_text())["graph_resumed"]
    assert sorted(kept(resumed)["id"]) == sorted(kept(straight)["id"]) and len(kept(straight)) == 21
    assert clusters(resumed).equals(clusters(straight))


def _hash_shuffle_aggregators() -> int:
    """Ray Data's hash shuffle aggregator actors this Ray has started, alive or gone (the GCS's actor table: the
    test's Ray has no dashboard for the state API)."""
    from ray._private import state

    return sum(actor["ActorClassName"] == "HashShuffleAggregator" for actor in state.actors().values())


@pytest.mark.parametrize("settings", [{}, {"verify_jaccard": 0.8}, {"verify_jaccard": 0.8, "shuffle": "hash"}],
                         ids=["lsh", "verified", "verified-hash-shuffle"])
def test_a_small_run_deduplicates_in_process_without_ray_with_the_ray_runs_output(tmp_path, english_words,
                                                                                   local_ray, settings):
    """A fresh `pipeline run` on a small input starts no Ray (ray.in_process_max_mb) and writes what the Ray
    path writes: the same kept documents, clusters, reasons and counts, with Ray Data's sort shuffle (what a small
    run gets) or its hash shuffle (what a run of a million documents gets: aggregator actors)."""
    rng = random.Random(11)
    records = []
    for index in range(120):
        words = english_words[index * 200:(index + 1) * 200]
        records.append({"id": f"doc{index}", "url": f"https://example.org/{index}", "text": " ".join(words)})
        if index % 4 == 0:  # a near copy
            records.append({"id": f"doc{index}-near", "text": " ".join(edited(words, rng, english_words[:5000]))})
        if index % 7 == 0:  # an exact copy, up to case and spacing
            records.append({"id": f"doc{index}-exact", "text": " ".join(words).upper()})
    rng.shuffle(records)
    inputs = [write_jsonl(tmp_path / f"{name}.jsonl", records[start::3]) for start, name in enumerate("abc")]
    config = {"name": "small", "input": {"paths": [str(p) for p in inputs]}, "stages": [{"dedup": settings}],
              "rejects": True}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    completed = pipeline_cli("run", "--config", str(tmp_path / "config.yaml"), "--output", str(tmp_path / "local"))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "no Ray started" in completed.stdout
    local = tmp_path / "local"
    assert json.loads((local / "stats" / "summary.json").read_text())["executor"] == "in_process"

    (tmp_path / "on-ray").mkdir()
    aggregators = _hash_shuffle_aggregators()
    on_ray = dedup_run(tmp_path / "on-ray", inputs, **settings)  # this process has a Ray: the Ray path
    assert json.loads((on_ray.run_dir / "stats" / "summary.json").read_text())["executor"] == "ray"
    assert (_hash_shuffle_aggregators() > aggregators) == (settings.get("shuffle") == "hash")
    for name in ("dedup/documents", "rejects/dedup"):
        ours = ds.dataset(local / name, format="parquet").to_table().sort_by("id")
        theirs = ds.dataset(on_ray.run_dir / name, format="parquet").to_table().sort_by("id")
        assert ours.equals(theirs), name
    assert read_clusters(local).equals(read_clusters(on_ray.run_dir))
    local_dedup = json.loads((local / "dedup" / "_done.json").read_text())["stage"]
    ray_dedup = json.loads((on_ray.run_dir / "dedup" / "_done.json").read_text())["stage"]
    assert {k: local_dedup[k] for k in ("rows_in", "kept", "dropped")} == \
        {k: ray_dedup[k] for k in ("rows_in", "kept", "dropped")}
    assert local_dedup["rows_in"] == 168 and local_dedup["kept"] == 120  # every planted copy found, on both paths
