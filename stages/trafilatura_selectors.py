"""Faster stand-ins for trafilatura's content and boilerplate XPath selectors: the same elements, in the same order.

trafilatura finds the main content and prunes boilerplate with a dozen XPath expressions whose predicates call EXSLT
regular expressions (`re:test`). lxml runs every such call back in Python, once per candidate element and attribute,
with the attribute values built as Python objects: most of trafilatura's time on a typical page goes there. A
stand-in walks the same candidate elements with lxml's C iterator and tests the same attribute values with the same
Python regular expressions.

Each stand-in is written as a small expression tree that can print itself as XPath. `install()` puts a stand-in in
place of trafilatura's XPath only where the printed text equals that XPath's source (white space aside): another
trafilatura version whose expression differs keeps its own XPath, so the result can never differ from plain
trafilatura by a changed expression; tests/test_trafilatura_selectors.py checks on real pages that both select the
same elements at every call.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from lxml import etree

Element = etree._Element
_LITERAL = re.compile(r"'[^']*'|\"[^\"]*\"")


def _quoted(text: str) -> str:
    return f"'{text}'"


# Each test prints itself as XPath (to compare with trafilatura's source) and as a Python expression over `e`, the
# element, and `g`, its `get` method (compiled once per selector: no per-element dispatch through these objects).
# `names` collects the objects the expression refers to (compiled patterns, tag sets) under generated names.
# Absent attributes read as "" (XPath's string of an empty node-set).


def _name(names: dict, value: object) -> str:
    key = f"_v{len(names)}"
    names[key] = value
    return key


@dataclass(frozen=True)
class Attr:
    """`@name`, or `@a|@b`: the value of the first of the named attributes in the element's source order."""

    names: tuple[str, ...]

    def xpath(self) -> str:
        return "|".join(f"@{name}" for name in self.names)

    def python(self, names: dict) -> str:
        if len(self.names) == 1:
            return f"(g({self.names[0]!r}) or '')"
        return f"_first_of(e, {_name(names, frozenset(self.names))})"


def _first_of(element: Element, attributes: frozenset[str]) -> str:
    present = [name for name in attributes if element.get(name) is not None]
    if len(present) < 2:
        return element.get(present[0]) if present else ""
    return next(value for key, value in element.items() if key in attributes)


@dataclass(frozen=True)
class Translate:
    """`translate(@name, 'AB', 'ab')`."""

    attr: Attr
    source: str
    target: str

    def xpath(self) -> str:
        return f"translate({self.attr.xpath()}, {_quoted(self.source)}, {_quoted(self.target)})"

    def python(self, names: dict) -> str:
        table = _name(names, str.maketrans(self.source, self.target))
        return f"{self.attr.python(names)}.translate({table})"


Value = Attr | Translate


@dataclass(frozen=True)
class ReTest:
    """`re:test(value, 'pattern'[, 'i'])`, as lxml runs it: Python's re.search with re.UNICODE (and IGNORECASE)."""

    value: Value
    pattern: str
    ignore_case: bool = False

    def xpath(self) -> str:
        flags = ", 'i'" if self.ignore_case else ""
        return f"re:test({self.value.xpath()}, {_quoted(self.pattern)}{flags})"

    def python(self, names: dict) -> str:
        flags = re.UNICODE | (re.IGNORECASE if self.ignore_case else 0)
        search = _name(names, re.compile(self.pattern, flags).search)
        return f"{search}({self.value.python(names)}) is not None"


@dataclass(frozen=True)
class Contains:
    value: Value
    text: str

    def xpath(self) -> str:
        return f"contains({self.value.xpath()}, {_quoted(self.text)})"

    def python(self, names: dict) -> str:
        return f"{self.text!r} in {self.value.python(names)}"


@dataclass(frozen=True)
class StartsWith:
    value: Value
    text: str

    def xpath(self) -> str:
        return f"starts-with({self.value.xpath()}, {_quoted(self.text)})"

    def python(self, names: dict) -> str:
        return f"{self.value.python(names)}.startswith({self.text!r})"


@dataclass(frozen=True)
class Equals:
    """`@name='text'`: the attribute is there and equals the text (an absent one compares false)."""

    name: str
    text: str

    def xpath(self) -> str:
        return f"@{self.name}={_quoted(self.text)}"

    def python(self, names: dict) -> str:
        return f"g({self.name!r}) == {self.text!r}"


@dataclass(frozen=True)
class Has:
    """`@name`: the attribute is there."""

    name: str

    def xpath(self) -> str:
        return f"@{self.name}"

    def python(self, names: dict) -> str:
        return f"g({self.name!r}) is not None"


@dataclass(frozen=True)
class SelfIs:
    """`self::a or self::b`."""

    tags: tuple[str, ...]

    def xpath(self) -> str:
        return " or ".join(f"self::{tag}" for tag in self.tags)

    def python(self, names: dict) -> str:
        return f"e.tag in {_name(names, frozenset(self.tags))}"


@dataclass(frozen=True)
class HasDescendant:
    """`.//tag`, as a test: the element has a descendant of that tag."""

    tag: str

    def xpath(self) -> str:
        return f".//{self.tag}"

    def python(self, names: dict) -> str:
        return f"next(e.iterdescendants({self.tag!r}), None) is not None"


@dataclass(frozen=True)
class Not:
    test: object

    def xpath(self) -> str:
        return f"not({self.test.xpath()})"

    def python(self, names: dict) -> str:
        return f"not ({self.test.python(names)})"


@dataclass(frozen=True)
class AnyOf:
    """`a or b or c`."""

    tests: tuple

    def xpath(self) -> str:
        return " or ".join(test.xpath() for test in self.tests)

    def python(self, names: dict) -> str:
        return "(" + " or ".join(f"({test.python(names)})" for test in self.tests) + ")"


def _compiled(tests: tuple) -> Callable[[Element], bool]:
    """One function testing an element against all the tests (XPath's consecutive predicates: all must pass)."""
    names: dict = {"_first_of": _first_of}
    body = " and ".join(f"({test.python(names)})" for test in tests) or "True"
    exec(f"def passes(e):\n    g = e.get\n    return {body}\n", names)  # noqa: S102 - our own expression tree
    return names["passes"]


# Selectors: element -> list of elements, as XPath(...)(element) returns them.


@dataclass(frozen=True)
class Descendants:
    """`.//*[self::a or self::b][test][test]` (or `.//*[test]` without tags), in document order; `first_child`:
    with a trailing `[1]`, only each parent's first child that passes (XPath's position applies per step)."""

    tags: tuple[str, ...]
    tests: tuple = ()
    first_child: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "_passes", _compiled(self.tests))

    def xpath(self) -> str:
        predicates = ([SelfIs(self.tags)] if self.tags else []) + list(self.tests)
        return ".//*" + "".join(f"[{test.xpath()}]" for test in predicates) + ("[1]" if self.first_child else "")

    def matches(self, root: Element) -> Iterator[Element]:
        candidates = root.iterdescendants(*self.tags) if self.tags else root.iterdescendants(etree.Element)
        return filter(self._passes, candidates)

    def __call__(self, root: Element) -> list[Element]:
        if not self.first_child:
            return list(self.matches(root))
        parents: set[Element] = set()
        firsts = []
        for element in self.matches(root):
            parent = element.getparent()
            if parent not in parents:
                parents.add(parent)
                firsts.append(element)
        return firsts


@dataclass(frozen=True)
class First:
    """`(selector)[1]`: the first element in document order, or none. `(.//tag)[1]` for a bare tag."""

    selector: Descendants | str

    def xpath(self) -> str:
        inner = f".//{self.selector}" if isinstance(self.selector, str) else self.selector.xpath()
        return f"({inner})[1]"

    def __call__(self, root: Element) -> list[Element]:
        if isinstance(self.selector, str):
            candidates: Iterable[Element] = root.iterdescendants(self.selector)
        else:
            candidates = self.selector.matches(root)
        first = next(iter(candidates), None)
        return [] if first is None else [first]


@dataclass(frozen=True)
class Union:
    """`a|b`: the elements of both, once each, in document order."""

    selectors: tuple

    def xpath(self) -> str:
        return "|".join(selector.xpath() for selector in self.selectors)

    def __call__(self, root: Element) -> list[Element]:
        found = {element for selector in self.selectors for element in selector(root)}
        if len(found) < 2:
            return list(found)
        return [element for element in root.iterdescendants() if element in found]


def normalized(xpath: str) -> str:
    """An XPath's source without the white space between its tokens (literals kept as written, quoted alike)."""
    parts, position = [], 0
    for literal in _LITERAL.finditer(xpath):
        parts.append(re.sub(r"\s+", "", xpath[position:literal.start()]))
        parts.append("'" + literal.group()[1:-1] + "'")
        position = literal.end()
    parts.append(re.sub(r"\s+", "", xpath[position:]))
    return "".join(parts)


@functools.cache
def _stand_ins() -> tuple:
    """The stand-ins, written from trafilatura's xpaths.py; patterns are read from there, so a changed token list
    still matches, and any other change leaves that expression to lxml."""
    from trafilatura import xpaths as source

    def attr(*names: str) -> Attr:
        return Attr(names)

    def re_test(names: str, pattern: str, ignore_case: bool = False) -> ReTest:
        return ReTest(Attr(tuple(name.lstrip("@") for name in names.split("|"))), pattern, ignore_case)

    def alt(*groups: tuple[str, ...]) -> str:
        return source._alt(sum(groups, ()))

    content_tags = ("article", "div", "main", "section")
    comment_id = "[Cc]omment(?!ary)|comol"
    comment_class = "^[Cc]omment(?!ary)|(?:article|post)-comments"
    block_tags = ("div", "item", "list", "p", "section", "span")
    return (
        Descendants(content_tags, (AnyOf((
            Equals("class", "post"), Equals("class", "entry"), Equals("itemprop", "articleBody"),
            Equals("id", "articleContent"),
            re_test("@id", alt(source._ARTICLE_CONTENT_ID_TOKENS)),
            re_test("@class", alt(source._ARTICLE_CONTENT_CLASS_TOKENS)),
        )),), first_child=True),
        First(Descendants(content_tags, (AnyOf((
            Equals("role", "article"), Equals("id", "article"), Equals("id", "story"), Equals("class", "postarea"),
            Equals("class", "art-postcontent"), Equals("class", "text"), Equals("class", "cell"),
            Equals("class", "story"),
            re_test("@id", alt(source._STORY_ID_TOKENS)),
            re_test("@class", "fulltext", ignore_case=True),
            re_test("@class", alt(source._STORY_CLASS_TOKENS)),
        )),))),
        First(Descendants(content_tags, (AnyOf((
            Equals("id", "content"), Equals("class", "content"),
            re_test("@id", alt(source._MAIN_CONTENT_ID_TOKENS)),
            re_test("@class", alt(source._MAIN_CONTENT_CLASS_TOKENS)),
            Contains(Translate(attr("id"), "CM", "cm"), "main-content"),
            Contains(Translate(attr("class"), "CM", "cm"), "main-content"),
            Contains(Translate(attr("class"), "CP", "cp"), "page-content"),
        )),))),
        Union((First(Descendants(("article", "div", "section"), (AnyOf((
            StartsWith(attr("class"), "main"), StartsWith(attr("id"), "main"), StartsWith(attr("role"), "main"),
        )),))), First("main"))),
        Descendants(("div", "list", "section", "details"), (AnyOf((
            re_test("@id", f"^(?:{comment_id}|disqus_thread|dsq-comments)"), re_test("@class", comment_class),
        )),)),
        Descendants(("div", "list", "section", "details", "ol", "ul"), (
            AnyOf((re_test("@id", f"^(?:{comment_id}|disqus_thread|dsq-comments)"), re_test("@class", comment_class))),
            AnyOf((Not(SelfIs(("ol", "ul"))), re_test("@id", f"^(?:{comment_id})"), re_test("@class", comment_class))),
        )),
        Descendants(("div", "section", "aside"), (
            AnyOf((re_test("@id", "mvp-post-add-(?:box|wrap)|infinite-?scroll"),
                   re_test("@class", "mvp-post-add-(?:box|wrap)|infinite-?scroll"))),
            AnyOf((Not(HasDescendant("h1")), re_test("@id", "mvp-post-add-(?:box|wrap)"),
                   re_test("@class", "mvp-post-add-(?:box|wrap)"))),
        )),
        Descendants(("div", "section", "aside"), (Contains(attr("class"), "elementor-share-buttons"),)),
        Descendants(block_tags, (AnyOf((
            Has("data-lp-replacement-content"),
            Contains(Translate(attr("role"), "N", "n"), "nav"),
            Contains(attr("data-component"), "MostPopularStories"),
            re_test("@id|@class", alt(source._CONSENT_ID_CLASS_TOKENS)),
            re_test("@id", alt(source._OVERALL_DISCARD_BOTH_TOKENS, source._OVERALL_DISCARD_ID_TOKENS)),
            re_test("@class", alt(source._OVERALL_DISCARD_BOTH_TOKENS, source._OVERALL_DISCARD_CLASS_TOKENS)),
        )),)),
        Descendants((), (AnyOf((
            Equals("class", "comments-title"),
            StartsWith(attr("id", "class"), "reply-"),
            re_test("@id|@style", "hidden"),
            Contains(attr("style"), "display:none"), Contains(attr("style"), "display: none"),
            re_test("@id", "reader-comments|akismet"),
            re_test("@class", "^hide-|comments-title|nocomments|-reply-|message|akismet|suggest-links|-hide-|"
                              "hide-print| hidden| hide|noprint|notloaded"),
            Equals("aria-hidden", "true"),
        )),)),
        Descendants(block_tags, (AnyOf((
            Contains(Translate(attr("id"), "T", "t"), "teaser"), Contains(Translate(attr("class"), "T", "t"), "teaser"),
        )),)),
        Descendants(block_tags, (AnyOf((
            re_test("@id|@class", r"(^|\s)bottom|bottom(\s|$)"), re_test("@id|@class", r"(^|\s)link(\s|$)"),
            Contains(attr("style"), "border"),
        )),)),
        Descendants(block_tags, (AnyOf((Contains(attr("id"), "caption"), Contains(attr("class"), "caption"))),)),
    )


# trafilatura's lists of XPath expressions that the stand-ins may replace entries of.
SELECTOR_LISTS = (
    "BODY_XPATH", "REMOVE_COMMENTS_XPATH", "REMOVE_COMMENTS_AND_LISTS_XPATH", "RAW_TREE_PRUNE_XPATH",
    "OVERALL_DISCARD_XPATH", "TEASER_DISCARD_XPATH", "PRECISION_DISCARD_XPATH", "DISCARD_IMAGE_ELEMENTS",
)


@dataclass(frozen=True)
class StandIn:
    """A stand-in in trafilatura's list, with the XPath it replaces (tests compare the two)."""

    selector: Callable
    original: etree.XPath

    @property
    def path(self) -> str:
        return self.original.path

    def __call__(self, root: Element) -> list[Element]:
        if not isinstance(root, Element):  # an ElementTree: its document node is the context, not the root
            return self.original(root)
        return self.selector(root)


def install() -> int:
    """Replace, in trafilatura's own lists, each XPath whose source a stand-in prints exactly; returns how many
    were replaced (none with a trafilatura whose xpaths module lacks what they are written from). Idempotent."""
    from trafilatura import xpaths as source

    try:
        written = _stand_ins()
    except AttributeError:  # a trafilatura without the token lists they are written from: its own selectors
        return 0
    by_source = {normalized(stand_in.xpath()): stand_in for stand_in in written}
    replaced = 0
    for list_name in SELECTOR_LISTS:
        expressions = getattr(source, list_name)
        for index, expression in enumerate(expressions):
            if isinstance(expression, StandIn):
                replaced += 1
                continue
            if not isinstance(expression, etree.XPath):  # something else put there: not ours to replace
                continue
            stand_in = by_source.get(normalized(expression.path))
            if stand_in is not None:
                expressions[index] = StandIn(stand_in, expression)
                replaced += 1
    return replaced


def uninstall() -> None:
    """Put trafilatura's own XPath expressions back."""
    from trafilatura import xpaths as source

    for list_name in SELECTOR_LISTS:
        expressions = getattr(source, list_name)
        for index, expression in enumerate(expressions):
            if isinstance(expression, StandIn):
                expressions[index] = expression.original
