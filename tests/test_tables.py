"""Table rows, as trafilatura 2.x writes them ("| cell | cell |"), are measured as their cells by the rule stages
(`tables: cells`, the default): real pages whose article sits in a layout table are judged as prose, real data
tables are judged as the lists they are, and the text a stage keeps holds the table as it was extracted."""

import json

import pyarrow as pa
import pytest

from conftest import documents_table
from pipeline.io.archive_reader import ReadOptions, probe_layout, read_archive
from pipeline.schema import RECORD_SCHEMA
from stages.c4 import C4
from stages.extract import Extract, ExtractConfig
from stages.fineweb import FineWeb
from stages.gopher_quality import GopherQuality
from stages.gopher_repetition import GopherRepetition
from stages.text_tools import table_cells_as_lines

RULE_STAGES = {stage.name: stage for stage in (GopherRepetition, GopherQuality, C4, FineWeb)}

# Real pages of derived_real_html whose article is laid out in a table -> (rule stage, its drop reason when rows are
# measured as written). The same pages with each table cell written as a paragraph of its own (trafilatura's XML
# output, cells as blocks) pass these rules.
LAYOUT_TABLE_PAGES = {
    "https://kath.net/news/76785": [("c4", "no_lines_left"), ("fineweb", "line_punct_ratio")],
    "https://web.archive.org/web/20070228213001/http://www.alternatives-economiques.fr/site/hs72_003_35heures.html": [
        ("c4", "no_lines_left"), ("fineweb", "line_punct_ratio")],
    "https://www.proplanta.de/agrar-nachrichten/energie/bayern-fordert-hoehere-erloesobergrenzen-fuer-bioenergie"
    "_article1670823962.html": [("fineweb", "line_punct_ratio")],
    "https://www.guenter-pilger.de/mailaktion.htm": [("fineweb", "line_punct_ratio")],
    "http://www.panarmenian.net/eng/news/275221/": [("fineweb", "line_punct_ratio")],
    "https://www.dailymail.co.uk/news/article-8772683/Chef-Jamie-Oliver-joins-Mail-Sundays-war-toxic-food.html": [
        ("gopher_quality", "alpha_words_ratio")],
    "http://www.singapur-reiseinfo.de/Reise-ABC/reise-abc.html": [("c4", "no_lines_left"),
                                                                  ("gopher_repetition", "top_4gram_frac")],
}
STANDINGS_TABLE = "http://www.autoracing.com.br/classificacao-nascar/"  # a page that is mostly one data table
ARTICLE_WITH_TABLES = "https://www.finanztip.de/betriebliche-altersvorsorge/"  # prose with data tables in it
LAYOUT_CASES = [(url, stage, reason) for url, drops in LAYOUT_TABLE_PAGES.items() for stage, reason in drops]


@pytest.fixture(scope="module")
def extracted(data_dir) -> dict[str, str]:
    """The texts our extract stage (default settings) gets from those real pages: url -> text."""
    wanted = {*LAYOUT_TABLE_PAGES, STANDINGS_TABLE, ARTICLE_WITH_TABLES}
    folder = data_dir / "warc" / "derived_real_html"
    index = [json.loads(line) for line in (folder / "index.jsonl").read_text().splitlines()]
    rows = []
    for name in sorted({record["warc_file"] for record in index if record["url"] in wanted}):
        path = folder / name
        with open(path, "rb") as fh:
            rows += [row for row in read_archive(fh, str(path), probe_layout(fh), 0, path.stat().st_size,
                                                 ReadOptions()) if row["url"] in wanted]
    extract = Extract(ExtractConfig())
    try:
        table = extract(pa.Table.from_pylist(rows, schema=RECORD_SCHEMA))
    finally:
        extract.close()
    texts = dict(zip(table.column("url").to_pylist(), table.column("text").to_pylist()))
    assert set(texts) == wanted and all(texts.values())
    return texts


def judged(stage: str, text: str, **settings) -> pa.Table:
    stage_class = RULE_STAGES[stage]
    return stage_class(stage_class.Config(**settings))(documents_table([text]))


def test_a_table_row_becomes_its_cells_one_line_each():
    text = "Intro line.\n| Menu | The article, in one cell. | \nLast line."
    assert table_cells_as_lines(text) == "Intro line.\nMenu\nThe article, in one cell.\nLast line."


def test_header_separators_and_empty_cells_leave_no_line():
    assert table_cells_as_lines("| Name | Age |\n|---|---|\n|  |  |\n| Ann |  |") == "Name\nAge\nAnn"


def test_an_escaped_bar_inside_a_cell_is_text_not_a_border():
    assert table_cells_as_lines("| Home \\| Blog \\| Login | Welcome. |") == "Home | Blog | Login\nWelcome."


def test_lines_that_are_not_table_rows_stay_as_they_are():
    text = "A | B in prose.\n| opens with a bar\ncloses with a bar |\n\n  indented\n|"
    assert table_cells_as_lines(text) == text


@pytest.mark.parametrize(("url", "stage", "reason"), LAYOUT_CASES, ids=[f"{stage}-{url.split('/')[2]}"
                                                                        for url, stage, _ in LAYOUT_CASES])
def test_an_article_in_a_layout_table_is_dropped_when_rows_are_measured_as_written(extracted, url, stage, reason):
    assert judged(stage, extracted[url], tables="as_written").column("drop_reason").to_pylist() == [reason]


@pytest.mark.parametrize(("url", "stage", "reason"), LAYOUT_CASES, ids=[f"{stage}-{url.split('/')[2]}"
                                                                        for url, stage, _ in LAYOUT_CASES])
def test_an_article_in_a_layout_table_is_kept_when_its_cells_are_measured(extracted, url, stage, reason):
    assert judged(stage, extracted[url]).column("drop_reason").to_pylist() == [None]


@pytest.mark.parametrize("stage", ["fineweb", "gopher_quality", "gopher_repetition"])
def test_stages_that_only_judge_keep_the_table_as_extracted(extracted, stage):
    url = next(url for url, drops in LAYOUT_TABLE_PAGES.items() if stage in dict(drops))
    text = extracted[url]
    assert judged(stage, text).column("text").to_pylist() == [text]


def test_c4_keeps_the_cells_that_pass_as_plain_lines(extracted):
    out = judged("c4", extracted["https://kath.net/news/76785"])
    kept_lines = out.column("text")[0].as_py().split("\n")
    assert not any(line.startswith("|") or line.endswith("|") for line in kept_lines)
    assert any("Und wie es in den Tagen des Noach war" in line for line in kept_lines)


def test_a_standings_table_is_still_dropped_by_fineweb_as_a_list(extracted):
    for tables in ("cells", "as_written"):
        out = judged("fineweb", extracted[STANDINGS_TABLE], tables=tables)
        assert out.column("drop_reason").to_pylist() == ["line_punct_ratio"]


def test_c4_keeps_the_sentences_around_a_data_table_and_none_of_its_rows(extracted):
    kept = judged("c4", extracted[STANDINGS_TABLE]).column("text")[0].as_py()
    assert "Nesta página você terá sempre a classificação atualizada da NASCAR até a última corrida!" in kept
    assert "|" not in kept and "Kyle Busch" not in kept and "5040" not in kept


@pytest.mark.parametrize("stage", ["c4", "fineweb"])
def test_an_article_with_data_tables_is_kept_either_way(extracted, stage):
    for tables in ("cells", "as_written"):
        assert judged(stage, extracted[ARTICLE_WITH_TABLES], tables=tables).column("drop_reason").to_pylist() == [None]
