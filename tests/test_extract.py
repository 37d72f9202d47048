"""The extract stage: text from real pages, pass-through of text rows, no_text drops, and a per-page time limit,
with either engine; and a clear stop before any work when the chosen engine is not installed."""

import json
import sys
import subprocess
import tarfile
from typing import get_args

import pyarrow as pa
import pytest
from pydantic import ValidationError

from conftest import REPO
from pipeline.schema import RECORD_SCHEMA, empty_row
from stages.decode import decode_html
from stages.extract import Extract, ExtractConfig, make_extractor

ENGINES = get_args(ExtractConfig.model_fields["engine"].annotation)
RESILIPARSE_INSTALL = "pip install resiliparse==2.0.1"

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


@pytest.fixture(params=ENGINES)
def extract(request):
    """The stage with each engine: every behaviour below holds for both."""
    stage = Extract(ExtractConfig(engine=request.param, time_limit_s=10))
    yield stage
    stage.close()


def eval_page(data_dir, file_name: str) -> tuple[bytes, dict]:
    """A real page of trafilatura's evaluation set, read from its archive, with its gold snippets."""
    evaluation = data_dir / "extraction" / "trafilatura_eval"
    gold = next(item for item in json.loads((evaluation / "evaldata.json").read_text()).values()
                if item["file"] == file_name)
    with tarfile.open(evaluation / "trafilatura-eval.tar.xz", "r:xz") as archive:
        member = next(member for member in archive if member.name == f"cache/{file_name}")  # streams, stops there
        return archive.extractfile(member).read(), gold


@pytest.fixture
def missing_resiliparse(monkeypatch):
    """resiliparse as if it were not installed (it is, in CI): a None in sys.modules makes importlib.util.find_spec
    find nothing and every import of it fail, as without the package."""
    for module in [name for name in sys.modules if name.split(".")[0] == "resiliparse"]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "resiliparse", None)  # `import resiliparse...` raises ImportError


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


def test_resiliparse_keeps_the_article_of_a_real_page_and_drops_its_boilerplate(data_dir):
    payload, gold = eval_page(data_dir, "demokratiewebstatt.at.luft.html")  # an article on air pollution, 134 KB
    stage = Extract(ExtractConfig(engine="resiliparse"))
    try:
        out = stage(_rows({"html": payload}))
    finally:
        stage.close()
    text = out.column("text")[0].as_py()
    assert out.column("drop_reason")[0].as_py() is None and out.column("error")[0].as_py() is None
    assert all(snippet in text for snippet in gold["with"]), gold["with"]
    assert not any(snippet in text for snippet in gold["without"]), gold["without"]
    assert out.column("charset")[0].as_py() == "utf-8"


def test_a_missing_engine_stops_the_run_before_any_work_with_the_install_command(
    tmp_path, data_dir, missing_resiliparse
):
    from pipeline.config import ConfigError, RunConfig
    from pipeline.runner import run_pipeline

    config = RunConfig.model_validate({
        "name": "missing-engine", "output": str(tmp_path / "run"),
        "input": {"paths": [str(data_dir / "warc" / "cc_jwarc" / "cc.warc.gz")]},
        "stages": [{"extract": {"engine": "resiliparse"}}],
    })
    with pytest.raises(ConfigError, match=r"stages\[0\]\.extract\.engine: resiliparse is not installed") as missing:
        run_pipeline(config, show_progress=False)
    assert RESILIPARSE_INSTALL in str(missing.value)
    assert not list((tmp_path / "run").glob("_done/*.json"))


def test_a_worker_without_the_engine_names_the_install_command(missing_resiliparse):
    with pytest.raises(ImportError, match=RESILIPARSE_INSTALL):
        make_extractor(**ExtractConfig(engine="resiliparse").extractor_options())


def test_fallback_is_refused_with_an_engine_it_does_not_apply_to():
    with pytest.raises(ValidationError, match="fallback"):
        ExtractConfig(engine="resiliparse", fallback=True)


@pytest.mark.slow
def test_a_pipeline_run_with_resiliparse_extracts_and_accounts_for_every_record(tmp_path, data_dir, local_ray):
    from pipeline.config import RunConfig
    from pipeline.runner import run_pipeline
    from pipeline.stats import accounting_problems

    config = RunConfig.model_validate({
        "name": "resiliparse", "output": str(tmp_path / "run"),
        "input": {"paths": [str(data_dir / "warc" / "derived_real_html" / "derived-real-html-00000.warc.gz")]},
        "stages": [{"extract": {"engine": "resiliparse"}}],
    })
    result = run_pipeline(config, show_progress=False)
    extract = next(tally for tally in result.funnel if tally.stage == "extract")
    assert result.ok and not accounting_problems(result.funnel)
    assert extract.rows_in > 200 and extract.kept >= 0.95 * extract.rows_in and not extract.failed


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


def test_the_extraction_child_imports_its_engine_and_not_the_pipeline():
    """The sandbox child builds its function from stages.extraction_engines: trafilatura, lxml and the charset
    detector, not pyarrow, pydantic or the other stages (they doubled the child's memory and start-up)."""
    probe = ("import sys; from stages.extraction_engines import make_extractor; "
             "extract = make_extractor('precision', True, False, False); "
             "assert extract(b'<html><body><p>' + b'Some words here. ' * 20 + b'</p></body></html>', None, None)[0]; "
             "print(sorted(name for name in sys.modules if name.split('.')[0] in {'pyarrow', 'pydantic', 'numpy', "
             "'ray', 'pipeline'} or name in {'stages.base', 'stages.extract', 'stages.pii'}))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", result.stdout
