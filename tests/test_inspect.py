"""The notebook API (`from pipeline import inspect`) gives the run's own numbers: its funnel is the run's counters,
its reasons add up to the drops, its per-document signals are the rows the workers wrote, and a sample of a drop
reason shows the signal value on the wrong side of the configured threshold."""

from __future__ import annotations

import pandas as pd
import pyarrow.dataset as ds
import pytest
import yaml

from pipeline import inspect
from pipeline.config import load_config
from pipeline.runner import run_pipeline
from stages import STAGES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory, warc_dir, lid_model, local_ray):
    directory = tmp_path_factory.mktemp("inspect")
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump({
        "name": "inspect", "input": {"paths": [str(warc_dir / "derived_real_html" / "*.warc.gz")]},
        "stages": ["extract", {"langid": {"model": str(lid_model), "languages": ["en", "de"]}},
                   "gopher_repetition", "gopher_quality", "fineweb", "dedup", {"tokenizer": {"vocab_size": 1000}},
                   {"tokenize": {"shard_tokens": 200_000}}],
        "rejects": True,
    }))
    result = run_pipeline(load_config(config, output=str(directory / "run")), show_progress=False)
    assert result.ok
    return inspect.load_run(directory / "run"), result


def test_the_funnel_is_the_runs_own_counters(run):
    loaded, result = run
    funnel = loaded.funnel()
    assert funnel["stage"].tolist() == [tally.stage for tally in result.funnel]
    assert funnel["rows_in"].tolist() == [tally.rows_in for tally in result.funnel]
    assert funnel["kept"].tolist() == [tally.kept for tally in result.funnel]
    assert funnel["rows_in"].iloc[0] == loaded.summary["records_read"] > 800
    assert (funnel["rows_in"] == funnel["kept"] + funnel["dropped"] + funnel["failed"]).all()
    assert funnel["docs_per_s"].iloc[1] > 0
    reasons = loaded.reasons()
    by_stage = reasons.groupby("stage")["count"].sum()
    for row in funnel.itertuples():
        assert by_stage.get(row.stage, 0) == row.dropped + row.failed
    assert reasons["share"].between(0, 1).all()


def test_per_document_signals_are_the_rows_the_workers_wrote(run):
    loaded, result = run
    signals = loaded.signals()
    per_document = [tally for tally in result.funnel if tally.stage not in ("read", "dedup", "tokenizer", "tokenize")]
    assert (signals["outcome"] == "kept").sum() == per_document[-1].kept
    dropped = signals[signals["outcome"] == "dropped"].groupby(["stage", "drop_reason"]).size()
    expected = {(tally.stage, reason): count for tally in per_document for reason, count in tally.dropped.items()}
    assert dropped.to_dict() == expected
    assert {"lang_score", "gopher_quality_word_count", "fineweb_line_punct_ratio"} <= set(loaded.signal_columns())
    # a sample keeps whole parts and says so by being smaller
    small = loaded.signals(max_rows=1)
    assert 0 < len(small) < len(signals)


def test_a_sample_of_a_reason_shows_the_value_past_its_threshold(run):
    loaded, _ = run
    settings = {name: values for entry in loaded.config["stages"] for name, values in entry.items()}
    reasons = loaded.reasons()
    checked = 0
    for row in reasons[reasons["stage"].isin(["gopher_quality", "fineweb", "langid"])].itertuples():
        decisions = [d for d in STAGES[row.stage].thresholds(settings[row.stage]) if d.reason == row.reason]
        if not decisions:
            continue
        sample = loaded.sample(row.reason, n=3, stage=row.stage)
        assert 0 < len(sample) <= 3 and sample["url"].notna().all()
        assert (sample["signal"] == decisions[0].signal).all()
        # the reason names the first rule a document broke (word_count: too few or too many), so each value is
        # past one of that reason's limits
        for value in sample["value"]:
            assert any(value < d.limit if d.drop_when == "below" else value > d.limit for d in decisions), value
        checked += 1
    assert checked >= 2


def test_languages_domains_clusters_and_shards_add_up(run):
    loaded, result = run
    tallies = {tally.stage: tally for tally in result.funnel}
    languages = loaded.languages()
    assert languages["kept"].sum() == tallies["fineweb"].kept
    assert set(languages["lang"][languages["kept"] > 0]) <= {"en", "de"}
    domains = loaded.domains(top=1000)
    assert domains["kept"].sum() == tallies["fineweb"].kept
    sizes = loaded.cluster_sizes()
    assert ((sizes["size"] - 1) * sizes["clusters"]).sum() == tallies["dedup"].dropped_total
    shards = loaded.shards()
    manifest = yaml.safe_load((loaded.run_dir.shards / "manifest.json").read_text())
    assert shards["tokens"].sum() == manifest["tokens"] and shards["documents"].sum() == manifest["documents"]
    paths = loaded.parquet_paths()
    kept = ds.dataset(paths["dedup_documents"], format="parquet").count_rows()
    assert kept == tallies["dedup"].kept and paths["funnel"]
    assert isinstance(loaded.units(), pd.DataFrame) and len(loaded.examples()) > 0


def test_a_directory_without_statistics_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no stats/summary.json"):
        inspect.load_run(tmp_path)
