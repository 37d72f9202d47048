"""Hostile input, bounded: gzip bombs, endless lines and oversized records cost time in proportion to the file and
memory in proportion to the per-record limit, and each of them ends as a row with a reason.

The hostile files are generated under tmp_path around real records from ../shared/data. Work is measured by
counting (bytes read from the file, compressed bytes inflated, peak memory); where a test times reading, it compares
two sizes within the test, never against a number of seconds.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import tracemalloc
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.io.archive_reader import ReadOptions, probe_layout, read_archive
from pipeline.io.gzip_members import inflate_member
from pipeline.io.text_reader import TextFields
from pipeline.io.units import plan_file, read_unit
from conftest import best_seconds

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WARC = DATA / "warc"
RESILIPARSE = WARC / "cc_resiliparse" / "CC-MAIN-2020-34-excerpt.warc.gz"
NPM_WARC = WARC / "cc_npm_warc" / "CC-MAIN-20140820021334-00006-ip-10-180-136-8.ec2.internal.warc"
NPM_WET = NPM_WARC.with_name(NPM_WARC.name + ".wet")
SHAKESPEARE = DATA / "text" / "tinyshakespeare" / "input.txt"
MB = 1 << 20


# ---------------------------------------------------------------------------------------------------------- helpers


class CountedFile(io.FileIO):
    """A real file that counts the bytes read from it: the measure of how much work a reader did."""

    bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data

    def readinto(self, buffer) -> int | None:
        count = super().readinto(buffer)
        self.bytes_read += count or 0
        return count


def read_counted(path: Path, options: ReadOptions = ReadOptions()) -> tuple[list[dict], int]:
    """Every row of an archive, and the bytes read from disk to get them (the layout probe included)."""
    raw = CountedFile(path)
    with io.BufferedReader(raw) as fh:
        layout = probe_layout(fh)
        rows = list(read_archive(fh, str(path), layout, 0, os.path.getsize(path), options))
    return rows, raw.bytes_read


def read_file(path: Path, options: ReadOptions = ReadOptions()) -> list[dict]:
    return read_counted(path, options)[0]


def pieces_at_offsets(path: Path) -> list[bytes]:
    """The bytes of each record of a plain file, or of each member of a record-per-member file (real data)."""
    data = path.read_bytes()
    offsets = [row["offset"] for row in read_file(path)] + [len(data)]
    return [data[start:end] for start, end in zip(offsets, offsets[1:])]


def zero_bomb(megabytes: int, prefix: bytes = b"") -> bytes:
    """One gzip member holding `prefix` and then `megabytes` MiB of zeros, about 1,000 to 1 compressed.

    Deflate forgets its history at a full flush, so every MiB of zeros after the first compresses to the same
    bytes: the bomb is assembled by repetition instead of compressing a gigabyte.
    """
    zeros = bytes(MB)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = deflate.compress(prefix + zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    repeated = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    last = deflate.flush()
    crc = zlib.crc32(prefix)
    for _ in range(megabytes):
        crc = zlib.crc32(zeros, crc)
    size = len(prefix) + megabytes * MB
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + first + repeated * (megabytes - 1) + last + struct.pack("<II", crc, size & 0xFFFFFFFF)


def response_header(url: str, block_bytes: int) -> bytes:
    """The WARC header of a response record whose block (HTTP headers and payload) is `block_bytes` long."""
    return (
        b"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: " + url.encode() + b"\r\n"
        b"WARC-Date: 2024-01-01T00:00:00Z\r\nWARC-Record-ID: <urn:uuid:00000000-0000-4000-8000-000000000001>\r\n"
        b"Content-Type: application/http; msgtype=response\r\nContent-Length: " + str(block_bytes).encode() +
        b"\r\n\r\n"
    )


def outcome(row: dict) -> str:
    return f"error:{row['error']}" if row["error"] else row["drop_reason"] or "kept"


# ------------------------------------------------------------------------------------------------------ gzip bombs


def test_a_bomb_member_is_inflated_only_a_little_past_the_cap(tmp_path):
    bomb = zero_bomb(1024)  # 1 GiB of zeros in about 1 MB
    path = tmp_path / "bomb.warc.gz"
    path.write_bytes(bomb)
    with open(path, "rb") as fh:
        member = inflate_member(fh, 0, cap=MB)
    assert member.capped and not member.whole and len(member.content) == MB
    assert member.end < len(bomb) // 100  # compressed input consumed: about the first MiBs, not all 1,024 of them


def test_a_member_that_inflates_past_one_step_ends_where_it_ends_and_the_next_member_is_found(tmp_path):
    """A member of a few KB that inflates to more than one output step (a page of repeated markup), followed in
    the same read by other members: its end is exact, so the members after it are read."""
    records = [(b"<div>" * 400_000), b"<p>second</p>", b"<p>third</p>"]
    members = [gzip.compress(record, mtime=0) for record in records]
    path = tmp_path / "members.gz"
    path.write_bytes(b"".join(members))
    offset = 0
    with open(path, "rb") as fh:
        for record, member in zip(records, members):
            inflated = inflate_member(fh, offset, cap=16 * MB)
            assert (inflated.offset, inflated.end, inflated.content) == (offset, offset + len(member), record)
            offset = inflated.end


def test_a_crawled_warc_gz_over_the_cap_is_one_record_not_the_records_stored_inside_it(tmp_path):
    """Deflate stores a .warc.gz payload verbatim, inner gzip members included: an incompressible member over the cap
    is still inflated to its end, so that the next member is known, not guessed by scanning through the payload."""
    members = pieces_at_offsets(RESILIPARSE)
    inner = RESILIPARSE.read_bytes()  # 50 real gzip members, 136 KB
    http = b"HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\n\r\n"
    outer = gzip.compress(response_header("https://data.example.org/crawl.warc.gz", len(http) + len(inner)) + http + inner)
    path = tmp_path / RESILIPARSE.name
    path.write_bytes(b"".join(members[:2]) + outer + b"".join(members[2:]))

    rows = read_file(path, ReadOptions(max_payload_bytes=1))  # every payload is over the cap

    assert len(rows) == len(members) + 1
    assert [row["url"] for row in rows if row["offset"] == len(members[0]) + len(members[1])] == [
        "https://data.example.org/crawl.warc.gz"
    ]


def test_a_bomb_member_among_real_records_is_one_too_large_row_and_the_records_after_it_are_read(tmp_path):
    members = pieces_at_offsets(RESILIPARSE)
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n"
    bomb = zero_bomb(1024, response_header("http://bomb.example.org/", len(http) + 1024 * MB) + http)
    path = tmp_path / RESILIPARSE.name
    path.write_bytes(b"".join(members[:2]) + bomb + b"".join(members[2:]))
    original = read_file(RESILIPARSE)
    bomb_at = len(members[0]) + len(members[1])

    rows, bytes_read = read_counted(path, ReadOptions(max_payload_bytes=MB))

    with open(path, "rb") as fh:
        assert probe_layout(fh) == "gzip_members"
    [bomb_row] = [row for row in rows if row["offset"] == bomb_at]
    assert (bomb_row["url"], bomb_row["drop_reason"]) == ("http://bomb.example.org/", "too_large")
    others = [row for row in rows if row is not bomb_row]
    assert [row["record_id"] for row in others] == [row["record_id"] for row in original]
    assert [outcome(row) for row in others] == [outcome(row) for row in original]
    assert bytes_read < 3 * os.path.getsize(path)


def test_a_file_with_a_bomb_member_read_in_byte_ranges_gives_each_record_once(tmp_path):
    """The member after a bomb is found by scanning, in whichever range it starts."""
    members = pieces_at_offsets(RESILIPARSE)
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n"
    bomb = zero_bomb(256, response_header("http://bomb.example.org/", len(http) + 256 * MB) + http)
    path = tmp_path / RESILIPARSE.name
    path.write_bytes(b"".join(members[:2]) + bomb + b"".join(members[2:]))
    options = ReadOptions(max_payload_bytes=MB)
    whole = [(row["offset"], outcome(row)) for row in read_file(path, options)]
    for unit_bytes in (10_000, 100_000):
        units = plan_file(str(path), "warc", unit_bytes)
        assert [(row["offset"], outcome(row)) for unit in units for row in read_unit(unit, options, TextFields())] == whole


def test_a_gzip_bomb_of_zeros_is_one_not_a_warc_row_read_from_a_small_part_of_the_file(tmp_path):
    path = tmp_path / "zeros.warc.gz"
    path.write_bytes(zero_bomb(1024))
    rows, bytes_read = read_counted(path)
    assert [(row["error"], row["offset"], row["source"]) for row in rows] == [("not_a_warc", 0, str(path))]
    assert bytes_read < os.path.getsize(path) // 10


# ------------------------------------------------------------------------------------------------- endless lines


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip_stream"])
def test_time_to_read_past_a_run_of_zeros_grows_linearly_with_its_length(tmp_path, compress):
    """Zeros hold no line break: a reader that reads lines without a bound copies the growing line again and again
    (quadratic); a bounded one reads each byte a fixed number of times."""
    records = pieces_at_offsets(NPM_WARC)
    before, after = b"".join(records[:6]), b"".join(records[6:])
    path = tmp_path / ("zeros.warc.gz" if compress else "zeros.warc")

    def write(megabytes: int) -> None:
        data = before + bytes(megabytes * MB) + b"\r\n\r\n" + after
        path.write_bytes(gzip.compress(data, compresslevel=1) if compress else data)

    write(32)
    small = best_seconds(lambda: read_file(path))
    write(64)
    large = best_seconds(lambda: read_file(path))
    assert large / small < 3  # twice the zeros: about twice the time (a quadratic reader takes four times)

    rows = read_file(path)
    assert [(row["offset"], row["error"]) for row in rows if row["error"]] == [(len(before), "not_a_record")]
    assert [row["record_id"] for row in rows if not row["error"]] == [r["record_id"] for r in read_file(NPM_WARC)]


def test_resynchronising_a_damaged_gzip_stream_never_rereads_the_file(tmp_path):
    """After damage a whole-file gzip is scanned forwards for the next record, not decompressed again from byte 0."""
    records = pieces_at_offsets(NPM_WARC)
    garbage = b"this line is not a WARC header\r\n\r\n"
    damaged = b"".join(garbage + record if index else record for index, record in enumerate(records))
    path = tmp_path / "damaged.warc.gz"
    path.write_bytes(gzip.compress(damaged))

    rows, bytes_read = read_counted(path)

    probe_and_one_read = 2 * os.path.getsize(path)  # the probe inflates the one member once, the reader once more
    assert bytes_read < probe_and_one_read + 64 * 1024
    assert [row["error"] for row in rows if row["error"]] == ["not_a_record"] * (len(records) - 1)
    assert len([row for row in rows if not row["error"]]) == len(records)


def test_a_warc_header_block_over_the_limit_is_one_failed_record_and_the_next_record_is_read(tmp_path):
    records = pieces_at_offsets(NPM_WARC)
    huge_header = response_header("http://example.com/" + "a" * (4 * MB), 0) + b"\r\n\r\n"
    data = records[0] + huge_header + b"".join(records[1:])
    path = tmp_path / "huge-header.warc"
    path.write_bytes(data)

    rows = read_file(path)

    assert [(row["offset"], row["error"]) for row in rows if row["error"]] == [(len(records[0]), "oversized_header")]
    assert [row["record_id"] for row in rows if not row["error"]] == [r["record_id"] for r in read_file(NPM_WARC)]


# ------------------------------------------------------------------------------------------ per-record size limit


def speeches(count: int) -> list[str]:
    return SHAKESPEARE.read_text(encoding="utf-8").split("\n\n")[:count]


def jsonl(records: list[dict]) -> bytes:
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)


def rows_and_peak_memory(path: Path, fmt: str, options: ReadOptions) -> tuple[list[dict], int]:
    """Every row of a file read unit by unit, and the peak of Python memory allocated while reading it."""
    tracemalloc.start()
    try:
        rows = [row for unit in plan_file(str(path), fmt, 1 << 40) for row in read_unit(unit, options, TextFields())]
        return rows, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("compress", [False, True], ids=["jsonl", "jsonl.gz"])
def test_a_jsonl_line_over_the_limit_is_too_large_and_never_held_in_memory(tmp_path, compress):
    before, after = jsonl([{"id": "a", "text": speeches(1)[0]}]), jsonl([{"id": "b", "text": speeches(2)[1]}])
    huge_line = b'{"id": "huge", "text": "' + b"x" * (64 * MB) + b'"}\n'
    data = before + huge_line + after
    path = tmp_path / ("corpus.jsonl.gz" if compress else "corpus.jsonl")
    path.write_bytes(gzip.compress(data, compresslevel=1) if compress else data)
    del data

    rows, peak = rows_and_peak_memory(path, "jsonl", ReadOptions(max_payload_bytes=MB))

    assert [(row["offset"], outcome(row)) for row in rows] == [
        (0, "kept"), (len(before), "too_large"), (len(before) + len(huge_line), "kept"),
    ]
    assert rows[1]["payload_bytes"] == len(huge_line) and rows[1]["text"] is None
    assert peak < 8 * MB  # the line is 64 MB


def test_a_parquet_text_cell_over_the_limit_is_too_large_and_keeps_its_lineage(tmp_path):
    texts = speeches(6)
    texts[2] = "x" * (2 * MB)
    path = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(6)], "text": texts}), path, row_group_size=4)

    rows = [row for unit in plan_file(str(path), "parquet", 1 << 40)
            for row in read_unit(unit, ReadOptions(max_payload_bytes=MB), TextFields())]

    assert [outcome(row) for row in rows] == ["kept", "kept", "too_large", "kept", "kept", "kept"]
    assert (rows[2]["id"], rows[2]["offset"], rows[2]["payload_bytes"], rows[2]["text"]) == ("p2", 2, 2 * MB, None)
    assert [row["text"] for row in rows if row["text"] is not None] == texts[:2] + texts[3:]


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip_members"])
def test_a_wet_record_over_the_limit_is_too_large_and_never_held_in_memory(tmp_path, compress):
    records = pieces_at_offsets(NPM_WET)
    text = b"word " * (64 * MB // 5)
    huge = (b"WARC/1.0\r\nWARC-Type: conversion\r\nWARC-Target-URI: http://example.com/huge\r\n"
            b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(text) + text + b"\r\n\r\n")
    pieces = records[:2] + [huge] + records[2:]
    path = tmp_path / ("huge.warc.wet.gz" if compress else "huge.warc.wet")
    path.write_bytes(b"".join(gzip.compress(piece, compresslevel=1) if compress else piece for piece in pieces))
    del text, huge, pieces

    rows, peak = rows_and_peak_memory(path, "warc", ReadOptions(max_payload_bytes=MB))

    assert [outcome(row) for row in rows] == ["record_type:warcinfo", "kept", "too_large", "kept", "kept"]
    assert rows[2]["url"] == "http://example.com/huge" and rows[2]["text"] is None
    assert peak < 8 * MB  # the record is 64 MB


def test_damage_in_a_gzip_stream_is_reported_at_the_damaged_members_offset(tmp_path):
    """Members that each inflate past one output step, then a damaged one: the reader's count of compressed bytes
    stays exact, so the damage is reported where that member starts."""
    from pipeline.io.gzip_members import ConcatenatedGzipReader

    good = [gzip.compress(b"<div>" * 400_000, mtime=0), gzip.compress(b"<p>" * 500_000, mtime=0)]
    damaged = bytearray(gzip.compress(os.urandom(5_000), mtime=0))
    damaged[40:60] = bytes(20)
    path = tmp_path / "stream.gz"
    path.write_bytes(b"".join(good) + bytes(damaged))
    with open(path, "rb") as fh:
        reader = ConcatenatedGzipReader(fh)
        assert reader.read().startswith(b"<div>")
    assert reader.damage is not None and reader.damage.offset == sum(map(len, good))
