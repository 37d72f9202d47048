"""Reading corpora that already hold text: JSONL, JSONL.gz and Parquet, whole or split into units.

A line or row becomes one row with lineage columns; a line that is not a JSON object, or has no string text, becomes
an error row at its byte offset and the rest of the file is read on.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.io.archive_reader import ReadOptions
from pipeline.io.lineage import doc_id
from pipeline.io.text_reader import TextFields, read_jsonl
from pipeline.io.units import plan_file, read_unit

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHAKESPEARE = DATA / "text" / "tinyshakespeare" / "input.txt"
LIMIT = ReadOptions().max_payload_bytes


def speeches(count: int, start: int = 0) -> list[str]:
    """Real text: the speeches of tinyshakespeare (blocks separated by a blank line)."""
    blocks = SHAKESPEARE.read_text(encoding="utf-8").split("\n\n")
    return blocks[start : start + count]


def jsonl_bytes(records: list) -> bytes:
    return b"".join(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n" for record in records)


def line_offsets(data: bytes) -> list[int]:
    """Byte offset of every line of a file."""
    offsets, position = [], 0
    for line in data.splitlines(keepends=True):
        offsets.append(position)
        position += len(line)
    return offsets


def read_path(path: Path, fields: TextFields = TextFields()) -> list[dict]:
    """Every row of a file, read as the units plan_file makes of it with one huge unit size."""
    rows = []
    for unit in plan_file(str(path), "jsonl" if "jsonl" in path.name else "parquet", 1 << 40):
        rows.extend(read_unit(unit, ReadOptions(), fields))
    return rows


def read_in_units(path: Path, fmt: str, unit_bytes: int, fields: TextFields = TextFields()) -> list[list[dict]]:
    return [list(read_unit(unit, ReadOptions(), fields)) for unit in plan_file(str(path), fmt, unit_bytes)]


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------------------ valid records


def test_valid_lines_keep_their_id_url_date_and_text(tmp_path):
    texts = speeches(3)
    records = [
        {"id": f"doc-{i}", "url": f"https://www.example.co.uk/play/{i}", "date": "2024-03-05T10:00:00Z", "text": t}
        for i, t in enumerate(texts)
    ]
    rows = read_path(write(tmp_path, "corpus.jsonl", jsonl_bytes(records)))
    assert [row["id"] for row in rows] == ["doc-0", "doc-1", "doc-2"]
    assert [row["text"] for row in rows] == texts
    assert [row["url"] for row in rows] == [r["url"] for r in records]
    assert {row["host"] for row in rows} == {"www.example.co.uk"}
    assert {row["domain"] for row in rows} == {"example.co.uk"}
    assert {row["date"] for row in rows} == {datetime(2024, 3, 5, 10, tzinfo=timezone.utc)}
    assert all(row["error"] is None and row["drop_reason"] is None and row["html"] is None for row in rows)


def test_rows_carry_their_byte_offset_source_and_payload_size(tmp_path):
    data = jsonl_bytes([{"text": t} for t in speeches(5)])
    path = write(tmp_path, "corpus.jsonl", data)
    rows = read_path(path)
    assert [row["offset"] for row in rows] == line_offsets(data)
    assert {row["source"] for row in rows} == {str(path)}
    assert [row["payload_bytes"] for row in rows] == [len(row["text"].encode("utf-8")) for row in rows]
    assert not any(row["truncated"] for row in rows)


def test_a_date_with_an_offset_is_converted_to_utc_and_an_unreadable_date_is_none(tmp_path):
    data = jsonl_bytes([{"text": "a", "date": "2024-03-05T10:00:00+02:00"}, {"text": "b", "date": "last tuesday"}])
    rows = read_path(write(tmp_path, "dates.jsonl", data))
    assert rows[0]["date"] == datetime(2024, 3, 5, 8, tzinfo=timezone.utc)
    assert rows[1]["date"] is None and rows[1]["error"] is None  # a bad date is not a reason to lose the text


def test_a_numeric_id_is_kept_as_a_string(tmp_path):
    rows = read_path(write(tmp_path, "ids.jsonl", jsonl_bytes([{"id": 7, "text": "seven"}])))
    assert rows[0]["id"] == "7"


def test_blank_lines_give_no_rows_and_do_not_shift_offsets(tmp_path):
    data = b'{"text": "a"}\n\n   \n{"text": "b"}\r\n{"text": "c"}'  # blank lines, CRLF, no final newline
    rows = read_path(write(tmp_path, "blank.jsonl", data))
    assert [(row["offset"], row["text"]) for row in rows] == [(0, "a"), (19, "b"), (34, "c")]


def test_utf8_text_is_read_exactly(tmp_path):
    texts = ["Größe und Maß", "Привет, мир", "日本語のテキスト", "emoji 🎭 mask"]
    rows = read_path(write(tmp_path, "utf8.jsonl", jsonl_bytes([{"text": t} for t in texts])))
    assert [row["text"] for row in rows] == texts


# ----------------------------------------------------------------------------------------------- generated ids


def test_a_missing_id_is_generated_from_the_file_name_and_line_offset(tmp_path):
    data = jsonl_bytes([{"text": t} for t in speeches(4)])
    rows = read_path(write(tmp_path, "noid.jsonl", data))
    assert [row["id"] for row in rows] == [doc_id("noid.jsonl", offset) for offset in line_offsets(data)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", row["id"]) for row in rows)
    assert len({row["id"] for row in rows}) == 4


def test_generated_ids_are_stable_across_reads_and_directories(tmp_path):
    data = jsonl_bytes([{"text": t} for t in speeches(4)])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = [row["id"] for row in read_path(write(tmp_path / "a", "noid.jsonl", data))]
    again = [row["id"] for row in read_path(tmp_path / "a" / "noid.jsonl")]
    elsewhere = [row["id"] for row in read_path(write(tmp_path / "b", "noid.jsonl", data))]
    assert first == again == elsewhere


def test_an_id_field_of_none_always_generates_ids(tmp_path):
    data = jsonl_bytes([{"id": "given", "text": "x"}])
    rows = read_path(write(tmp_path, "c.jsonl", data), TextFields(id=None))
    assert rows[0]["id"] == doc_id("c.jsonl", 0)


# -------------------------------------------------------------------------------------------------- bad lines

BAD_LINES = [
    (b'{"text": "unterminated\n', "invalid_json"),
    (b"[1, 2, 3]\n", "invalid_json"),
    (b'"just a string"\n', "invalid_json"),
    (b"42\n", "invalid_json"),
    (b'{"id": "x", "content": "the text under another name"}\n', "missing_text"),
    (b'{"id": "y", "text": 12345}\n', "missing_text"),
    (b'{"id": "z", "text": null}\n', "missing_text"),
    (b'{"id": "w", "text": ["a", "list"]}\n', "missing_text"),
]


@pytest.mark.parametrize("line,error", BAD_LINES, ids=[line.decode().strip()[:24] for line, _ in BAD_LINES])
def test_a_bad_line_is_one_error_row_at_its_offset_and_the_lines_around_it_are_read(tmp_path, line, error):
    before, after = jsonl_bytes([{"text": t} for t in speeches(3)]), jsonl_bytes([{"text": t} for t in speeches(2, 3)])
    rows = read_path(write(tmp_path, "bad.jsonl", before + line + after))
    failed = [row for row in rows if row["error"]]
    assert [(row["error"], row["offset"]) for row in failed] == [(error, len(before))]
    assert failed[0]["text"] is None and failed[0]["error_detail"]
    assert failed[0]["id"] == doc_id("bad.jsonl", len(before))
    assert [row["text"] for row in rows if not row["error"]] == speeches(5)


def test_every_bad_line_in_a_corpus_is_counted_where_it_is(tmp_path):
    good = [jsonl_bytes([{"id": f"g{i}", "text": t}]) for i, t in enumerate(speeches(len(BAD_LINES) + 1))]
    pieces = [good[0]]
    for (line, _), next_good in zip(BAD_LINES, good[1:]):
        pieces += [line, next_good]
    data = b"".join(pieces)
    offsets = line_offsets(data)
    rows = read_path(write(tmp_path, "mixed.jsonl", data))
    assert [(row["offset"], row["error"]) for row in rows if row["error"]] == [
        (offsets[1 + 2 * k], error) for k, (_, error) in enumerate(BAD_LINES)
    ]
    assert [row["id"] for row in rows if not row["error"]] == [f"g{i}" for i in range(len(good))]


# ---------------------------------------------------------------------------------------------------- JSONL.gz


def test_a_gzip_jsonl_reads_like_the_plain_file_with_uncompressed_offsets(tmp_path):
    data = jsonl_bytes([{"text": t} for t in speeches(50)])
    plain = read_path(write(tmp_path, "corpus.jsonl", data))
    packed = read_path(write(tmp_path, "corpus.jsonl.gz", gzip.compress(data)))
    assert [row["text"] for row in packed] == [row["text"] for row in plain]
    assert [row["offset"] for row in packed] == [row["offset"] for row in plain]


def test_a_truncated_gzip_jsonl_keeps_the_lines_before_the_damage_and_reports_one_damaged_gzip(tmp_path):
    data = jsonl_bytes([{"id": f"s{i}", "text": t} for i, t in enumerate(speeches(3000))])
    packed = gzip.compress(data)
    cut = packed[: len(packed) // 2]
    readable = zlib.decompressobj(31).decompress(cut)  # what survives the cut
    complete_lines = readable.count(b"\n")

    rows = read_path(write(tmp_path, "cut.jsonl.gz", cut))

    failed = [row for row in rows if row["error"]]
    assert [row["error"] for row in failed] == ["damaged_gzip"]
    assert failed[0] is rows[-1]
    kept = [row["id"] for row in rows if not row["error"]]
    assert kept == [f"s{i}" for i in range(complete_lines)]
    assert complete_lines > 1000
    assert failed[0]["offset"] == line_offsets(data)[complete_lines]  # at the first line that did not survive


def corrupted_so_that_zlib_fails(packed: bytes) -> bytes:
    """The first 200-byte zeroing of the compressed data (from 1/10 of the way on) that makes the deflate stream
    itself invalid (zlib.error such as 'invalid distance too far back'), not just the CRC at the end wrong."""
    for start in range(len(packed) // 10, len(packed) - 300, 97):
        damaged = packed[:start] + bytes(200) + packed[start + 200:]
        try:
            gzip.decompress(damaged)
        except zlib.error:
            return damaged
        except OSError:  # gzip.BadGzipFile: a CRC or length mismatch only
            continue
    raise AssertionError("no corruption found that zlib rejects")


def test_corrupt_data_inside_a_gzip_jsonl_is_a_damaged_gzip_error_not_a_crash(tmp_path):
    data = jsonl_bytes([{"id": f"s{i}", "text": t} for i, t in enumerate(speeches(3000))])
    path = write(tmp_path, "corrupt.jsonl.gz", corrupted_so_that_zlib_fails(gzip.compress(data)))
    rows = read_path(path)
    assert [row["error"] for row in rows if row["error"] == "damaged_gzip"] == ["damaged_gzip"]
    assert rows[0]["id"] == "s0"


# ------------------------------------------------------------------------------------------------- byte ranges


@pytest.fixture
def mixed_corpus(tmp_path) -> tuple[Path, bytes]:
    """Real lines of varied length, with a bad line and blank lines in between."""
    records = [{"id": f"s{i}", "text": t} for i, t in enumerate(speeches(40))]
    data = jsonl_bytes(records[:10]) + b"{not json\n\n" + jsonl_bytes(records[10:25]) + b"\n\n" + jsonl_bytes(records[25:])
    return write(tmp_path, "mixed.jsonl", data), data


@pytest.mark.parametrize("unit_bytes", [1, 7, 64, 333, 1000, 4096, 1 << 20])
def test_split_jsonl_yields_each_line_exactly_once(mixed_corpus, unit_bytes):
    path, data = mixed_corpus
    whole = read_path(path)
    per_unit = read_in_units(path, "jsonl", unit_bytes)
    assert len(per_unit) == -(-len(data) // unit_bytes)
    assert [(row["id"], row["offset"], row["error"]) for rows in per_unit for row in rows] == [
        (row["id"], row["offset"], row["error"]) for row in whole
    ]
    assert len(whole) == 41


def test_a_line_belongs_to_the_unit_holding_its_first_byte_wherever_the_boundary_falls(mixed_corpus):
    path, data = mixed_corpus
    fields = TextFields()
    whole = [(row["offset"], row["id"]) for row in read_path(path)]
    for boundary in range(1, len(data), 13):
        with open(path, "rb") as fh:
            first = [(row["offset"], row["id"]) for row in read_jsonl(fh, str(path), False, 0, boundary, fields, LIMIT)]
        with open(path, "rb") as fh:
            second = [(row["offset"], row["id"])
                      for row in read_jsonl(fh, str(path), False, boundary, len(data), fields, LIMIT)]
        assert first + second == whole, boundary
        assert all(offset < boundary for offset, _ in first) and all(offset >= boundary for offset, _ in second)


def test_a_boundary_exactly_at_a_line_start_gives_that_line_to_the_later_unit(mixed_corpus):
    path, data = mixed_corpus
    start = line_offsets(data)[5]
    with open(path, "rb") as fh:
        rows = list(read_jsonl(fh, str(path), False, start, None, TextFields(), LIMIT))
    assert rows[0]["offset"] == start and rows[0]["id"] == "s5"


# ------------------------------------------------------------------------------------------------------ Parquet


def write_parquet(path: Path, table: pa.Table, row_group_size: int) -> Path:
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


@pytest.fixture
def parquet_corpus(tmp_path) -> tuple[Path, list[str]]:
    texts = speeches(500)
    table = pa.table({
        "id": [f"p{i}" for i in range(len(texts))],
        "url": [f"https://news.example.com/{i}" for i in range(len(texts))],
        "date": [datetime(2023, 1, 1 + i % 28, tzinfo=timezone.utc) for i in range(len(texts))],
        "text": texts,
    })
    return write_parquet(tmp_path / "corpus.parquet", table, row_group_size=37), texts


def test_parquet_rows_keep_their_fields_and_offsets_are_row_indexes(parquet_corpus):
    path, texts = parquet_corpus
    rows = read_path(path)
    assert [row["text"] for row in rows] == texts
    assert [row["id"] for row in rows] == [f"p{i}" for i in range(len(texts))]
    assert [row["offset"] for row in rows] == list(range(len(texts)))
    assert rows[3]["domain"] == "example.com"
    assert rows[3]["date"] == datetime(2023, 1, 4, tzinfo=timezone.utc)


@pytest.mark.parametrize("unit_bytes", [1, 10_000, 50_000])
def test_parquet_split_into_row_group_units_reads_every_row_exactly_once(parquet_corpus, unit_bytes):
    path, texts = parquet_corpus
    units = plan_file(str(path), "parquet", unit_bytes)
    assert len(units) > 1 and pq.ParquetFile(path).num_row_groups == 14
    per_unit = [list(read_unit(unit, ReadOptions(), TextFields())) for unit in units]
    offsets = [row["offset"] for rows in per_unit for row in rows]
    assert offsets == list(range(len(texts)))
    assert [row["text"] for rows in per_unit for row in rows] == texts


def test_parquet_row_group_ranges_cover_all_groups_without_overlap(parquet_corpus):
    path, _ = parquet_corpus
    units = plan_file(str(path), "parquet", 20_000)
    assert units[0].start == 0 and units[-1].end == 14
    assert all(a.end == b.start for a, b in zip(units, units[1:]))


def test_parquet_without_an_id_column_gets_ids_from_the_row_index(tmp_path):
    path = write_parquet(tmp_path / "noid.parquet", pa.table({"text": speeches(20)}), row_group_size=6)
    rows = read_path(path)
    assert [row["id"] for row in rows] == [doc_id("noid.parquet", index) for index in range(20)]


def test_a_parquet_row_without_text_is_a_missing_text_error_at_its_index(tmp_path):
    texts: list[str | None] = speeches(10)
    texts[4] = None
    path = write_parquet(tmp_path / "holes.parquet", pa.table({"text": texts}), row_group_size=3)
    rows = read_path(path)
    assert [(row["offset"], row["error"]) for row in rows if row["error"]] == [(4, "missing_text")]
    assert len(rows) == 10


# ------------------------------------------------------------------------------------------- custom field names


def test_custom_field_names_are_read_from_jsonl(tmp_path):
    texts = speeches(3)
    records = [{"doc_id": f"c{i}", "link": f"https://blog.example.org/{i}", "crawled": "2022-06-01T00:00:00Z",
                "content": t, "text": "not this one"} for i, t in enumerate(texts)]
    fields = TextFields(text="content", id="doc_id", url="link", date="crawled")
    rows = read_path(write(tmp_path, "custom.jsonl", jsonl_bytes(records)), fields)
    assert [row["text"] for row in rows] == texts
    assert [row["id"] for row in rows] == ["c0", "c1", "c2"]
    assert {row["domain"] for row in rows} == {"example.org"}
    assert {row["date"] for row in rows} == {datetime(2022, 6, 1, tzinfo=timezone.utc)}


def test_custom_field_names_are_read_from_parquet(tmp_path):
    texts = speeches(8)
    table = pa.table({"doc_id": [f"c{i}" for i in range(8)], "content": texts, "text": ["decoy"] * 8})
    path = write_parquet(tmp_path / "custom.parquet", table, row_group_size=3)
    rows = read_path(path, TextFields(text="content", id="doc_id", url=None, date=None))
    assert [row["text"] for row in rows] == texts
    assert [row["id"] for row in rows] == [f"c{i}" for i in range(8)]
    assert all(row["url"] is None and row["date"] is None for row in rows)


def test_with_custom_names_a_line_lacking_the_custom_text_field_is_missing_text(tmp_path):
    data = jsonl_bytes([{"text": "only the default field"}])
    rows = read_path(write(tmp_path, "c.jsonl", data), TextFields(text="content"))
    assert [row["error"] for row in rows] == ["missing_text"]
    assert "'content'" in rows[0]["error_detail"]
