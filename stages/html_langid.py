"""Language screen on the raw page, before extraction: skip the pages that are plainly in a language the run drops.

Extraction is most of a run's per-document cost, and most of a crawl is not in the language a run keeps (Common
Crawl is under half English). lid.176 on a sample of the page's visible text (the body without scripts, styles,
comments and tags: far cheaper than extraction) tells those pages apart well enough to leave them unextracted. The
screen is loose on purpose: a page is dropped as `other_language` only when every kept language scores under
`min_probability` in the sample, and the langid stage after extraction still decides on the main text. What it
skips and loses on real pages: README, Performance.

The visible text comes from a scan of the raw bytes, not a parse: find the hidden elements and comments, cut them
out, replace tags by spaces, all with byte searches and regular expressions that match in time linear in the bytes
read (`max_html_bytes` of the body at most), so the screen runs in the worker itself, without a child process or a
time limit, and a hostile page costs a constant factor more than prose. Only the sample is decoded and its entities
resolved. Rows that already hold text (WET, JSONL, Parquet inputs) pass untouched: langid decides on them as
cheaply; so do the pages without any visible text (script-only shells), for extract to judge. The signal
`page_lang_score` is the best kept language's probability in the sample, exact down to `min_probability`
(fastText stops ranking below it, which keeps the prediction cheap); a page under it scores 0.
"""

from __future__ import annotations

import functools
import html as html_entities
import re
from pathlib import Path

import pyarrow as pa
from pydantic import Field

from pipeline.models import LID176, resolve_model
from pipeline.schema import CHARSET, HTML
from stages.base import Decision, Stage, StageConfig, set_columns, with_outcome
from stages.decode import decode_html
from stages.fasttext_model import FastTextModel
from stages.langid import with_local_lid_model

_BODY = re.compile(rb"<body\b", re.IGNORECASE)
# Elements whose content is not prose a reader sees, and comments; matched on the lower-cased bytes.
_HIDDEN_START = re.compile(rb"<(script|style|noscript|template|svg|head|title)\b|<!--")
# A tag: `<` then a letter, `/`, `!` or `?` (a lone `<` in prose is text, as in a browser), up to the next `>` or
# the end. `[^>]*` takes `<` too and the `>` is optional, so every match ends where the scan stops: linear time.
_TAG = re.compile(rb"<[A-Za-z/!?][^>]*>?")
# The sample is cut from this many times `sample_chars` bytes around the middle of the visible bytes.
_WINDOW_FACTOR = 4


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
        1000, ge=100, description="Characters of visible text, from the middle of the page, that lid.176 reads."
    )
    max_html_bytes: int = Field(
        1_000_000, ge=1000, description="Only this many bytes of the page body are read for its visible text."
    )


def visible_bytes(page: bytes, max_bytes: int = 1_000_000) -> bytes:
    """The text a reader of the page sees, roughly, still as the page's bytes: the body (its first `max_bytes`)
    without scripts, styles, templates, svg, the head, the title and comments, tags replaced by spaces; whitespace
    and entities as they are. An unclosed hidden element or comment hides the rest, as in a browser. `page` must be
    in an encoding where `<` and `>` are those bytes wherever they occur (UTF-8 and single-byte encodings)."""
    body = _BODY.search(page)
    start = body.start() if body else 0
    page = page[start:start + max_bytes]
    lowered = page.lower()
    shown: list[bytes] = []
    position = 0
    while (hidden := _HIDDEN_START.search(lowered, position)) is not None:
        shown.append(page[position:hidden.start()])
        name = hidden.group(1)
        if name is None:
            end = lowered.find(b"-->", hidden.end())
            position = end + 3 if end >= 0 else len(page)
        else:
            end = lowered.find(b"</" + name, hidden.end())
            close = lowered.find(b">", end) if end >= 0 else -1
            position = close + 1 if close >= 0 else len(page)
    shown.append(page[position:])
    return _TAG.sub(b" ", b"".join(shown))


def visible_text(page: bytes, encoding: str = "utf-8", max_bytes: int = 1_000_000) -> str:
    """The whole visible text of a page, decoded, entities resolved, whitespace collapsed."""
    return _readable(visible_bytes(page, max_bytes), encoding)


def middle_sample(text: str, chars: int) -> str:
    """`chars` characters from the middle of the text: past the navigation at the top, before the footer."""
    if len(text) <= chars:
        return text
    start = (len(text) - chars) // 2
    return text[start:start + chars]


def sample_of(visible: bytes, chars: int, encoding: str) -> str:
    """`chars` characters from the middle of a page's visible bytes, decoded: only a window around the middle is
    decoded, unless whitespace fills so much of it that it holds too little text; then all of it is."""
    window = _WINDOW_FACTOR * chars
    if len(visible) > window:
        middle = len(visible) // 2
        around = visible[middle - window // 2:middle + window // 2]
        if sum(map(len, around.split())) >= chars:  # enough text in it, whatever the whitespace
            visible = around
    return middle_sample(_readable(visible, encoding), chars)


def _readable(visible: bytes, encoding: str) -> str:
    return " ".join(html_entities.unescape(visible.decode(encoding, errors="ignore")).split())


@functools.cache
def _scans_as_bytes(encoding: str) -> bool:
    """Whether a page in this encoding can be scanned byte by byte: UTF-8, or one byte per character."""
    return encoding == "utf-8" or len(bytes(range(256)).decode(encoding, errors="replace")) == 256


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
        self._model = FastTextModel(resolve_model(config.model, LID176))
        self._languages = set(config.languages)

    def page_score(self, payload: bytes, declared_charset: str | None) -> tuple[float | None, str]:
        """(the best kept language's probability on a sample of the page's visible text, 0 under min_probability;
        the encoding the page was decoded with). The score is None for a page with no visible text, which is not
        this stage's to judge: extract drops it as no_text unless its main text is where the screen does not look."""
        text, encoding = decode_html(payload, declared_charset)
        scanned, scanned_encoding = payload, encoding
        if not _scans_as_bytes(encoding):  # UTF-16 and the like: scan the decoded text's UTF-8
            scanned, scanned_encoding = text.encode("utf-8"), "utf-8"
        sample = sample_of(visible_bytes(scanned, self.config.max_html_bytes), self.config.sample_chars,
                           scanned_encoding)
        if not sample:
            return None, encoding
        return self._model.best_of(sample, self._languages, self.config.min_probability), encoding

    def process(self, docs: pa.Table) -> pa.Table:
        payloads = docs.column(HTML).to_pylist()
        charsets = docs.column(CHARSET).to_pylist()
        scores: list[float | None] = [None] * len(payloads)
        drops: list[str | None] = [None] * len(payloads)
        for row, payload in enumerate(payloads):
            if payload is None:
                continue  # already text: langid decides
            scores[row], charsets[row] = self.page_score(payload, charsets[row])
            if scores[row] is not None and scores[row] < self.config.min_probability:
                drops[row] = "other_language"
        # The encoding found, as the page's charset: extract decodes with it straight away instead of guessing again
        # (decode_html takes a declared charset before its slow statistical guess, and finds the same encoding).
        docs = set_columns(docs, {"page_lang_score": scores, CHARSET: charsets},
                           {"page_lang_score": pa.float32(), CHARSET: pa.string()})
        none = [None] * docs.num_rows
        return with_outcome(docs, drops, none, none)
