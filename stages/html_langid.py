"""Language screen on the raw page, before extraction: skip the pages that are plainly in a language the run drops.

Extraction is most of a run's per-document cost, and most of a crawl is not in the language a run keeps (Common
Crawl is under half English). lid.176 on a sample of the page's visible text (the body without scripts, styles,
comments and tags: far cheaper than extraction) tells those pages apart well enough to leave them unextracted. The
screen is loose on purpose: a page is dropped as `other_language` only when every kept language scores under
`min_probability` in the sample, and the langid stage after extraction still decides on the main text. What it
skips and loses on real pages: README, Performance.

Decoding, parsing and scoring run in a child process killed at a per-page time limit (stages/sandbox.py, as in
extract): the parser is linear, but it is C code that nothing else can interrupt, and one hostile page must not stall
a worker. Rows that already hold text (WET, JSONL, Parquet inputs) pass untouched: langid decides on them as
cheaply; so do the pages the screen cannot judge, for extract to judge under its own limit: pages without any
visible text (script-only shells), pages over the time limit and pages the child fails on (a crash, an exception).
The signal `page_lang_score` is the best kept language's probability in the sample, exact down to `min_probability`
(fastText stops ranking below it, which keeps the prediction cheap); a page under it scores 0.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pyarrow as pa
from lxml import etree
from pydantic import Field

from pipeline.models import LID176, resolve_model
from pipeline.schema import CHARSET, HTML
from stages.base import Decision, Stage, StageConfig, set_columns, with_outcome
from stages.fasttext_model import FastTextModel
from stages.langid import with_local_lid_model
from stages.sandbox import Sandbox, SandboxCrash, SandboxError, SandboxTimeout

_BODY = re.compile(r"<body\b", re.IGNORECASE)
# Elements whose content is not prose a reader sees; the parser lower-cases tag names.
_HIDDEN = ("script", "style", "noscript", "template", "svg", "head", "title")


class HtmlLangIdConfig(StageConfig):
    model: str | None = Field(
        None, description="Path or URL of a fastText language-ID model; default: lid.176.ftz, fetched and cached."
    )
    languages: list[str] = Field(
        default_factory=lambda: ["en"], min_length=1,
        description="Languages the run keeps (lid.176 codes); usually langid's list. A page is skipped when none "
        "of them reaches min_probability on its visible text.",
    )
    min_probability: float = Field(
        0.01, gt=0, le=1,
        description="Loose on purpose: the screen only skips pages that are plainly in another language, and langid "
        "decides on the extracted text. At 0.01, 1 of 241 English pages of the real test pages is lost.",
    )
    sample_chars: int = Field(
        2000, ge=100, description="Characters of visible text, from the middle of the page, that lid.176 reads."
    )
    max_html_chars: int = Field(
        1_000_000, ge=1000, description="Only this much of the page body is read for its visible text."
    )
    time_limit_s: float = Field(
        2.0, gt=0, description="Per-page limit on decoding, parsing and scoring a page; a page over it is passed "
        "on to extract unjudged, as one without visible text is.",
    )


def visible_text(html: str, max_chars: int = 1_000_000) -> str:
    """The text a reader of the page sees, roughly: the body (its first `max_chars` characters) without scripts,
    styles, comments, the head and tags, entities decoded, whitespace collapsed. libxml2's HTML parser (through
    lxml, as trafilatura uses it in extract) tokenizes in linear time: an unclosed script hides the rest, as in a
    browser, and markup nested deeper than the parser's limit (256 open elements) is left unread, as extract leaves
    it."""
    body = _BODY.search(html)
    start = body.start() if body else 0
    parser = etree.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True, no_network=True,
                               collect_ids=False)
    root = etree.fromstring(html[start:start + max_chars].encode(), parser)
    if root is None:  # nothing to parse
        return ""
    etree.strip_elements(root, *_HIDDEN, with_tail=False)
    return " ".join(" ".join(root.itertext()).split())


def middle_sample(text: str, chars: int) -> str:
    """`chars` characters from the middle of the text: past the navigation at the top, before the footer."""
    if len(text) <= chars:
        return text
    start = (len(text) - chars) // 2
    return text[start:start + chars]


def make_page_scorer(model: str, languages: list[str], min_probability: float, sample_chars: int,
                     max_html_chars: int) -> Callable:
    """Build the per-page function (runs in the sandbox child, where the model loads):
    (payload, declared charset) -> (the best kept language's probability on a sample of the page's visible text,
    0 under min_probability; the encoding the page was decoded with). The score is None for a page with no visible
    text, which is not this stage's to judge: extract drops it as no_text unless its main text is where the screen
    does not look."""
    from stages.decode import decode_html

    lid_model = FastTextModel(model)
    kept_languages = set(languages)

    def page_score(payload: bytes, declared_charset: str | None) -> tuple[float | None, str]:
        page, encoding = decode_html(payload, declared_charset)
        sample = middle_sample(visible_text(page, max_html_chars), sample_chars)
        if not sample:
            return None, encoding
        return lid_model.best_of(sample, kept_languages, min_probability), encoding

    return page_score


class HtmlLangId(Stage):
    name = "html_langid"
    Config = HtmlLangIdConfig
    output_fields = (pa.field("page_lang_score", pa.float32()),)
    decisions = (Decision("page_lang_score", "other_language", "min_probability", "below"),)
    file_settings = ("model",)

    @classmethod
    def prepare(cls, config: HtmlLangIdConfig, workspace: Path) -> HtmlLangIdConfig:
        return with_local_lid_model(config)

    def __init__(self, config: HtmlLangIdConfig):
        super().__init__(config)
        options = config.model_dump(include={"languages", "min_probability", "sample_chars", "max_html_chars"})
        options["model"] = str(resolve_model(config.model, LID176))
        self._sandbox = Sandbox("stages.html_langid:make_page_scorer", options, time_limit_s=config.time_limit_s)
        self._sandbox.start()  # the model loads in the child while the worker gets its first unit

    def process(self, docs: pa.Table) -> pa.Table:
        payloads = docs.column(HTML).to_pylist()
        charsets = docs.column(CHARSET).to_pylist()
        scores: list[float | None] = [None] * len(payloads)
        drops: list[str | None] = [None] * len(payloads)
        for row, payload in enumerate(payloads):
            if payload is None:
                continue  # already text: langid decides
            try:
                scores[row], charsets[row] = self._sandbox.call(payload, charsets[row])
            except (SandboxTimeout, SandboxCrash, SandboxError):
                continue  # not judged: extract, under its own limit, decides on the page and counts its failures
            if scores[row] is not None and scores[row] < self.config.min_probability:
                drops[row] = "other_language"
        # The encoding found, as the page's charset: extract decodes with it straight away instead of guessing again
        # (decode_html takes a declared charset before its slow statistical guess, and finds the same encoding).
        docs = set_columns(docs, {"page_lang_score": scores, CHARSET: charsets},
                           {"page_lang_score": pa.float32(), CHARSET: pa.string()})
        none = [None] * docs.num_rows
        return with_outcome(docs, drops, none, none)

    def close(self) -> None:
        self._sandbox.close()
