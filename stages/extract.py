"""HTML to main text with trafilatura or resiliparse, one killable child process per worker.

Rows that already hold text (WET conversions, JSONL/Parquet corpora) pass through untouched. An HTML row gets its
`text` and the `charset` it was decoded with, or is dropped as `no_text` when the extractor finds no main content
(navigation-only pages, empty shells), or fails as `extract_timeout` / `extract_crashed` / the exception's name.
Both engines get the same decoded text (stages/decode.py) and run under the same sandbox and time limit; only the
HTML-to-text step differs. trafilatura runs with stand-ins for its XPath selectors (stages/trafilatura_selectors.py):
the same text, sooner. `python scripts/bench_extractors.py` compares them for speed and quality.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

import pyarrow as pa
from pydantic import Field, model_validator

from pipeline.schema import CHARSET, HTML, TEXT
from stages.base import Stage, StageConfig, StageSetupError, set_columns, with_outcome
from stages.extraction_engines import INSTALL, make_extractor
from stages.sandbox import Sandbox, SandboxCrash, SandboxError, SandboxTimeout

__all__ = ["Extract", "ExtractConfig", "make_extractor"]

class ExtractConfig(StageConfig):
    """Extractor settings. trafilatura: https://trafilatura.readthedocs.io/en/latest/usage-python.html;
    resiliparse: https://resiliparse.chatnoir.eu/en/latest/man/extract/html2text.html."""

    engine: Literal["trafilatura", "resiliparse"] = Field(
        "trafilatura",
        description="trafilatura: the cleaner text (FineWeb's extractor). resiliparse: a native HTML parser "
        "(Lexbor) with simple main-content rules, 6-8x faster but keeping more boilerplate (on "
        "trafilatura's evaluation snippets, precision 0.80 against 0.92, recall 0.94 against 0.89: README, "
        "Performance); it needs pip install resiliparse==2.0.1. favor, include_tables and include_comments apply "
        "to both engines, fallback to trafilatura only.",
    )
    favor: Literal["precision", "balanced", "recall"] = Field(
        "precision",
        description="precision: less text, less boilerplate (FineWeb's choice); recall: more text. resiliparse: "
        "precision leaves out post metadata (dates, authors) and image alt texts, balanced keeps the metadata, "
        "recall both.",
    )
    include_tables: bool = Field(True, description="Keep text inside <table> elements.")
    include_comments: bool = Field(False, description="Keep user comments below articles.")
    fallback: bool = Field(
        False,
        description="trafilatura only: when its own result looks poor, also run readability and jusText and keep "
        "the best. Better recall on odd layouts, about 1.5x slower.",
    )
    time_limit_s: float = Field(5.0, gt=0, description="Per-document limit; a page over it is failed as a timeout.")
    min_chars: int = Field(1, ge=1, description="Extracted text shorter than this is dropped as no_text.")

    @model_validator(mode="after")
    def _fallback_is_trafilatura_only(self) -> ExtractConfig:
        if self.fallback and self.engine != "trafilatura":
            raise ValueError(f"fallback runs trafilatura's own fallbacks; it does not apply to engine {self.engine!r}")
        return self

    def extractor_options(self) -> dict:
        """make_extractor's keyword arguments for these settings."""
        return self.model_dump(include={"engine", "favor", "include_tables", "include_comments", "fallback"})


class Extract(Stage):
    name = "extract"
    Config = ExtractConfig
    output_fields = (pa.field(TEXT, pa.string()), pa.field(CHARSET, pa.string()))

    def __init__(self, config: ExtractConfig):
        super().__init__(config)
        self._sandbox = Sandbox(
            "stages.extraction_engines:make_extractor", config.extractor_options(), time_limit_s=config.time_limit_s
        )
        self._sandbox.start()  # the engine loads in the child while the worker gets its first unit

    @classmethod
    def prepare(cls, config: ExtractConfig, workspace: Path) -> ExtractConfig:
        """An engine that is not installed stops the run before any work, not at each worker's first page."""
        if importlib.util.find_spec(config.engine) is None:
            raise StageSetupError("engine", f"{config.engine} is not installed: {INSTALL[config.engine]}")
        return config

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
