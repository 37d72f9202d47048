"""The extract stage: text from real pages, pass-through of text rows, no_text drops, and a per-page time limit."""

import pyarrow as pa
import pytest

from pipeline.schema import RECORD_SCHEMA, empty_row
from stages.decode import decode_html
from stages.extract import Extract, ExtractConfig

ARTICLE = (
    "<html><head><title>Rivers</title></head><body><nav><a href='/'>Home</a> <a href='/about'>About us</a></nav>"
    "<article><h1>How rivers shape valleys</h1>"
    + "".join(
        f"<p>Paragraph {i}: over thousands of years a river cuts into the rock beneath it, carrying sand and "
        f"gravel downstream and widening its valley with every flood season that passes.</p>"
        for i in range(6)
    )
    + "</article><footer>Copyright 2024 Example Media. All rights reserved. Privacy policy.</footer></body></html>"
)


def _rows(*rows: dict) -> pa.Table:
    filled = []
    for index, values in enumerate(rows):
        row = empty_row()
        row.update(id=f"doc{index}", url=f"http://example.org/{index}", offset=index, **values)
        filled.append(row)
    return pa.Table.from_pylist(filled, schema=RECORD_SCHEMA)


@pytest.fixture
def extract():
    stage = Extract(ExtractConfig(time_limit_s=10))
    yield stage
    stage.close()


def test_article_text_is_kept_and_boilerplate_is_not(extract):
    out = extract(_rows({"html": ARTICLE.encode()}))
    text = out.column("text")[0].as_py()
    assert "a river cuts into the rock" in text
    assert "All rights reserved" not in text
    assert out.column("drop_reason")[0].as_py() is None
    assert out.column("charset")[0].as_py() == "utf-8"
    assert out.column("html")[0].as_py() is None  # the payload is released once extracted


def test_rows_that_already_hold_text_pass_through_unchanged(extract):
    out = extract(_rows({"text": "already clean text"}, {"html": ARTICLE.encode()}))
    assert out.column("text")[0].as_py() == "already clean text"
    assert out.num_rows == 2


def test_a_page_without_main_content_is_dropped_as_no_text(extract):
    out = extract(_rows({"html": b"<html><body><nav><a href='/'>Home</a></nav></body></html>"}))
    assert out.column("drop_reason").to_pylist() == ["no_text"]
    assert out.column("text").to_pylist() == [None]


def test_binary_garbage_and_empty_payloads_get_a_decision(extract):
    out = extract(_rows({"html": bytes(range(256)) * 50}, {"html": b""}, {"html": "\udcff".encode("utf-8", "surrogatepass")}))
    assert out.num_rows == 3
    for drop, error, text in zip(*(out.column(c).to_pylist() for c in ("drop_reason", "error", "text"))):
        assert drop is None or error is None  # at most one verdict per row
        if drop is None and error is None:
            assert text and text.strip()  # a kept row has text


def test_a_page_over_the_time_limit_fails_alone_and_the_batch_goes_on():
    giant = ("<html><body>" + "<div><table><tr><td><p>cell text that goes on</p></td></tr></table></div>" * 60000
             + "</body></html>").encode()
    stage = Extract(ExtractConfig(time_limit_s=0.3))
    try:
        out = stage(_rows({"html": ARTICLE.encode()}, {"html": giant}, {"html": ARTICLE.encode()}))
    finally:
        stage.close()
    assert out.column("error").to_pylist() == [None, "extract_timeout", None]
    assert "river" in out.column("text")[2].as_py()


def test_decode_uses_the_declared_charset_when_bytes_are_not_utf8():
    page = "<html><body><p>Größe und Maß: Übergrößen für Straßenschuhe</p></body></html>"
    text, encoding = decode_html(page.encode("cp1252"), "iso-8859-1")
    assert "Übergrößen" in text and encoding == "cp1252"


def test_decode_reads_meta_charset_when_the_header_says_nothing():
    page = '<html><head><meta charset="windows-1251"></head><body>Привет, мир</body></html>'
    text, encoding = decode_html(page.encode("cp1251"), None)
    assert "Привет" in text and encoding == "cp1251"


def test_decode_prefers_valid_utf8_over_a_wrong_label():
    text, encoding = decode_html("<p>naïve café</p>".encode("utf-8"), "iso-8859-1")
    assert text == "<p>naïve café</p>" and encoding == "utf-8"


def test_decode_never_raises_on_undecodable_bytes():
    text, encoding = decode_html(b"\x81\x8d\x8f\x90\x9d" * 100 + b"<p>x</p>", "no-such-charset")
    assert isinstance(text, str) and encoding
