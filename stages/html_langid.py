"""Language screen on the raw page, before extraction: skip the pages that are plainly in a language the run drops.

Extraction is most of a run's per-document cost (trafilatura: about 35 ms a page here), and most of a crawl is not
in the language a run keeps (Common Crawl is under half English). lid.176 on a sample of the page's visible text (the
body without scripts, styles, comments and tags: 2-3 ms a page) tells those pages apart well enough to leave them
unextracted. The screen is loose on purpose: a page is dropped as `other_language` only when every kept language
scores under `min_probability` in the sample, and the langid stage after extraction still decides on the main text.
On the 879 real pages of ../shared/data at the default 0.01, the screen skips 589 (67%) and loses 1 of the 241 pages
that langid keeps as English after extraction: a German holiday-let page whose English description scored 0.71.

Rows that already hold text (WET, JSONL, Parquet inputs) pass untouched: langid decides on them as cheaply; so do
pages without any visible text (script-only shells), for extract to judge.
The signal `page_lang_score` is the best kept language's probability in the sample, exact down to `min_probability`
(fastText stops ranking below it, which keeps the prediction cheap); a page under it scores 0.
"""

from __future__ import annotations

import html as html_entities
import re
from pathlib import Path

import pyarrow as pa
from pydantic import Field

from pipeline.models import LID176, resolve_model
from pipeline.schema import CHARSET, HTML
from stages.base import Decision, Stage, StageConfig, set_columns, with_outcome
from stages.fasttext_model import FastTextModel
from stages.langid import with_local_lid_model

_BODY = re.compile(r"<body\b", re.IGNORECASE)
# Elements whose content is not prose a reader sees; `<head\b` does not match `<header`.
_HIDDEN = re.compile(r"<(?:(script|style|noscript|template|svg|head)\b|(!--))", re.IGNORECASE)
_CLOSERS = {
    name: re.compile(rf"</{name}\s*>", re.IGNORECASE)
    for name in ("script", "style", "noscript", "template", "svg", "head")
}
_CLOSERS["!--"] = re.compile(r"-->")
_TAG = re.compile(r"<[^>]*>")


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


def visible_text(html: str, max_chars: int = 1_000_000) -> str:
    """The text a reader of the page sees, roughly: the body (its first `max_chars` characters) without scripts,
    styles, comments and tags, entities decoded, whitespace collapsed. Linear in the input: each hidden element is
    found with one search for its opening and one for its closing tag; an unclosed one hides the rest, as in a
    browser."""
    body = _BODY.search(html)
    start = body.start() if body else 0
    html = html[start:start + max_chars]
    pieces, position = [], 0
    while (hidden := _HIDDEN.search(html, position)) is not None:
        pieces.append(html[position:hidden.start()])
        closing = _CLOSERS[(hidden.group(1) or hidden.group(2)).lower()].search(html, hidden.end())
        if closing is None:
            position = len(html)
            break
        position = closing.end()
    pieces.append(html[position:])
    return " ".join(html_entities.unescape(_TAG.sub(" ", " ".join(pieces))).split())


def middle_sample(text: str, chars: int) -> str:
    """`chars` characters from the middle of the text: past the navigation at the top, before the footer."""
    if len(text) <= chars:
        return text
    start = (len(text) - chars) // 2
    return text[start:start + chars]


class HtmlLangId(Stage):
    name = "html_langid"
    Config = HtmlLangIdConfig
    output_fields = (pa.field("page_lang_score", pa.float32()),)
    decisions = (Decision("page_lang_score", "other_language", "min_probability", "below"),)

    @classmethod
    def prepare(cls, config: HtmlLangIdConfig, workspace: Path) -> HtmlLangIdConfig:
        return with_local_lid_model(config)

    def __init__(self, config: HtmlLangIdConfig):
        super().__init__(config)
        from stages.decode import decode_html  # charset_normalizer: loaded by a worker, not by `import stages`

        self._decode = decode_html
        self._model = FastTextModel(resolve_model(config.model, LID176))
        self._keep = set(config.languages)

    def page_score(self, payload: bytes, declared_charset: str | None) -> tuple[float | None, str]:
        """(The best kept language's probability on a sample of the page's visible text, 0 under min_probability;
        the encoding the page was decoded with). The score is None for a page with no visible text, which is not
        this stage's to judge: extract drops it as no_text unless its main text is where the screen does not look."""
        page, encoding = self._decode(payload, declared_charset)
        sample = middle_sample(visible_text(page, self.config.max_html_chars), self.config.sample_chars)
        if not sample:
            return None, encoding
        return self._model.best_of(sample, self._keep, self.config.min_probability), encoding

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
