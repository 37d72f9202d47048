"""The stand-ins for trafilatura's XPath selectors select exactly what the XPath expressions select, on real pages, so
that the extract stage's text is plain trafilatura's."""

import pytest
from lxml import etree, html
from trafilatura import xpaths
from warcio.archiveiterator import ArchiveIterator

from stages.extract import make_extractor
from stages.trafilatura_selectors import SELECTOR_LISTS, StandIn, _stand_ins, install, normalized, uninstall

PAGES = 160  # real pages of several sites and languages; every fifth of derived_real_html's first 800


@pytest.fixture(scope="module")
def real_pages(warc_dir) -> list[tuple[str, bytes]]:
    pages = []
    for path in sorted((warc_dir / "derived_real_html").glob("*.warc.gz")):
        with open(path, "rb") as stream:
            for record in ArchiveIterator(stream):
                if record.rec_type == "response":
                    pages.append((record.rec_headers.get_header("WARC-Target-URI"), record.content_stream().read()))
    chosen = pages[:800:5]
    assert len(chosen) == PAGES
    return chosen


@pytest.fixture
def stand_ins_installed():
    install()
    yield
    uninstall()


def stand_ins() -> list[tuple[str, int, StandIn]]:
    return [(name, index, expression) for name in SELECTOR_LISTS
            for index, expression in enumerate(getattr(xpaths, name)) if isinstance(expression, StandIn)]


def test_install_replaces_every_selector_that_calls_back_into_python(stand_ins_installed):
    replaced = stand_ins()
    assert len(replaced) == 13
    left = [expression for name in SELECTOR_LISTS for expression in getattr(xpaths, name)
            if not isinstance(expression, StandIn)]
    assert left and all("re:test" not in expression.path for expression in left)  # (.//article)[1], .//header
    assert install() == 13  # idempotent
    uninstall()
    assert not stand_ins()


def test_an_expression_that_differs_from_the_stand_ins_source_keeps_its_xpath():
    changed = etree.XPath(xpaths.TEASER_DISCARD_XPATH[0].path.replace("'teaser'", "'teasers'"))
    xpaths.TEASER_DISCARD_XPATH.append(changed)
    try:
        install()
        assert xpaths.TEASER_DISCARD_XPATH[-1] is changed
        assert isinstance(xpaths.TEASER_DISCARD_XPATH[0], StandIn)
    finally:
        xpaths.TEASER_DISCARD_XPATH.pop()
        uninstall()


def test_normalized_ignores_white_space_between_tokens_but_not_inside_literals():
    assert normalized(".//*[ @class='a b' or\n  @id = \"x\" ]") == ".//*[@class='a b'or@id='x']"
    assert normalized(".//*[@class='a b']") != normalized(".//*[@class='ab']")


TRICKY = b"""<html><body>
<div class="post-text" id="x"><p>first child that passes</p></div>
<div class="post-text"><p>second child that passes: not selected by [1]</p></div>
<section><div id="articleContent">a first child again, one level down</div></section>
<div id="comments" class="keep"><p>id written before class</p></div>
<div class="comment-box" id="other"><p>class written before id</p></div>
<span id="hidden-note" style="color:red">hidden id</span>
<p style="display: none">hidden style</p>
<div role="NAVIGATION">role in capitals</div>
<div class="TEASER-box">teaser in capitals</div>
<div class="Main-Content">translated class</div>
<div class="fullTEXT">case-insensitive pattern</div>
<div class="main">starts with main</div><main>the main element</main>
<div class="infinite-scroll"><h1>a heading inside keeps it</h1></div>
<div class="infinite-scroll"><p>no heading</p></div>
<ul id="comment-list"><li>a comment list</li></ul><ol class="nav"><li>a plain list</li></ol>
<div data-lp-replacement-content="">an empty attribute value</div>
<div class="bottom-bar link">bottom and link</div><div style="border: 1px">border</div>
</body></html>"""


def test_stand_ins_select_what_the_xpath_selects_on_tricky_markup():
    install()
    try:
        for name, index, stand_in in stand_ins():
            for parser in (html.HTMLParser(), etree.HTMLParser()):
                root = etree.fromstring(TRICKY, parser)
                ours, theirs = stand_in(root), stand_in.original(root)
                assert [id(element) for element in ours] == [id(element) for element in theirs], f"{name}[{index}]"
    finally:
        uninstall()


def test_stand_ins_select_the_same_elements_at_every_call_on_real_pages(real_pages):
    """Every call trafilatura makes while extracting real pages, in each favor: both answers compared."""
    install()
    calls, differences, wrapped = [0], [], []
    for name, index, stand_in in stand_ins():
        def checked(root, stand_in=stand_in, where=f"{name}[{index}]"):
            theirs, ours = stand_in.original(root), stand_in(root)
            calls[0] += 1
            if len(ours) != len(theirs) or any(a is not b for a, b in zip(ours, theirs)):
                differences.append(where)
            return theirs
        getattr(xpaths, name)[index] = checked
        wrapped.append((name, index, stand_in))
    try:
        for favor in ("precision", "recall"):
            extract = make_extractor(favor, True, False, False)
            for url, payload in real_pages:
                extract(payload, None, url)
    finally:
        for name, index, stand_in in wrapped:
            getattr(xpaths, name)[index] = stand_in
        uninstall()
    assert calls[0] > 10 * PAGES
    assert differences == []


def test_extract_gives_plain_trafilaturas_text_on_real_pages(real_pages):
    extract = make_extractor("precision", True, False, False)  # installs the stand-ins
    assert stand_ins()
    ours = [extract(payload, None, url) for url, payload in real_pages]
    uninstall()
    try:
        theirs = [extract(payload, None, url) for url, payload in real_pages]
    finally:
        install()
    assert sum(text is not None for text, _ in ours) > PAGES // 2
    assert ours == theirs
    uninstall()



def test_a_trafilatura_without_the_token_lists_keeps_all_its_selectors(monkeypatch):
    monkeypatch.delattr(xpaths, "_STORY_CLASS_TOKENS")
    _stand_ins.cache_clear()  # built once per process: as in a process that imports that trafilatura
    try:
        assert install() == 0
        assert not stand_ins()
    finally:
        _stand_ins.cache_clear()
