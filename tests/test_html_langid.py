"""The language screen before extraction: visible text of raw pages, its decisions on the real pages against langid
on their extracted text, text rows passing through, bad pages, its place in a config, and a whole run."""

import codecs
import json

import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from conftest import best_seconds, pipeline_cli
from pipeline.config import ConfigError, load_config
from pipeline.io.archive_reader import ReadOptions, probe_layout, read_archive
from pipeline.schema import RECORD_SCHEMA, empty_row
from stages.html_langid import (HtmlLangId, HtmlLangIdConfig, middle_sample, sample_of, visible_bytes,
                                visible_text)

ENGLISH = ("The committee will publish its final report on the new railway line next spring, after hearing the "
           "residents of every town along the route. ")
GERMAN = ("Der Ausschuss wird seinen Abschlussbericht über die neue Bahnstrecke im Frühjahr veröffentlichen, "
          "nachdem er die Bewohner aller Orte entlang der Strecke angehört hat. ")


@pytest.fixture(scope="module")
def screen(lid_model):
    stage = HtmlLangId(HtmlLangIdConfig(model=str(lid_model), languages=["en"]))
    yield stage
    stage.close()


def pages_table(payloads: list[bytes | None], texts: list[str | None] | None = None) -> pa.Table:
    rows = []
    for index, payload in enumerate(payloads):
        row = empty_row()
        row.update(id=f"page{index}", url=f"https://example.org/{index}", offset=index, html=payload,
                   text=texts[index] if texts else None)
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)


def page(body: str, head: str = "<title>Startseite – Gemeinde</title>") -> bytes:
    return f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>".encode()


def test_visible_text_leaves_out_scripts_styles_comments_head_and_tags():
    html = ("<html><head><title>Head title</title><style>p {color: red}</style></head><body><header>Top</header>"
            "<script type='text/javascript'>var x = '<p>not text</p>';</script><p>First &amp; second</p>"
            "<!-- a comment --><noscript>enable JS</noscript><SCRIPT>more()</SCRIPT ><svg><text>chart</text></svg>"
            "<div>Last&nbsp;words</div></body></html>")
    assert visible_text(html.encode()) == "Top First & second Last words"


def test_an_unclosed_script_hides_the_rest_and_a_page_without_body_is_read_whole():
    assert visible_text(b"<body><p>Before</p><script>var unfinished = 1; <p>never shown</p>") == "Before"
    assert visible_text(b"<p>No body tag here</p><head><title>late head</title></head>") == "No body tag here"
    assert visible_text(b"<body><p>Text</p><!-- open comment <p>hidden</p>") == "Text"


def test_a_lone_less_than_sign_is_text_and_an_unclosed_tag_ends_the_text():
    assert visible_text(b"<body><p>3 < 4 and 5 <= 6</p><p>x &lt; y</p>") == "3 < 4 and 5 <= 6 x < y"
    assert visible_text(b"<body><p>Before</p><a href='unfinished") == "Before"


def test_visible_text_reads_only_the_first_max_chars_of_the_body():
    assert visible_text(b"<head>x</head><body>" + b"word " * 1000, max_bytes=100).split() == ["word"] * 19


def test_the_sample_is_taken_from_the_middle():
    assert middle_sample("abcdefghij", 4) == "defg"
    assert middle_sample("short", 10) == "short"


def test_the_sample_of_a_long_page_is_its_middle_and_whitespace_does_not_shorten_it():
    """Only a window around the middle of the visible bytes is decoded; when indentation fills that window, the
    whole text is read instead, so the sample still holds `chars` characters of text."""
    words = " ".join(f"w{number:05d}" for number in range(20_000))
    sample = sample_of(words.encode(), 120, "utf-8")
    assert len(sample) == 120 and "w10000" in sample
    indented = ("word " * 100 + " " * 50_000 + "tail " * 100).encode()
    assert len(sample_of(indented, 200, "utf-8")) == 200
    legacy = visible_bytes("<body><p>caf&eacute; Stra\u00dfe</p>".encode("cp1252"))
    assert sample_of(legacy, 100, "cp1252") == "café Straße"


def test_a_page_in_another_language_is_dropped_and_an_english_one_kept(screen):
    out = screen(pages_table([page(f"<nav>Start Kontakt</nav><main><p>{GERMAN * 3}</p></main>"),
                              page(f"<nav>Home Contact</nav><main><p>{ENGLISH * 3}</p></main>")]))
    assert out.column("drop_reason").to_pylist() == ["other_language", None]
    german, english = out.column("page_lang_score").to_pylist()
    assert german < 0.01 <= 0.9 < english
    assert out.column("html").to_pylist()[1] is not None, "the page stays for extract"


def test_an_english_article_in_a_german_page_is_kept(screen):
    """The screen is loose: English text amid another language's navigation passes, for langid to judge."""
    out = screen(pages_table([page(f"<nav>{GERMAN}</nav><article>{ENGLISH * 2}</article><footer>{GERMAN}</footer>")]))
    assert out.column("drop_reason").to_pylist() == [None]


def test_several_languages_can_be_kept(lid_model):
    stage = HtmlLangId(HtmlLangIdConfig(model=str(lid_model), languages=["en", "de"]))
    russian = "Комитет опубликует свой окончательный доклад о новой железнодорожной линии следующей весной. "
    out = stage(pages_table([page(f"<p>{GERMAN * 3}</p>"), page(f"<p>{russian * 3}</p>")]))
    assert out.column("drop_reason").to_pylist() == [None, "other_language"]


def test_rows_that_already_hold_text_pass_untouched(screen):
    out = screen(pages_table([None, None], texts=[GERMAN, ENGLISH]))
    assert out.column("drop_reason").to_pylist() == [None, None]
    assert out.column("page_lang_score").to_pylist() == [None, None]


def test_the_encoding_found_is_passed_on_and_extract_gets_the_same_text(screen):
    """An undeclared legacy page is guessed once, here; extract decodes it with that encoding to the same text."""
    from stages.decode import decode_html

    legacy = page("<p>" + ENGLISH.replace("committee", "comité") * 3 + " Straße, Ärger, façade.</p>").decode()
    payload = legacy.encode("cp1252")
    out = screen(pages_table([payload]))
    found = out.column("charset").to_pylist()[0]
    assert found is not None and found != "utf-8"
    assert decode_html(payload, found) == decode_html(payload, None)


def test_a_page_without_visible_text_is_left_to_extract(screen):
    out = screen(pages_table([b"", page("<script>render()</script><!-- nothing else -->")]))
    assert out.column("drop_reason").to_pylist() == [None, None]
    assert out.column("page_lang_score").to_pylist() == [None, None]


@pytest.mark.parametrize("payload", [
    b"\x00\x01\x02\xff\xfe binary" * 100, b"<html><body>" + b"<div>" * 200 + GERMAN.encode() + b"</body></html>",
    "<body><p>Ein Text in Latin-1 für die Straße</p></body>".encode("latin-1"),
    f"<body><p>{GERMAN}</p>".encode() + b"<script>" * 10_000 + b"</body>", b"<body>" + ENGLISH.encode() * 200_000 + b"</body>",
], ids=["binary", "nesting", "latin1", "many_unclosed_scripts", "giant_page"])
def test_bad_and_odd_pages_get_a_decision(screen, payload):
    out = screen(pages_table([payload]))
    assert out.num_rows == 1 and out.column("error").to_pylist() == [None]
    assert out.column("page_lang_score")[0].as_py() is not None


def test_text_nested_deeper_than_a_parser_reads_is_judged(screen):
    """A parser stops at some depth of open elements (libxml2 at 256); the scan reads the text at any depth."""
    out = screen(pages_table([page("<div>" * 50_000 + GERMAN * 3)]))
    assert out.column("drop_reason").to_pylist() == ["other_language"] and out.column("error").to_pylist() == [None]


def test_a_utf16_page_is_read_through_its_decoded_text(screen):
    """Pages whose encoding is not one byte per character nor UTF-8 are scanned as the decoded text's UTF-8."""
    german, english = (codecs.BOM_UTF16_LE + page(f"<p>{text * 3}</p>").decode().encode("utf-16-le")
                       for text in (GERMAN, ENGLISH))
    out = screen(pages_table([german, english]))
    assert out.column("drop_reason").to_pylist() == ["other_language", None]
    assert out.column("charset").to_pylist() == ["utf-16-le", "utf-16-le"]


# Markup that made the regular-expression tag stripper quadratic or that stresses a scanner or parser, by the page size in
# bytes; every one is a single line.
HOSTILE_PAGES = {
    "unclosed_tag_starts": lambda size: "a<b " * (size // 4),
    "deep_nesting": lambda size: "<body>" + "<div>" * (size // 5) + GERMAN,
    "unclosed_paragraphs_and_bold": lambda size: "<body>" + "<p><b>" * (size // 6),
    "unterminated_comment": lambda size: "<body><p>Text</p><!--" + "a" * size,
    "attribute_without_end": lambda size: "<body><a " + "x='1' " * (size // 6),
    "single_line_page": lambda size: "<body>" + f"<p>{ENGLISH}</p>" * (size // (len(ENGLISH) + 7)),
    "short_scripts_and_comments": lambda size: "<body>" + "<script>x</script><!--c--><p>w</p>" * (size // 35),
    "stray_closing_tags_and_openers": lambda size: "<body>" + "</script></style><scrip<styl<!-" * (size // 31),
}


@pytest.mark.parametrize("name", HOSTILE_PAGES)
def test_visible_text_takes_time_linear_in_the_size_of_hostile_markup(name):
    """Ten times the markup costs about ten times the time, not a hundred (the regular expression `<[^>]*>` took
    quadratic time on `a<b ` repeated). The size cap is lifted so that the scan reads all 10 MB."""
    small, large = (HOSTILE_PAGES[name](size).encode() for size in (1_000_000, 10_000_000))
    small_seconds = best_seconds(lambda: visible_text(small, max_bytes=len(small)), repeats=5)
    large_seconds = best_seconds(lambda: visible_text(large, max_bytes=len(large)), repeats=2)
    assert large_seconds < 25 * small_seconds, (small_seconds, large_seconds)


@pytest.mark.parametrize("name", HOSTILE_PAGES)
def test_a_hostile_page_costs_the_screen_a_few_times_a_plain_page_of_its_size(screen, name):
    """10 MB of hostile markup against 10 MB of plain paragraphs, through the whole stage: the size cap bounds what
    the parser reads, so markup costs a constant factor more than prose, and the page gets a decision."""
    plain = pages_table([("<body>" + f"<p>{ENGLISH * 50}</p>\n" * (10_000_000 // (len(ENGLISH) * 50 + 8))).encode()])
    hostile = pages_table([HOSTILE_PAGES[name](10_000_000).encode()])
    plain_seconds = best_seconds(lambda: screen(plain), repeats=3)
    hostile_seconds = best_seconds(lambda: screen(hostile), repeats=3)
    assert hostile_seconds < 20 * plain_seconds, (hostile_seconds, plain_seconds)
    assert screen(hostile).column("error").to_pylist() == [None]


def test_on_the_real_pages_most_other_languages_are_skipped_and_english_pages_kept(
        data_dir, lid_model, real_page_texts):
    """Against langid on the text our extract stage gets from the same 879 real pages (German-heavy)."""
    rows = []
    for path in sorted((data_dir / "warc" / "derived_real_html").glob("*.warc.gz")):
        with open(path, "rb") as fh:
            rows += [row for row in read_archive(fh, str(path), probe_layout(fh), 0, path.stat().st_size,
                                                 ReadOptions()) if row["html"] is not None]
    out = HtmlLangId(HtmlLangIdConfig(model=str(lid_model)))(pa.Table.from_pylist(rows, schema=RECORD_SCHEMA))
    skipped = {record for record, reason in zip(out.column("record_id").to_pylist(),
                                                out.column("drop_reason").to_pylist()) if reason}
    english = {page["record_id"] for page in real_page_texts if page["lang"] == "en"}
    other = {page["record_id"] for page in real_page_texts if page["lang"] != "en"}
    assert len(english) > 200 and len(other) > 500
    assert len(english & skipped) <= 0.02 * len(english), f"{len(english & skipped)} English pages skipped"
    assert len(other & skipped) >= 0.85 * len(other), f"only {len(other & skipped)} of {len(other)} skipped"


def test_the_screen_must_come_before_extract(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    config = tmp_path / "run.yaml"
    config.write_text(f"name: x\ninput: {{paths: [{tmp_path / 'in.jsonl'}]}}\nstages: [extract, html_langid]\n")
    with pytest.raises(ConfigError, match=r"stages.*\[1\] html_langid reads the raw page: list it before extract"):
        load_config(config)
    config.write_text(f"name: x\ninput: {{paths: [{tmp_path / 'in.jsonl'}]}}\n"
                      "stages: [{html_langid: {languages: []}}, extract]\n")
    with pytest.raises(ConfigError, match="languages"):
        load_config(config)


def test_a_run_accounts_for_every_page_the_screen_skips(tmp_path, warc_dir, lid_model):
    """A whole run on a third of the real pages, in this process (ray.in_process_max_mb): the skipped pages are
    counted under html_langid, the others go through extract and langid, and the documents kept are those the run
    without the screen keeps, but for the rare page the screen loses."""
    source = warc_dir / "derived_real_html" / "derived-real-html-00000.warc.gz"
    summaries, urls = {}, {}
    for name, screen_stage in (("screened", f"{{html_langid: {{model: {lid_model}}}}}, "), ("plain", "")):
        config = tmp_path / f"{name}.yaml"
        config.write_text(f"name: {name}\noutput: {tmp_path / name}\ninput: {{paths: [{source}]}}\n"
                          f"stages: [{screen_stage}extract, {{langid: {{model: {lid_model}}}}}]\n"
                          "ray: {in_process_max_mb: 20}\n")
        result = pipeline_cli("run", "--config", str(config), "--quiet")
        assert result.returncode == 0, result.stderr
        summaries[name] = {stage["stage"]: stage for stage in
                           json.loads((tmp_path / name / "stats" / "summary.json").read_text())["stages"]}
        urls[name] = set(pads.dataset(tmp_path / name / "documents").to_table(columns=["url"])["url"].to_pylist())
    screened, plain = summaries["screened"], summaries["plain"]
    skipped = screened["html_langid"]["dropped"]["other_language"]
    assert skipped >= 0.5 * screened["read"]["kept"]
    assert screened["extract"]["rows_in"] == screened["read"]["kept"] - skipped
    assert plain["extract"]["rows_in"] == plain["read"]["kept"]
    assert len(urls["plain"]) > 50 and urls["screened"] <= urls["plain"]
    assert len(urls["plain"] - urls["screened"]) <= 2, urls["plain"] - urls["screened"]
