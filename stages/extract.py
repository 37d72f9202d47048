"""HTML to main text with trafilatura, one killable child process per worker.

Rows that already hold text (WET conversions, JSONL/Parquet corpora) pass through untouched. An HTML row gets its
`text` and the `charset` it was decoded with, or is dropped as `no_text` when trafilatura finds no main content
(navigation-only pages, empty shells), or fails as `extract_timeout` / `extract_crashed` / the exception's name.
"""

from __future__ import annotations

from typing import Callable, Literal

import pyarrow as pa
from pydantic import Field

from pipeline.schema import CHARSET, HTML, TEXT
from stages.base import Stage, StageConfig, set_columns, with_outcome
from stages.sandbox import Sandbox, SandboxCrash, SandboxError, SandboxTimeout


class ExtractConfig(StageConfig):
    """trafilatura settings (https://trafilatura.readthedocs.io/en/latest/usage-python.html)."""

    favor: Literal["precision", "balanced", "recall"] = Field(
        "precision", description="precision: less text, less boilerplate (FineWeb's choice); recall: more text."
    )
    include_tables: bool = Field(True, description="Keep text inside <table> elements.")
    include_comments: bool = Field(False, description="Keep user comments below articles.")
    fallback: bool = Field(
        False,
        description="When trafilatura's own result looks poor, also run readability and jusText and keep the "
        "best. Better recall on odd layouts, about 1.5x slower.",
    )
    time_limit_s: float = Field(5.0, gt=0, description="Per-document limit; a page over it is failed as a timeout.")
    min_chars: int = Field(1, ge=1, description="Extracted text shorter than this is dropped as no_text.")


def make_extractor(favor: str, include_tables: bool, include_comments: bool, fallback: bool) -> Callable:
    """Build the per-document function (runs in the sandbox child, where trafilatura is imported)."""
    import trafilatura

    from stages.decode import decode_html

    def extract(payload: bytes, declared_charset: str | None, url: str | None) -> tuple[str | None, str]:
        html, encoding = decode_html(payload, declared_charset)
        text = trafilatura.extract(
            html,
            url=url,
            fast=not fallback,
            favor_precision=favor == "precision",
            favor_recall=favor == "recall",
            include_tables=include_tables,
            include_comments=include_comments,
            deduplicate=False,  # trafilatura's cache is order-dependent: results would differ between runs
            output_format="txt",
        )
        return text, encoding

    return extract


class Extract(Stage):
    name = "extract"
    Config = ExtractConfig
    output_fields = (pa.field(TEXT, pa.string()), pa.field(CHARSET, pa.string()))

    def __init__(self, config: ExtractConfig):
        super().__init__(config)
        self._sandbox = Sandbox(
            "stages.extract:make_extractor",
            {
                "favor": config.favor,
                "include_tables": config.include_tables,
                "include_comments": config.include_comments,
                "fallback": config.fallback,
            },
            time_limit_s=config.time_limit_s,
        )
        self._sandbox.start()  # trafilatura loads in the child while the worker gets its first unit

    def process(self, docs: pa.Table) -> pa.Table:
        payloads = docs.column(HTML).to_pylist()
        texts = docs.column(TEXT).to_pylist()
        charsets = docs.column(CHARSET).to_pylist()
        urls = docs.column("url").to_pylist()
        drops: list[str | None] = [None] * len(payloads)
        errors: list[str | None] = [None] * len(payloads)
        details: list[str | None] = [None] * len(payloads)
        for row, payload in enumerate(payloads):
            if payload is None:
                continue  # already text
            try:
                texts[row], charsets[row] = self._sandbox.call(payload, charsets[row], urls[row])
            except SandboxTimeout as exc:
                errors[row], details[row] = "extract_timeout", str(exc)
            except SandboxCrash as exc:
                errors[row], details[row] = "extract_crashed", str(exc)
            except SandboxError as exc:
                errors[row], details[row] = f"extract_{exc.kind}", exc.message
        for row, text in enumerate(texts):
            if errors[row] is None and (text is None or len(text.strip()) < self.config.min_chars):
                drops[row], texts[row] = "no_text", None
        docs = set_columns(
            docs,
            {TEXT: texts, CHARSET: charsets, HTML: pa.nulls(len(payloads), pa.binary())},  # payloads no longer needed
            {TEXT: pa.string(), CHARSET: pa.string()},
        )
        return with_outcome(docs, drops, errors, details)

    def close(self) -> None:
        self._sandbox.close()
