"""Which input files a run reads: the data files of a folder or glob by extension and first bytes, every other file
skipped with a reason, zero-byte inputs counted as empty, and a warning when a capture comes as both WARC and WET."""

from __future__ import annotations

import gzip
import json
import logging
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import pipeline_cli
from pipeline.config import RunConfig, load_config
from pipeline.io.data_files import input_use, skip_reason, warc_and_wet_pairs
from pipeline.plan import InputChanged, check_inputs, input_report, plan_inputs, plan_units
from pipeline.stats import StatsUnreadable, accounting_problems, read_funnel
from pipeline.summary import format_input_files

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WARC = DATA / "warc"
WHIRLWIND = WARC / "cc_whirlwind"
NPM = WARC / "cc_npm_warc"


def config_for(tmp_path: Path, paths: list[str]) -> RunConfig:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"name": "inputs", "input": {"paths": paths}, "stages": ["extract"]}))
    return load_config(path, output=str(tmp_path / "run"))


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """A real Common Crawl WARC beside a SOURCE.txt, a README.md and a zero-byte .warc.gz."""
    folder = tmp_path / "crawl"
    folder.mkdir()
    shutil.copyfile(WHIRLWIND / "whirlwind.warc.gz", folder / "whirlwind.warc.gz")
    shutil.copyfile(WHIRLWIND / "SOURCE.txt", folder / "SOURCE.txt")
    (folder / "README.md").write_text("# A crawl\n\nOne page of CC-MAIN-2024-22.\n")
    (folder / "empty.warc.gz").write_bytes(b"")
    return folder


def uses(inputs: dict[str, dict]) -> dict[str, tuple[str, str]]:
    return {Path(path).name: (entry["use"], entry.get("reason", "")) for path, entry in inputs.items()}


# --------------------------------------------------------------------------------------------- which files are read


def test_a_folder_reads_its_data_files_skips_the_others_with_a_reason_and_counts_an_empty_one(tmp_path, mixed_folder):
    inputs = plan_inputs(config_for(tmp_path, [str(mixed_folder)]), [])
    assert uses(inputs) == {
        "whirlwind.warc.gz": ("read", ""),
        "SOURCE.txt": ("skipped", "not a data file: unknown extension .txt"),
        "README.md": ("skipped", "not a data file: unknown extension .md"),
        "empty.warc.gz": ("empty", ""),
    }
    assert [unit.path for unit in plan_units(config_for(tmp_path, [str(mixed_folder)]), inputs)] == [
        str(mixed_folder / "whirlwind.warc.gz")]


def test_a_glob_skips_like_a_folder(tmp_path, mixed_folder):
    inputs = plan_inputs(config_for(tmp_path, [str(mixed_folder / "*")]), [])
    assert {name: use for name, (use, _) in uses(inputs).items()} == {
        "whirlwind.warc.gz": "read", "SOURCE.txt": "skipped", "README.md": "skipped", "empty.warc.gz": "empty"}


def test_a_file_named_by_its_own_path_is_read_whatever_it_holds(tmp_path, mixed_folder):
    named = [str(mixed_folder / "SOURCE.txt"), str(mixed_folder / "empty.warc.gz")]
    assert uses(plan_inputs(config_for(tmp_path, named), [])) == {
        "SOURCE.txt": ("read", ""), "empty.warc.gz": ("empty", "")}


def test_a_file_named_and_also_in_a_named_folder_is_read(tmp_path, mixed_folder):
    paths = [str(mixed_folder), str(mixed_folder / "SOURCE.txt")]
    assert uses(plan_inputs(config_for(tmp_path, paths), []))["SOURCE.txt"] == ("read", "")


@pytest.mark.parametrize("folder", sorted(path.name for path in WARC.iterdir()))
def test_every_real_archive_in_a_folder_is_read_and_only_its_source_note_is_skipped(folder):
    for path in sorted((WARC / folder).iterdir()):
        expected = ("skipped", "not a data file: unknown extension .txt") if path.name == "SOURCE.txt" else ("read", "")
        assert input_use(str(path), named=False) == expected, path.name


def write_gzip_warc_with_a_damaged_first_member(path: Path) -> None:
    data = bytearray((WHIRLWIND / "whirlwind.warc.gz").read_bytes())
    data[20:60] = bytes(40)
    path.write_bytes(bytes(data))


SKIP_CASES = {
    "notes.txt": (b"Downloaded from the crawl on Monday.\n", "not a data file: unknown extension .txt"),
    "LICENSE": (b"Apache License, Version 2.0\n", "not a data file: no extension"),
    "crawl.warc.gz.md5": (b"d41d8cd98f00b204e9800998ecf8427e  crawl.warc.gz\n",
                          "not a data file: unknown extension .md5"),
    "bundle.tar.gz": (gzip.compress(b"not an archive of ours"), "not a data file: unknown extension .tar.gz"),
    "_SUCCESS": (b"", "not a data file: a marker or metadata file (name starts with _)"),
    "empty.txt": (b"", "not a data file: unknown extension .txt"),
    "crawl.warc.gz": (b"WARC/1.0\r\nWARC-Type: warcinfo\r\n", "extension .warc.gz but content is not gzip"),
    "notes.warc": (b"This is a text file, not a web archive.\n", "extension .warc but content is not WARC or ARC"),
    "pages.warc.wet": (b'{"text": "a line"}\n', "extension .warc.wet but content is JSON lines"),
    "part-0.parquet": (b'{"text": "a line"}\n', "extension .parquet but content is JSON lines"),
    "dataset_info.json": (b'{\n  "name": "crawl",\n  "rows": 3\n}\n',
                          "extension .json but content is one JSON document, not JSON lines"),
    "crawl.warc.zst": (b"\x28\xb5\x2f\xfd\x00\x58\x61\x00",
                       "zstd-compressed, which is not read (decompress it, or compress it with gzip)"),
}


@pytest.mark.parametrize("name", SKIP_CASES)
def test_a_file_that_is_not_data_is_skipped_with_its_reason(tmp_path, name):
    content, reason = SKIP_CASES[name]
    (tmp_path / name).write_bytes(content)
    assert skip_reason(str(tmp_path / name)) == reason


DATA_CASES = {
    "records.jsonl.gz": lambda path: path.write_bytes(gzip.compress(b'{"text": "one"}\n{"text": "two"}\n')),
    "records.json": lambda path: path.write_bytes(b'{"text": "one"}\n{"text": "two"}\n'),
    "table.parquet": lambda path: pq.write_table(pa.table({"text": ["one"]}), path),
    "part-00000": lambda path: shutil.copyfile(NPM / f"{next(NPM.glob('*.warc')).name}", path),  # no extension
    "crawl.warc": lambda path: path.write_bytes(gzip.decompress((WHIRLWIND / "whirlwind.warc.gz").read_bytes())),
    "old.arc": lambda path: shutil.copyfile(WARC / "robustness_warcio" / "example.arc", path),
    "example-bad.warc.gz.bad": lambda path: shutil.copyfile(WARC / "robustness_warcio" / path.name, path),
    "damaged-first-member.warc.gz": write_gzip_warc_with_a_damaged_first_member,  # the reader recovers the rest
    "empty.warc.gz": lambda path: path.write_bytes(b""),
}


@pytest.mark.parametrize("name", DATA_CASES)
def test_a_data_file_is_not_skipped(tmp_path, name):
    DATA_CASES[name](tmp_path / name)
    assert skip_reason(str(tmp_path / name)) == ""


# -------------------------------------------------------------------------------------------- WARC beside its WET


def test_common_crawl_warc_and_wet_names_of_one_capture_pair_up_across_folders():
    stem = "crawl-data/CC-MAIN-2024-22/segments/1715971057216.39/{}/CC-MAIN-20240517000000-20240517030000-00000.{}"
    warc, wet, wat = (stem.format(kind, suffix) for kind, suffix in
                      (("warc", "warc.gz"), ("wet", "warc.wet.gz"), ("wat", "warc.wat.gz")))
    other = stem.format("wet", "warc.wet.gz").replace("-00000.", "-00001.")
    assert warc_and_wet_pairs([warc, wat, wet, other]) == [(warc, wet)]


def test_a_capture_given_as_warc_and_wet_is_read_from_both_with_a_warning(tmp_path, caplog):
    paths = [str(WHIRLWIND), str(NPM)]
    with caplog.at_level(logging.WARNING, logger="pipeline.plan"):
        inputs = plan_inputs(config_for(tmp_path, paths), [])
    [warning] = [record.getMessage() for record in caplog.records]
    assert warning.startswith("2 captures are given both as WARC and as WET (e.g. ")
    assert f"{NPM / next(NPM.glob('*.warc')).name} and " in warning and "read twice" in warning
    read = {Path(path).name for path, entry in inputs.items() if entry["use"] == "read"}
    assert {"whirlwind.warc.gz", "whirlwind.warc.wet.gz"} <= read  # neither dropped
    assert input_report(inputs)["warnings"] == [warning]


def test_no_warning_without_a_warc_and_wet_pair(tmp_path, caplog, mixed_folder):
    with caplog.at_level(logging.WARNING, logger="pipeline.plan"):
        inputs = plan_inputs(config_for(tmp_path, [str(mixed_folder), str(WHIRLWIND / "whirlwind.warc.wat.gz")]), [])
    assert not caplog.records and input_report(inputs)["warnings"] == []


# ------------------------------------------------------------------------------------------ the report and resume


def test_the_summary_names_the_skipped_files_by_reason_and_the_empty_ones(tmp_path, mixed_folder):
    text = format_input_files(input_report(plan_inputs(config_for(tmp_path, [str(mixed_folder)]), [])))
    assert text.splitlines() == [
        "input files: 1 read, 2 skipped, 1 empty",
        f"  skipped 1 (not a data file: unknown extension .md): {mixed_folder / 'README.md'}",
        f"  skipped 1 (not a data file: unknown extension .txt): {mixed_folder / 'SOURCE.txt'}",
        f"  empty 1 (0 bytes: no records): {mixed_folder / 'empty.warc.gz'}",
    ]


def test_a_resume_lets_a_skipped_file_change_but_not_an_empty_input(tmp_path, mixed_folder):
    inputs = plan_inputs(config_for(tmp_path, [str(mixed_folder)]), [])
    (mixed_folder / "README.md").write_text("# Edited while the run was stopped\n")
    check_inputs(inputs)
    shutil.copyfile(WHIRLWIND / "whirlwind.warc.wet.gz", mixed_folder / "empty.warc.gz")
    with pytest.raises(InputChanged, match="empty.warc.gz changed since this run was planned"):
        check_inputs(inputs)


def test_a_summary_whose_input_files_are_damaged_is_unreadable(tmp_path, mixed_folder):
    stats = tmp_path / "stats"
    stats.mkdir()
    summary = {"name": "x", "units": 1, "records_read": 0, "documents": 0, "wall_seconds": 1.0, "stages": [],
               "input_files": {"read": 1, "skipped": ["SOURCE.txt"], "empty": [], "warnings": []}}
    (stats / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(StatsUnreadable, match="'input_files' is not a report of input files"):
        read_funnel(stats)


# ---------------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_a_run_over_a_mixed_folder_reads_only_the_warc_and_says_what_it_left(tmp_path, mixed_folder):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"name": "mixed", "input": {"paths": [str(mixed_folder)]},
                                      "stages": ["extract"]}))
    output = tmp_path / "run"
    for attempt in ("first", "resumed"):
        completed = pipeline_cli("run", "--config", str(config), "--output", str(output), "--quiet")
        assert completed.returncode == 0, (attempt, completed.stdout + completed.stderr)
        assert "input files: 1 read, 2 skipped, 1 empty" in completed.stdout, attempt
        assert f"  empty 1 (0 bytes: no records): {mixed_folder / 'empty.warc.gz'}" in completed.stdout, attempt
    funnel, summary = read_funnel(output / "stats")
    read = funnel[0]
    assert read.failed_total == 0 and not accounting_problems(funnel)
    assert read.rows_in == 4 and funnel[-1].kept == 1  # warcinfo, request, response, metadata: one page
    assert summary["input_files"] == {
        "read": 1,
        "skipped": [{"path": str(mixed_folder / "README.md"), "reason": "not a data file: unknown extension .md"},
                    {"path": str(mixed_folder / "SOURCE.txt"), "reason": "not a data file: unknown extension .txt"}],
        "empty": [str(mixed_folder / "empty.warc.gz")],
        "warnings": [],
    }


@pytest.mark.slow
def test_a_run_over_a_warc_beside_its_wet_warns_and_reads_both(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"name": "pair", "input": {"paths": [str(WHIRLWIND)]}, "stages": ["extract"]}))
    completed = pipeline_cli("run", "--config", str(config), "--output", str(tmp_path / "run"), "--quiet")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    expected = (f"1 capture is given both as WARC and as WET (e.g. {WHIRLWIND / 'whirlwind.warc.gz'} and "
                f"{WHIRLWIND / 'whirlwind.warc.wet.gz'}): their pages are read twice")
    assert f"WARNING: {expected}" in completed.stdout
    assert expected in completed.stderr  # said when the run is planned, before any reading
    assert "input files: 3 read, 1 skipped" in completed.stdout
