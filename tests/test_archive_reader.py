"""read_archive / probe_layout on real WARC, ARC and WET files, and on damaged copies of them.

Every record of an archive becomes exactly one row: an HTML payload to extract, a WET text, a skip reason, or an error
at the offset where the data could not be read. Expected numbers come from the files' SOURCE.txt descriptions.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import zlib
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipeline.io.archive_reader import MemberSpan, ReadOptions, probe_layout, read_archive
from pipeline.io.text_reader import TextFields
from pipeline.io.units import plan_file, read_unit
from pipeline.plan import boundary_fixes

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WARC = DATA / "warc"
ROBUSTNESS = WARC / "robustness_warcio"
HERITRIX = WARC / "aut_heritrix" / "IAH-archive.org-2008.warc.gz"
RESILIPARSE = WARC / "cc_resiliparse" / "CC-MAIN-2020-34-excerpt.warc.gz"
DOLMA = WARC / "dolma_wget" / "sample-0000.warc.gz"
NPM_WARC = WARC / "cc_npm_warc" / "CC-MAIN-20140820021334-00006-ip-10-180-136-8.ec2.internal.warc"
NPM_WET = NPM_WARC.with_name(NPM_WARC.name + ".wet")
WHIRLWIND_WARC = WARC / "cc_whirlwind" / "whirlwind.warc.gz"
WHIRLWIND_WET = WARC / "cc_whirlwind" / "whirlwind.warc.wet.gz"
DERIVED = WARC / "derived_real_html" / "derived-real-html-00000.warc.gz"
DERIVED_INDEX = WARC / "derived_real_html" / "index.jsonl"

ROBUSTNESS_FILES = sorted(p for p in ROBUSTNESS.iterdir() if p.name != "SOURCE.txt")
REAL_ARCHIVES = ROBUSTNESS_FILES + [HERITRIX]


# ---------------------------------------------------------------------------------------------------------- helpers


def read_file(path: Path, options: ReadOptions = ReadOptions()) -> list[dict]:
    """Every row of a file read as one range, the way a single unit covering the whole file reads it."""
    with open(path, "rb") as fh:
        layout = probe_layout(fh)
        return list(read_archive(fh, str(path), layout, 0, os.path.getsize(path), options))


def layout_of(path: Path) -> str:
    with open(path, "rb") as fh:
        return probe_layout(fh)


def outcome(row: dict) -> str:
    """What happened to a row, as one countable word."""
    if row["error"]:
        return f"error:{row['error']}"
    if row["drop_reason"]:
        return row["drop_reason"]
    if row["html"] is not None:
        return "html"
    if row["text"] is not None:
        return "text"
    return "nothing"


def outcomes(rows: list[dict]) -> Counter:
    return Counter(outcome(row) for row in rows)


def errors(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["error"]]


def records(rows: list[dict]) -> list[dict]:
    return [row for row in rows if not row["error"]]


def fingerprint(row: dict) -> tuple:
    """Everything a reader decides about a row, with the payload reduced to its hash."""
    html = row["html"]
    return (
        row["id"],
        row["offset"],
        row["record_id"],
        row["url"],
        row["drop_reason"],
        row["error"],
        row["truncated"],
        hashlib.sha1(html).hexdigest() if html is not None else None,
        row["text"],
    )


def warcio_record_count(data: bytes) -> int:
    """How many records warcio itself finds in decompressed archive bytes (the independent oracle)."""
    count = 0
    for _ in ArchiveIterator(io.BytesIO(data)):
        count += 1
    return count


def copy_to(tmp_path: Path, source: Path, data: bytes | None = None) -> Path:
    """A copy (or damaged copy) under tmp_path with the original file name, so document ids stay comparable."""
    target = tmp_path / source.name
    target.write_bytes(source.read_bytes() if data is None else data)
    return target


# ------------------------------------------------------------------------------------------- every real file reads

EXPECTED_OUTCOMES = {
    "bad.arc": {"record_type:arc_header": 1, "not_http": 2, "http_status:invalid": 1},
    "example-bad-non-chunked.warc.gz": {
        "record_type:warcinfo": 2, "html": 1, "record_type:request": 2, "record_type:revisit": 1,
    },
    "example-bad.warc.gz.bad": {
        "record_type:warcinfo": 1, "html": 1, "record_type:request": 2, "record_type:revisit": 1,
        "http_status:302": 1,
    },
    "example-digest.warc": {"record_type:request": 4},
    "example-iana.org-chunked.warc": {"record_type:warcinfo": 1, "html": 1, "record_type:request": 1},
    "example-resource.warc.gz": {"record_type:warcinfo": 2, "record_type:resource": 1},
    "example-space-in-target-uri.warc.gz": {"record_type:warcinfo": 1, "record_type:resource": 1},
    "example-space-in-url.arc": {"record_type:arc_header": 1, "html": 1},
    # its response's Content-Length is 2 bytes short (warcio: "Record not followed by newline")
    "example-trunc.warc": {"record_type:warcinfo": 2, "error:bad_content_length": 1, "record_type:request": 1},
    "example-wget-bad-target-uri.warc.gz": {
        "record_type:warcinfo": 1, "record_type:request": 1, "html": 1, "record_type:metadata": 1,
        "record_type:resource": 2,
    },
    "example-wrong-chunks.warc.gz": {"html": 1, "record_type:request": 1},
    "example.arc": {"record_type:arc_header": 1, "html": 1},
    "example.arc.gz": {"record_type:arc_header": 1, "html": 1},
    "example.warc": {"record_type:warcinfo": 2, "html": 1, "record_type:request": 2, "record_type:revisit": 1},
    "example.warc.gz": {"record_type:warcinfo": 2, "html": 1, "record_type:request": 2, "record_type:revisit": 1},
    "post-test.warc.gz": {"not_html": 3, "record_type:request": 3},
    # SOURCE.txt: 1 warcinfo, 299 response, 261 request, 261 metadata; 140 responses are text/html, of which
    # 40 are 404s, 5 are 302s and 1 is a 301, leaving 94 HTML pages to extract. The 38 dns: responses have no HTTP.
    "IAH-archive.org-2008.warc.gz": {
        "record_type:warcinfo": 1, "record_type:request": 261, "record_type:metadata": 261,
        "html": 94, "not_html": 120, "not_http": 38,
        "http_status:404": 40, "http_status:302": 5, "http_status:301": 2,
    },
}


def test_the_expected_outcomes_cover_every_real_file():
    assert sorted(EXPECTED_OUTCOMES) == sorted(p.name for p in REAL_ARCHIVES)


@pytest.mark.parametrize("path", REAL_ARCHIVES, ids=lambda p: p.name)
def test_every_real_archive_reads_to_exactly_the_expected_rows(path):
    rows = read_file(path)
    assert outcomes(rows) == Counter(EXPECTED_OUTCOMES[path.name])


@pytest.mark.parametrize("path", REAL_ARCHIVES, ids=lambda p: p.name)
def test_offsets_strictly_increase_within_a_file(path):
    offsets = [row["offset"] for row in read_file(path)]
    assert offsets == sorted(set(offsets))


@pytest.mark.parametrize(
    "path",
    [p for p in REAL_ARCHIVES if p.name not in ("example-bad-non-chunked.warc.gz", "example-bad.warc.gz.bad",
                                                "example-wrong-chunks.warc.gz")],
    ids=lambda p: p.name,
)
def test_every_record_warcio_finds_is_a_row(path):
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    assert len(read_file(path)) == warcio_record_count(data)  # a damaged record is an error row


def test_the_heritrix_0_17_responses_add_up_to_the_299_of_its_source_description():
    responses = [row for row in read_file(HERITRIX) if not (row["drop_reason"] or "").startswith("record_type:")]
    assert len(responses) == 299


def test_old_warc_0_17_records_keep_their_record_id_and_date():
    rows = read_file(HERITRIX)
    assert all(re.fullmatch(r"<urn:uuid:[0-9a-f-]{36}>", row["record_id"]) for row in rows)
    assert rows[0]["date"] == datetime(2008, 4, 30, 20, 48, 25, tzinfo=timezone.utc)


# ------------------------------------------------------------------------------------------------------- layouts


@pytest.mark.parametrize(
    "name",
    ["example.warc.gz", "example.arc.gz", "example-resource.warc.gz", "post-test.warc.gz",
     "example-wget-bad-target-uri.warc.gz"],
)
def test_record_per_member_gzip_files_have_the_gzip_members_layout(name):
    assert layout_of(ROBUSTNESS / name) == "gzip_members"


@pytest.mark.parametrize("path", [HERITRIX, RESILIPARSE, DOLMA, WHIRLWIND_WET, DERIVED], ids=lambda p: p.name)
def test_real_crawler_output_has_the_gzip_members_layout(path):
    assert layout_of(path) == "gzip_members"


@pytest.mark.parametrize("name", ["example-bad-non-chunked.warc.gz", "example-wrong-chunks.warc.gz"])
def test_gzip_whose_members_do_not_align_with_records_is_read_as_one_stream(name):
    assert layout_of(ROBUSTNESS / name) == "gzip_stream"


def test_a_whole_file_gzip_is_read_as_one_stream(tmp_path):
    whole = tmp_path / "whole.warc.gz"
    whole.write_bytes(gzip.compress(NPM_WARC.read_bytes()))
    assert layout_of(whole) == "gzip_stream"
    assert [r["record_id"] for r in read_file(whole)] == [r["record_id"] for r in read_file(NPM_WARC)]


@pytest.mark.parametrize("path", [ROBUSTNESS / "example.warc", ROBUSTNESS / "example.arc", ROBUSTNESS / "bad.arc",
                                  ROBUSTNESS / "example-iana.org-chunked.warc", NPM_WARC, NPM_WET],
                         ids=lambda p: p.name)
def test_uncompressed_warc_and_arc_files_have_the_plain_layout(path):
    assert layout_of(path) == "plain"


# -------------------------------------------------------------------------------------------------- skip reasons


def test_revisit_records_are_skipped_as_record_type_revisit():
    rows = read_file(ROBUSTNESS / "example.warc")
    revisits = [row for row in rows if row["drop_reason"] == "record_type:revisit"]
    assert len(revisits) == 1
    assert revisits[0]["url"] == "http://example.com/" and revisits[0]["html"] is None


def test_responses_that_are_not_html_are_skipped_as_not_html():
    rows = read_file(ROBUSTNESS / "post-test.warc.gz")
    skipped = [row for row in rows if row["drop_reason"] == "not_html"]
    assert [row["url"] for row in skipped] == [
        "http://httpbin.org/post", "http://httpbin.org/post", "http://httpbin.org/post?foo=bar",
    ]
    assert all(row["html"] is None for row in skipped)


def test_non_200_responses_are_skipped_with_their_status_code():
    rows = read_file(HERITRIX)
    by_status = Counter(row["drop_reason"] for row in rows if (row["drop_reason"] or "").startswith("http_status:"))
    assert by_status == {"http_status:404": 40, "http_status:302": 5, "http_status:301": 2}


def test_dns_records_without_http_are_skipped_as_not_http():
    not_http = [row for row in read_file(HERITRIX) if row["drop_reason"] == "not_http"]
    assert len(not_http) == 38
    assert all(row["url"].startswith("dns:") for row in not_http)
    assert all(row["domain"] is None for row in not_http)  # dns:host has no URL host


def test_an_arc_line_without_an_http_block_is_not_http_and_a_bad_status_line_is_invalid():
    rows = read_file(ROBUSTNESS / "bad.arc")
    assert [(row["offset"], row["drop_reason"]) for row in rows] == [
        (0, "record_type:arc_header"),
        (134, "not_http"),
        (202, "http_status:invalid"),
        (262, "not_http"),
    ]


def test_payloads_over_the_limit_are_skipped_as_too_large_and_the_rest_are_kept():
    limit = 20_000
    full = read_file(DERIVED)
    capped = read_file(DERIVED, ReadOptions(max_payload_bytes=limit))
    assert [row["record_id"] for row in capped] == [row["record_id"] for row in full]
    pages = [(f, c) for f, c in zip(full, capped) if f["html"] is not None]
    big = [(f, c) for f, c in pages if f["payload_bytes"] > limit]
    small = [(f, c) for f, c in pages if f["payload_bytes"] <= limit]
    assert big and small  # the real pages straddle the limit
    assert all(c["drop_reason"] == "too_large" and c["html"] is None for _, c in big)
    assert all(c["drop_reason"] is None and c["html"] == f["html"] for f, c in small)


def test_too_large_applies_to_uncompressed_files_too():
    rows = read_file(NPM_WARC, ReadOptions(max_payload_bytes=10_000))
    assert [row["url"] for row in rows if row["drop_reason"] == "too_large"] == [
        "http://0pointer.de/photos/?gallery=Thailand%202011-01&photo=726&show_thumbs=yes&exif_style=",
        "http://0x20.be/Special:WhatLinksHere/Thread:Talk:Gentse_feesten/foo",
    ]


def test_too_large_is_decided_from_the_headers_for_records_far_over_the_limit():
    """A record far bigger than the cap is skipped without its payload being kept in memory."""
    rows = read_file(DERIVED, ReadOptions(max_payload_bytes=1_000))
    too_large = [row for row in rows if row["drop_reason"] == "too_large"]
    assert len(too_large) > 200
    assert all(row["html"] is None and not row["truncated"] for row in too_large)


# --------------------------------------------------------------------------------------------------- payloads


def test_html_payloads_are_the_original_page_bytes():
    """derived_real_html's index records the SHA-1 of every page as saved; the reader must hand over those bytes."""
    expected = {}
    for line in DERIVED_INDEX.read_text().splitlines():
        entry = json.loads(line)
        if entry["warc_file"] == DERIVED.name:
            expected[entry["record_id"]] = entry["payload_sha1"]
    rows = read_file(DERIVED)
    pages = {row["record_id"]: hashlib.sha1(row["html"]).hexdigest() for row in rows if row["html"] is not None}
    assert len(expected) == 293
    assert pages == expected
    assert all(row["payload_bytes"] == len(row["html"]) for row in rows if row["html"] is not None)


def test_chunked_transfer_encoding_is_removed_from_the_payload():
    [page] = [row for row in read_file(ROBUSTNESS / "example-iana.org-chunked.warc") if row["html"] is not None]
    assert page["html"].startswith(b"<!doctype html>")
    assert page["html"].rstrip().endswith(b"</html>")


def test_gzip_content_encoding_is_removed_from_the_payload():
    [page] = [row for row in read_file(ROBUSTNESS / "example.warc") if row["html"] is not None]
    assert page["html"].startswith(b"<!doctype html>") and b"Example Domain" in page["html"]


def test_records_the_crawler_truncated_are_flagged_truncated():
    """The 2014 Common Crawl excerpt has two responses with `WARC-Truncated: length`."""
    rows = read_file(NPM_WARC)
    assert [row["offset"] for row in rows if row["truncated"]] == [12786, 237506]
    assert all(row["html"] is not None for row in rows if row["truncated"])


def test_a_record_cut_short_by_the_end_of_the_file_keeps_its_payload_and_is_flagged_truncated():
    rows = read_file(ROBUSTNESS / "example-space-in-url.arc")
    page = rows[-1]
    assert page["truncated"] is True
    assert page["html"].startswith(b"<!doctype html>")


def test_complete_records_are_not_flagged_truncated():
    assert not any(row["truncated"] for row in read_file(DERIVED))


# ---------------------------------------------------------------------------------------------------- ARC and WET


@pytest.mark.parametrize("name", ["example.arc", "example.arc.gz"])
def test_arc_files_give_their_html_response_with_url_and_archive_date(name):
    rows = read_file(ROBUSTNESS / name)
    header, page = rows
    assert header["drop_reason"] == "record_type:arc_header"
    assert page["url"] == "http://example.com/" and page["domain"] == "example.com"
    assert page["date"] == datetime(2014, 2, 16, 5, 2, 21, tzinfo=timezone.utc)
    assert page["html"].startswith(b"<!doctype html>") and page["record_id"] is None


def test_an_arc_date_with_more_than_14_digits_is_read_to_the_second():
    rows = read_file(ROBUSTNESS / "bad.arc")
    assert rows[1]["date"] == datetime(2014, 4, 1, tzinfo=timezone.utc)  # "201404010000000000"


def test_wet_conversion_records_become_text_rows_without_html():
    rows = read_file(WHIRLWIND_WET)
    assert outcomes(rows) == {"record_type:warcinfo": 1, "text": 1}
    text_row = rows[1]
    assert text_row["html"] is None and text_row["drop_reason"] is None
    assert "Escopete" in text_row["text"]
    assert text_row["payload_bytes"] == len(text_row["text"].encode("utf-8"))


def test_a_wet_text_row_pairs_with_the_html_row_of_the_same_page():
    [page] = [row for row in read_file(WHIRLWIND_WARC) if row["html"] is not None]
    [text] = [row for row in read_file(WHIRLWIND_WET) if row["text"] is not None]
    assert text["url"] == page["url"] == "https://an.wikipedia.org/wiki/Escopete"
    assert text["domain"] == page["domain"] == "wikipedia.org"


def test_an_uncompressed_wet_file_gives_one_text_row_per_conversion_record():
    wet = read_file(NPM_WET)
    warc_pages = [row for row in read_file(NPM_WARC) if row["html"] is not None]
    assert outcomes(wet) == {"record_type:warcinfo": 1, "text": 3}
    assert [row["url"] for row in wet if row["text"] is not None] == [row["url"] for row in warc_pages]
    assert all(row["text"].strip() and row["html"] is None for row in wet if row["text"] is not None)


# ------------------------------------------------------------------------------------------------------ damage


def member_containing(offsets: list[int], position: int) -> int:
    """The offset of the gzip member (= record row) that holds a byte position."""
    return max(offset for offset in offsets if offset <= position)


@pytest.mark.parametrize("source", [DOLMA, RESILIPARSE, HERITRIX], ids=lambda p: p.name)
def test_a_member_file_cut_short_keeps_every_record_before_the_cut_and_reports_one_damaged_member(tmp_path, source):
    original = read_file(source)
    data = source.read_bytes()
    cut = int(len(data) * 0.6)
    offsets = [row["offset"] for row in original]
    damaged_member = member_containing(offsets, cut)
    assert damaged_member < cut  # the cut falls inside a member, not on a boundary

    rows = read_file(copy_to(tmp_path, source, data[:cut]))

    assert [fingerprint(row) for row in rows[:-1]] == [fingerprint(r) for r in original if r["offset"] < damaged_member]
    assert sum(row["html"] is not None for row in rows) > 0
    [error] = errors(rows)
    assert error is rows[-1]
    assert (error["error"], error["offset"]) == ("damaged_gzip", damaged_member)


@pytest.mark.parametrize("source", [DOLMA, RESILIPARSE, HERITRIX], ids=lambda p: p.name)
def test_zeroed_bytes_inside_one_member_cost_only_that_record(tmp_path, source):
    original = read_file(source)
    data = bytearray(source.read_bytes())
    middle = len(data) // 2
    offsets = [row["offset"] for row in original]
    damaged_member = member_containing(offsets, middle)
    next_member = min(offset for offset in offsets if offset > middle)
    assert damaged_member < middle and middle + 200 < next_member  # the 200 bytes lie inside one member
    data[middle:middle + 200] = bytes(200)

    rows = read_file(copy_to(tmp_path, source, bytes(data)))

    [error] = errors(rows)
    assert (error["error"], error["offset"]) == ("damaged_gzip", damaged_member)
    lost = {row["record_id"] for row in original} - {row["record_id"] for row in records(rows)}
    assert lost == {row["record_id"] for row in original if row["offset"] == damaged_member}
    after = [fingerprint(r) for r in rows if r["offset"] > damaged_member]
    assert after == [fingerprint(r) for r in original if r["offset"] > damaged_member]


@pytest.mark.parametrize("record_index", [5, 11], ids=["before-a-response", "before-the-last-response"])
def test_garbage_between_records_of_an_uncompressed_warc_is_one_error_and_every_record_is_read(tmp_path, record_index):
    original = read_file(NPM_WARC)
    data = NPM_WARC.read_bytes()
    at = original[record_index]["offset"]
    garbage = b"this line is not a WARC header\r\nnor is this one: 12 34\r\n\r\n"
    rows = read_file(copy_to(tmp_path, NPM_WARC, data[:at] + garbage + data[at:]))

    [error] = errors(rows)
    assert (error["error"], error["offset"]) == ("not_a_record", at)
    assert [r["record_id"] for r in records(rows)] == [r["record_id"] for r in original]
    shifted = [r["offset"] + (len(garbage) if r["offset"] >= at else 0) for r in original]
    assert [r["offset"] for r in records(rows)] == shifted
    assert [r["html"] for r in records(rows)] == [r["html"] for r in original]


def test_a_whole_file_gzip_cut_half_way_keeps_the_records_before_the_cut_and_reports_one_error(tmp_path):
    plain = gzip.decompress(RESILIPARSE.read_bytes())  # the real records, recompressed as one gzip stream
    whole = gzip.compress(plain)
    complete = tmp_path / "complete" / "excerpt.warc.gz"
    complete.parent.mkdir()
    complete.write_bytes(whole)
    original = read_file(complete)
    cut_bytes = whole[: len(whole) // 2]
    readable = len(zlib.decompressobj(31).decompress(cut_bytes))  # how much of the stream survives the cut

    rows = read_file(copy_to(tmp_path, complete, cut_bytes))

    assert layout_of(tmp_path / complete.name) == "gzip_stream"
    [error] = errors(rows)
    assert error is rows[-1] and error["error"] == "damaged_gzip"
    ends = [r["offset"] for r in original[1:]] + [len(plain)]
    whole_before_cut = [fingerprint(r) for r, end in zip(original, ends) if end <= readable]
    read_before_cut = [fingerprint(r) for r in rows if not r["truncated"] and not r["error"]]
    assert read_before_cut == whole_before_cut
    assert len(whole_before_cut) > 10


def test_the_record_in_progress_at_the_cut_of_a_whole_file_gzip_is_flagged_truncated(tmp_path):
    plain = gzip.decompress(DOLMA.read_bytes())
    complete = read_file(copy_to(tmp_path, DOLMA, gzip.compress(plain)))
    starts = [r["offset"] for r in complete]
    # cut the compressed stream so that the decompressed data ends in the middle of an HTML response's payload
    page = next(r for r in complete if r["html"] is not None and r["payload_bytes"] > 20_000 and r["offset"] > 50_000)
    page_end = starts[starts.index(page["offset"]) + 1]
    whole = gzip.compress(plain)
    for cut in range(len(whole) // 10, len(whole), 256):
        readable = len(zlib.decompressobj(31).decompress(whole[:cut]))
        if page["offset"] + 5_000 < readable < page_end - 5_000:
            break
    else:
        pytest.fail("no cut lands inside the page")
    damaged = tmp_path / "cut" / DOLMA.name
    damaged.parent.mkdir()
    damaged.write_bytes(whole[:cut])

    rows = read_file(damaged)

    in_progress = next(r for r in rows if r["offset"] == page["offset"])
    assert in_progress["truncated"] is True
    assert in_progress["html"] is not None and page["html"].startswith(in_progress["html"])
    assert len(errors(rows)) == 1


def with_content_length_changed(data: bytes, record_at: int, delta: int) -> tuple[bytes, int]:
    """Archive bytes with the WARC Content-Length of the record at `record_at` changed by `delta`, and how many bytes
    the records after it moved."""
    found = re.compile(rb"Content-Length: (\d+)\r\n").search(data, record_at)
    edited = b"Content-Length: %d\r\n" % (int(found.group(1)) + delta)
    return data[: found.start()] + edited + data[found.end():], len(edited) - len(found.group(0))


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip_stream"])
@pytest.mark.parametrize("delta", [100, -100], ids=["too-long", "too-short"])
def test_a_wrong_content_length_is_one_bad_content_length_error_and_the_records_after_it_are_read(
    tmp_path, compress, delta
):
    """Too long, the record would swallow the start of the next one; too short, it would lose its last bytes."""
    original = read_file(NPM_WARC)
    damaged_at = original[5]["offset"]  # an HTML response, followed by its metadata record
    data, shift = with_content_length_changed(NPM_WARC.read_bytes(), damaged_at, delta)
    path = tmp_path / ("edited.warc.gz" if compress else "edited.warc")
    path.write_bytes(gzip.compress(data) if compress else data)

    rows = read_file(path)

    assert layout_of(path) == ("gzip_stream" if compress else "plain")
    [error] = errors(rows)
    assert (error["error"], error["offset"]) == ("bad_content_length", damaged_at)
    assert "Content-Length" in error["error_detail"]

    def decisions(row: dict, moved: int = 0) -> tuple:
        return row["offset"] + moved, row["record_id"], outcome(row), row["truncated"], row["html"]

    assert [decisions(row) for row in records(rows)] == [
        decisions(row, shift if row["offset"] > damaged_at else 0) for row in original if row["offset"] != damaged_at
    ]


def test_a_response_without_a_target_uri_is_one_error_row_and_the_records_after_it_are_read(tmp_path):
    original = read_file(NPM_WARC)
    response_at = original[5]["offset"]
    data = NPM_WARC.read_bytes()
    uri_line = re.compile(rb"WARC-Target-URI: [^\r\n]*\r\n").search(data, response_at)
    rows = read_file(copy_to(tmp_path, NPM_WARC, data[: uri_line.start()] + data[uri_line.end():]))
    assert [row["offset"] for row in errors(rows)] == [response_at]
    assert len(records(rows)) == len(original) - 1


def test_a_record_whose_content_length_runs_past_the_end_of_the_file_is_flagged_truncated(tmp_path):
    original = read_file(NPM_WARC)
    last = original[-1]["offset"]
    data, _ = with_content_length_changed(NPM_WARC.read_bytes(), last, 100)
    rows = read_file(copy_to(tmp_path, NPM_WARC, data))
    assert not errors(rows)
    assert [row["truncated"] for row in rows if row["offset"] == last] == [True]


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


SHAKESPEARE = DATA / "text" / "tinyshakespeare" / "input.txt"
# Lines of five words or more, blank lines between: to warcio, each is an ARC record header (200 fake records).
PROSE = b"\n".join([line for line in SHAKESPEARE.read_bytes().splitlines(True) if len(line.split()) >= 5][:200])


NOT_ARCHIVES = {
    "random.warc.gz": (random_bytes(5000, 1), "not_a_warc"),
    "random.warc": (random_bytes(5000, 2), "not_a_warc"),
    "gzip-header-then-noise.warc.gz": (b"\x1f\x8b\x08" + random_bytes(3000, 3), "damaged_gzip"),
    "shakespeare.warc": (SHAKESPEARE.read_bytes()[:20_000], "not_a_warc"),
    "shakespeare.warc.gz": (gzip.compress(SHAKESPEARE.read_bytes()[:20_000]), "not_a_warc"),
    "prose.warc": (PROSE, "not_a_warc"),
    "prose.warc.gz": (gzip.compress(PROSE), "not_a_warc"),
    "zeros.warc": (bytes(1 << 20), "not_a_warc"),
}


@pytest.mark.parametrize("name", NOT_ARCHIVES)
def test_a_file_that_is_not_an_archive_is_one_error_row_at_offset_zero(tmp_path, name):
    """Prose whose lines have five words would parse as ARC header lines: fake records, unless the file is refused
    as a whole when it does not begin with a record."""
    content, error = NOT_ARCHIVES[name]
    path = tmp_path / name
    path.write_bytes(content)
    rows = read_file(path)
    assert [(row["error"], row["offset"], row["source"]) for row in rows] == [(error, 0, str(path))]


@pytest.mark.parametrize("content", [b"", gzip.compress(b"")], ids=["empty", "empty-gzip"])
def test_an_empty_file_gives_no_rows(tmp_path, content):
    path = tmp_path / "empty.warc.gz"
    path.write_bytes(content)
    assert read_file(path) == []


# ----------------------------------------------------------------------------------------------- byte ranges


def read_units(path: Path, unit_bytes: int) -> list[list[dict]]:
    units = plan_file(str(path), "warc", unit_bytes)
    return [list(read_unit(unit, ReadOptions(), TextFields())) for unit in units]


@pytest.mark.parametrize(
    "path,unit_bytes",
    [(DERIVED, 1 << 20), (DERIVED, 50_000), (HERITRIX, 100_000), (RESILIPARSE, 4_096)],
    ids=["derived-1MB", "derived-50KB", "heritrix-100KB", "resiliparse-4KB"],
)
def test_reading_in_byte_ranges_gives_the_same_rows_as_reading_the_whole_file(path, unit_bytes):
    whole = [fingerprint(row) for row in read_file(path)]
    per_unit = read_units(path, unit_bytes)
    assert len(per_unit) == -(-os.path.getsize(path) // unit_bytes)
    assert [fingerprint(row) for rows in per_unit for row in rows] == whole


@pytest.mark.parametrize("path,unit_bytes", [(DERIVED, 1 << 20), (DERIVED, 50_000)], ids=["1MB", "50KB"])
def test_a_record_belongs_to_the_one_range_that_holds_its_first_byte(path, unit_bytes):
    units = plan_file(str(path), "warc", unit_bytes)
    seen: set[str] = set()
    for unit in units:
        rows = list(read_unit(unit, ReadOptions(), TextFields()))
        assert all(unit.start <= row["offset"] < unit.end for row in rows)
        ids = {row["id"] for row in rows}
        assert not ids & seen
        seen |= ids
    assert len(seen) == 294


def test_tiny_ranges_that_hold_no_record_start_give_no_rows():
    per_unit = read_units(DERIVED, 50_000)
    empty = sum(not rows for rows in per_unit)
    assert empty > 10  # many ranges lie inside one big page
    assert sum(len(rows) for rows in per_unit) == 294


def test_splitting_a_damaged_member_file_still_reads_each_record_once(tmp_path):
    data = bytearray(RESILIPARSE.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 200] = bytes(200)
    damaged = copy_to(tmp_path, RESILIPARSE, bytes(data))
    whole = [fingerprint(row) for row in read_file(damaged)]
    for unit_bytes in (2_000, 10_000, 33_333):
        assert [fingerprint(row) for rows in read_units(damaged, unit_bytes) for row in rows] == whole


def nested_archive_warc(path: Path) -> None:
    """A per-record gzip WARC of three real pages plus one response whose payload is a real .warc.gz download.

    Deflate stores incompressible data (such as gzip) verbatim, so the inner archive's gzip members appear byte for
    byte inside the outer member holding that response.
    """
    page = (DATA / "quality" / "wikipedia" / "dclm_test_pages" / "wikipedia_paragraph1.html").read_bytes()
    inner = WHIRLWIND_WARC.read_bytes()
    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=True)

        def response(url: str, payload: bytes, content_type: str) -> None:
            headers = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(payload),
                                                          http_headers=headers))

        response("http://example.org/0", page, "text/html")
        response("http://example.org/1", page, "text/html")
        response("https://data.example.org/crawl-00001.warc.gz", inner, "application/gzip")
        response("http://example.org/2", page, "text/html")


def read_units_checked(path: Path, unit_bytes: int) -> list[list[dict]]:
    """Read a file's units, then read again the units whose scanned start the previous unit proves wrong, as the
    runner does (pipeline.plan.boundary_fixes)."""
    units = plan_file(str(path), "warc", unit_bytes)
    rows: dict[str, list[dict]] = {}
    spans: dict[str, dict] = {}
    for _ in range(len(units) + 1):
        for unit in units:
            if unit.id not in rows:
                span = MemberSpan()
                rows[unit.id] = list(read_unit(unit, ReadOptions(), TextFields(), span))
                spans[unit.id] = {"first": span.first, "next": span.next}
        fixes = boundary_fixes(units, spans)
        if not fixes:
            return [rows[unit.id] for unit in units]
        for fix in fixes:
            del rows[fix.id], spans[fix.id]
        units = [next((fix for fix in fixes if fix.id == unit.id), unit) for unit in units]
    raise AssertionError("boundary fixes did not converge")


def test_a_scan_can_take_an_archive_stored_inside_a_payload_for_a_record_boundary(tmp_path):
    """Why units are checked against their neighbours: the scan alone is fooled by a crawled .warc.gz."""
    path = tmp_path / "nested.warc.gz"
    nested_archive_warc(path)
    whole = [fingerprint(row) for row in read_file(path)]
    assert [fingerprint(row) for rows in read_units(path, 4_000) for row in rows] != whole


def test_checked_units_read_a_file_with_an_archive_inside_a_payload_exactly_once(tmp_path):
    path = tmp_path / "nested.warc.gz"
    nested_archive_warc(path)
    whole = [fingerprint(row) for row in read_file(path)]
    assert [row[3] for row in whole] == [
        "http://example.org/0", "http://example.org/1", "https://data.example.org/crawl-00001.warc.gz",
        "http://example.org/2",
    ]
    for unit_bytes in (1_000, 4_000, 9_000):
        assert [fingerprint(row) for rows in read_units_checked(path, unit_bytes) for row in rows] == whole


def test_checked_units_of_ordinary_files_need_no_second_read():
    units = plan_file(str(DERIVED), "warc", 50_000)
    spans = {}
    for unit in units:
        span = MemberSpan()
        list(read_unit(unit, ReadOptions(), TextFields(), span))
        spans[unit.id] = {"first": span.first, "next": span.next}
    assert boundary_fixes(units, spans) == []


# --------------------------------------------------------------------------------------------------- lineage


def test_ids_are_16_hex_characters_and_unique_within_a_file():
    rows = read_file(HERITRIX)
    assert all(re.fullmatch(r"[0-9a-f]{16}", row["id"]) for row in rows)
    assert len({row["id"] for row in rows}) == len(rows) == 822


def test_error_rows_get_ids_that_no_record_row_has(tmp_path):
    data = bytearray(DOLMA.read_bytes())
    data[len(data) // 2:len(data) // 2 + 200] = bytes(200)
    rows = read_file(copy_to(tmp_path, DOLMA, bytes(data)))
    assert errors(rows) and all(re.fullmatch(r"[0-9a-f]{16}", row["id"]) for row in errors(rows))
    assert len({row["id"] for row in rows}) == len(rows)


def test_ids_depend_on_the_file_name_and_offset_not_the_directory(tmp_path):
    first = tmp_path / "a" / RESILIPARSE.name
    second = tmp_path / "b" / "deeper" / RESILIPARSE.name
    for target in (first, second):
        target.parent.mkdir(parents=True)
        shutil.copyfile(RESILIPARSE, target)
    original = [row["id"] for row in read_file(RESILIPARSE)]
    assert [row["id"] for row in read_file(first)] == original
    assert [row["id"] for row in read_file(second)] == original


def test_the_same_bytes_under_another_file_name_get_other_ids(tmp_path):
    renamed = tmp_path / "renamed.warc.gz"
    shutil.copyfile(RESILIPARSE, renamed)
    assert not {row["id"] for row in read_file(renamed)} & {row["id"] for row in read_file(RESILIPARSE)}


def test_the_source_column_names_the_file_read():
    assert {row["source"] for row in read_file(DOLMA)} == {str(DOLMA)}


def test_date_is_parsed_from_warc_date_as_utc():
    rows = read_file(DERIVED)
    pages = [row for row in rows if row["html"] is not None]
    assert {row["date"] for row in pages} == {datetime(2024, 1, 1, tzinfo=timezone.utc)}  # WARC-Date of every page
    assert all(row["date"].utcoffset().total_seconds() == 0 for row in rows)


def test_domain_is_the_registered_domain_and_host_is_the_full_host_name():
    rows = {row["url"]: row for row in read_file(DERIVED)}
    national = next(row for url, row in rows.items() if url and "nationalgeographic.co.uk" in url)
    assert national["host"] == "www.nationalgeographic.co.uk"
    assert national["domain"] == "nationalgeographic.co.uk"
    assert all(row["domain"] is None for url, row in rows.items() if url is None)  # warcinfo has no URL


def test_domain_of_a_multi_label_host_drops_only_the_subdomains():
    rows = read_file(HERITRIX)
    by_host = {row["host"]: row["domain"] for row in rows if row["host"]}
    assert by_host["www.archive.org"] == "archive.org"
    assert all(domain == host or host.endswith("." + domain) for host, domain in by_host.items())


# ---------------------------------------------------------------------------------------------------- charset


def declared_charsets(path: Path) -> dict[str, str | None]:
    """record id -> charset of the HTTP Content-Type, read with warcio directly (the independent oracle)."""
    found = {}
    for record in ArchiveIterator(open(path, "rb")):
        if record.rec_type == "response" and record.http_headers is not None:
            content_type = record.http_headers.get_header("Content-Type") or ""
            match = re.search(r"charset=([^;\s]+)", content_type, re.IGNORECASE)
            found[record.rec_headers.get_header("WARC-Record-ID")] = match.group(1).strip("\"'").lower() if match else None
    return found


def test_the_http_header_charset_is_passed_on_in_the_charset_column():
    rows = [row for row in read_file(RESILIPARSE) if row["html"] is not None]
    declared = declared_charsets(RESILIPARSE)
    assert {row["record_id"]: row["charset"] for row in rows} == {row["record_id"]: declared[row["record_id"]] for row in rows}
    assert {"windows-1251", "gb2312", "utf-8"} <= {row["charset"] for row in rows}


def test_charset_is_none_when_the_content_type_has_none():
    rows = [row for row in read_file(DERIVED) if row["html"] is not None]
    assert rows and all(row["charset"] is None for row in rows)
