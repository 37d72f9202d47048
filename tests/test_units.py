"""Cutting the input into units: which files, in which format, split into which byte ranges, under which ids."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.io.archive_reader import ReadOptions
from pipeline.io.text_reader import TextFields
from pipeline.io.units import Unit, detect_format, expand_paths, plan_file, read_unit

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WARC = DATA / "warc"
ROBUSTNESS = WARC / "robustness_warcio"
NPM_WARC = WARC / "cc_npm_warc" / "CC-MAIN-20140820021334-00006-ip-10-180-136-8.ec2.internal.warc"
RESILIPARSE = WARC / "cc_resiliparse" / "CC-MAIN-2020-34-excerpt.warc.gz"
SHAKESPEARE = DATA / "text" / "tinyshakespeare" / "input.txt"


def json_lines(count: int = 5) -> bytes:
    blocks = SHAKESPEARE.read_text(encoding="utf-8").split("\n\n")[:count]
    return b"".join(json.dumps({"text": block}).encode() + b"\n" for block in blocks)


# ------------------------------------------------------------------------------------------------ detect_format


@pytest.mark.parametrize(
    "path,expected",
    [
        (ROBUSTNESS / "example.warc.gz", "warc"),
        (ROBUSTNESS / "example.warc", "warc"),
        (ROBUSTNESS / "example.arc", "warc"),
        (ROBUSTNESS / "example.arc.gz", "warc"),
        (WARC / "cc_whirlwind" / "whirlwind.warc.wet.gz", "warc"),
        (WARC / "cc_whirlwind" / "whirlwind.warc.wat.gz", "warc"),
        (NPM_WARC.with_name(NPM_WARC.name + ".wet"), "warc"),
    ],
    ids=lambda v: v.name if isinstance(v, Path) else v,
)
def test_real_archives_are_detected_by_name(path, expected):
    assert detect_format(str(path)) == expected


@pytest.mark.parametrize(
    "name,expected",
    [
        ("corpus.jsonl", "jsonl"),
        ("corpus.jsonl.gz", "jsonl"),
        ("corpus.ndjson", "jsonl"),
        ("corpus.json.gzip", "jsonl"),
        ("part-0001.parquet", "parquet"),
        ("CRAWL.WARC.GZ", "warc"),
        ("crawl.warc.wet.gz", "warc"),
    ],
)
def test_the_name_decides_over_the_content(tmp_path, name, expected):
    path = tmp_path / name
    path.write_bytes(b"WARC/1.0\r\n" if expected != "warc" else json_lines())  # content that says otherwise
    assert detect_format(str(path)) == expected


def test_a_gzip_warc_with_an_unknown_name_is_detected_by_content():
    assert detect_format(str(ROBUSTNESS / "example-bad.warc.gz.bad")) == "warc"


def test_an_uncompressed_warc_with_an_unknown_name_is_detected_by_content(tmp_path):
    path = tmp_path / "crawl.dat"
    shutil.copyfile(NPM_WARC, path)
    assert detect_format(str(path)) == "warc"


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_json_lines_with_an_unknown_name_are_jsonl(tmp_path, compress):
    path = tmp_path / "export.dat"
    path.write_bytes(gzip.compress(json_lines()) if compress else json_lines())
    assert detect_format(str(path)) == "jsonl"


def test_json_lines_after_leading_whitespace_are_jsonl(tmp_path):
    path = tmp_path / "export.dat"
    path.write_bytes(b"\n  " + json_lines())
    assert detect_format(str(path)) == "jsonl"


def test_the_parquet_magic_means_parquet_whatever_the_name(tmp_path):
    path = tmp_path / "table.bin"
    pq.write_table(pa.table({"text": ["a", "b"]}), path)
    assert path.read_bytes()[:4] == b"PAR1"
    assert detect_format(str(path)) == "parquet"


@pytest.mark.parametrize("content", [b"", b"First Citizen:\nBefore we proceed any further, hear me speak.\n"],
                         ids=["empty", "prose"])
def test_anything_else_with_an_unknown_name_defaults_to_warc(tmp_path, content):
    path = tmp_path / "mystery.bin"
    path.write_bytes(content)
    assert detect_format(str(path)) == "warc"


def test_a_truncated_gzip_with_an_unknown_name_defaults_to_warc(tmp_path):
    path = tmp_path / "download.part"
    path.write_bytes((ROBUSTNESS / "example-bad.warc.gz.bad").read_bytes()[:40])
    assert detect_format(str(path)) == "warc"


# ------------------------------------------------------------------------------------------------- expand_paths


def test_a_glob_matches_files_sorted_and_absolute():
    found = expand_paths(str(ROBUSTNESS / "*.warc.gz"))
    expected = sorted(str(p) for p in ROBUSTNESS.iterdir() if p.name.endswith(".warc.gz"))
    assert found == expected and len(found) == 7
    assert all(os.path.isabs(path) for path in found)


def test_a_recursive_glob_descends_into_subdirectories():
    found = expand_paths(str(WARC / "**" / "*.warc.gz"))
    expected = sorted(str(p) for p in WARC.rglob("*.warc.gz"))
    assert found == expected
    assert str(WARC / "aut_heritrix" / "IAH-archive.org-2008.warc.gz") in found
    assert str(WARC / "derived_real_html" / "derived-real-html-00002.warc.gz") in found


def test_a_relative_glob_gives_absolute_paths(monkeypatch):
    monkeypatch.chdir(WARC)
    assert expand_paths("cc_whirlwind/*.gz") == sorted(str(p) for p in (WARC / "cc_whirlwind").glob("*.gz"))


def test_a_directory_means_every_file_under_it():
    found = expand_paths(str(WARC / "cc_whirlwind"))
    assert [Path(path).name for path in found] == [
        "SOURCE.txt", "whirlwind.warc.gz", "whirlwind.warc.wat.gz", "whirlwind.warc.wet.gz",
    ]


def test_a_directory_is_walked_recursively_and_hidden_files_are_left_out(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("one.jsonl", "a/two.jsonl", "a/b/three.jsonl", ".hidden.jsonl", "a/.part-0001.parquet.1234.tmp"):
        (tmp_path / name).write_bytes(json_lines(1))
    assert expand_paths(str(tmp_path)) == sorted(
        str(tmp_path / name) for name in ("one.jsonl", "a/two.jsonl", "a/b/three.jsonl")
    )


def test_a_glob_never_returns_directories(tmp_path):
    (tmp_path / "sub.warc.gz").mkdir()
    (tmp_path / "file.warc.gz").write_bytes(b"")
    assert expand_paths(str(tmp_path / "*.warc.gz")) == [str(tmp_path / "file.warc.gz")]


def test_a_single_file_path_is_itself():
    assert expand_paths(str(NPM_WARC)) == [str(NPM_WARC)]


def test_a_file_whose_name_holds_glob_characters_is_taken_literally(tmp_path):
    named = tmp_path / "crawl[1].warc.gz"
    decoy = tmp_path / "crawl1.warc.gz"  # what "crawl[1]" means as a glob
    for path in (named, decoy):
        shutil.copyfile(RESILIPARSE, path)
    assert expand_paths(str(named)) == [str(named)]
    assert expand_paths(str(tmp_path / "crawl*.warc.gz")) == sorted([str(named), str(decoy)])


@pytest.mark.parametrize("pattern", ["*.nothing-has-this-suffix", "no-such-dir/**/*.warc.gz", "missing.warc.gz"])
def test_a_pattern_that_matches_nothing_gives_an_empty_list(tmp_path, pattern):
    assert expand_paths(str(tmp_path / pattern)) == []


# ---------------------------------------------------------------------------------------------------- plan_file


def test_unit_ids_are_the_same_on_every_call():
    first = plan_file(str(RESILIPARSE), "warc", 10_000)
    second = plan_file(str(RESILIPARSE), "warc", 10_000)
    assert [unit.id for unit in first] == [unit.id for unit in second]
    assert first == second


def test_unit_ids_are_unique_and_name_the_file():
    units = plan_file(str(RESILIPARSE), "warc", 10_000)
    assert len(units) == 14
    assert len({unit.id for unit in units}) == len(units)
    assert all(unit.id.startswith("CC-MAIN-2020-34-excerpt.warc.gz-") for unit in units)


def test_files_of_the_same_name_in_different_directories_get_different_unit_ids(tmp_path):
    for directory in ("a", "b"):
        (tmp_path / directory).mkdir()
        shutil.copyfile(RESILIPARSE, tmp_path / directory / RESILIPARSE.name)
    first = plan_file(str(tmp_path / "a" / RESILIPARSE.name), "warc", 10_000)
    second = plan_file(str(tmp_path / "b" / RESILIPARSE.name), "warc", 10_000)
    assert not {unit.id for unit in first} & {unit.id for unit in second}


def test_member_archives_are_cut_into_contiguous_byte_ranges_covering_the_file():
    size = RESILIPARSE.stat().st_size
    units = plan_file(str(RESILIPARSE), "warc", 10_000)
    assert {unit.layout for unit in units} == {"gzip_members"}
    assert units[0].start == 0 and units[-1].end == size
    assert all(a.end == b.start for a, b in zip(units, units[1:]))
    assert all(unit.end - unit.start <= 10_000 for unit in units)


@pytest.mark.parametrize(
    "path,layout",
    [
        (ROBUSTNESS / "example-bad-non-chunked.warc.gz", "gzip_stream"),
        (ROBUSTNESS / "example-wrong-chunks.warc.gz", "gzip_stream"),
        (NPM_WARC, "plain"),
        (ROBUSTNESS / "example.arc", "plain"),
    ],
    ids=lambda v: v.name if isinstance(v, Path) else v,
)
def test_whole_gzip_and_uncompressed_archives_are_one_unit(path, layout):
    units = plan_file(str(path), "warc", 1_000)  # far smaller than the file
    assert [(unit.layout, unit.start, unit.end) for unit in units] == [(layout, 0, path.stat().st_size)]


def test_a_gzip_jsonl_is_one_unit_and_a_plain_jsonl_is_split(tmp_path):
    data = json_lines(200)
    plain, packed = tmp_path / "corpus.jsonl", tmp_path / "corpus.jsonl.gz"
    plain.write_bytes(data)
    packed.write_bytes(gzip.compress(data))
    assert [(u.layout, u.start, u.end) for u in plan_file(str(packed), "jsonl", 1_000)] == [
        ("gzip", 0, packed.stat().st_size)
    ]
    split = plan_file(str(plain), "jsonl", 1_000)
    assert len(split) == -(-len(data) // 1_000) and {u.layout for u in split} == {"plain"}


def test_the_gzip_jsonl_unit_reads_to_the_end_of_the_uncompressed_stream(tmp_path):
    data = json_lines(200)
    assert len(data) > 2 * len(gzip.compress(data))  # uncompressed offsets go far past the file size
    packed = tmp_path / "corpus.jsonl.gz"
    packed.write_bytes(gzip.compress(data))
    [unit] = plan_file(str(packed), "jsonl", 1 << 20)
    assert len(list(read_unit(unit, ReadOptions(), TextFields()))) == 200


def test_an_empty_file_is_one_empty_unit(tmp_path):
    path = tmp_path / "empty.warc.gz"
    path.write_bytes(b"")
    units = plan_file(str(path), "warc", 1_000)
    assert [(unit.start, unit.end) for unit in units] == [(0, 0)]
    assert list(read_unit(units[0], ReadOptions(), TextFields())) == []


def test_a_unit_round_trips_through_a_dict():
    for unit in plan_file(str(RESILIPARSE), "warc", 50_000):
        assert Unit.from_dict(json.loads(json.dumps(unit.to_dict()))) == unit


def parquet_bytes(texts: list[str]) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"text": texts}), sink)
    return sink.getvalue().to_pybytes()


def with_footer_zeroed(data: bytes) -> bytes:
    """Parquet bytes whose footer (the file's metadata, before its length and the closing magic) is zeros."""
    footer = int.from_bytes(data[-8:-4], "little")
    return data[: -8 - footer] + bytes(footer) + data[-8:]


@pytest.mark.parametrize(
    "content",
    [b"", json_lines(3), parquet_bytes(["a", "b", "c"])[:-20], b"PAR1" + bytes(100),
     with_footer_zeroed(parquet_bytes(["a", "b", "c"]))],
    ids=["empty", "json-lines", "cut-short", "magic-then-zeros", "footer-zeroed"],
)
def test_a_parquet_file_that_cannot_be_opened_is_one_unit_that_reads_as_one_not_parquet_row(tmp_path, content):
    path = tmp_path / "broken.parquet"
    path.write_bytes(content)
    units = plan_file(str(path), "parquet", 1_000)
    assert len(units) == 1
    rows = list(read_unit(units[0], ReadOptions(), TextFields()))
    assert [(row["error"], row["offset"], row["source"]) for row in rows] == [("not_parquet", 0, str(path))]
    assert rows[0]["error_detail"]  # pyarrow's own words


def test_a_broken_parquet_file_does_not_stop_the_files_planned_with_it(tmp_path):
    broken, good = tmp_path / "a-broken.parquet", tmp_path / "b-good.parquet"
    broken.write_bytes(json_lines(3))
    pq.write_table(pa.table({"text": ["one", "two"]}), good)
    rows = [row for path in (broken, good) for unit in plan_file(str(path), "parquet", 1_000)
            for row in read_unit(unit, ReadOptions(), TextFields())]
    assert [(row["error"], row["text"]) for row in rows] == [("not_parquet", None), (None, "one"), (None, "two")]
