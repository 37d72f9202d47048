"""The extraction engines' per-page function, as the extract stage's sandbox child builds it: HTML payload to main
text with trafilatura or resiliparse. Only the standard library at import, so that the child imports the engine it
runs and nothing of the pipeline (pyarrow, pydantic, the other stages).
"""

from __future__ import annotations

from typing import Callable

# How to get an engine that is not installed (trafilatura is a core dependency, resiliparse an extra).
INSTALL = {
    "trafilatura": "pip install -e . (trafilatura is a core dependency)",
    "resiliparse": "pip install resiliparse==2.0.1, or pip install -e '.[resiliparse]'",
}


def make_extractor(
    favor: str, include_tables: bool, include_comments: bool, fallback: bool, engine: str = "trafilatura"
) -> Callable:
    """Build the per-document function (runs in the sandbox child, where the engine is imported):
    (payload, declared charset, url) -> (text or None, encoding the payload was decoded with)."""
    from stages.decode import decode_html

    try:
        main_text = _MAIN_TEXT[engine](favor, include_tables, include_comments, fallback)
    except ImportError as exc:
        raise ImportError(f"{exc}; engine {engine!r} needs: {INSTALL[engine]}") from exc

    def extract(payload: bytes, declared_charset: str | None, url: str | None) -> tuple[str | None, str]:
        html, encoding = decode_html(payload, declared_charset)
        return main_text(html, url), encoding

    return extract


def _trafilatura(favor: str, include_tables: bool, include_comments: bool, fallback: bool) -> Callable:
    import trafilatura

    from stages.trafilatura_selectors import install

    install()  # the same elements as trafilatura's own XPath selectors, found faster

    def main_text(html: str, url: str | None) -> str | None:
        return trafilatura.extract(
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

    return main_text


def _resiliparse(favor: str, include_tables: bool, include_comments: bool, fallback: bool) -> Callable:
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    options = {
        "main_content": True,
        "comments": include_comments,
        "post_meta": favor != "precision",
        "alt_texts": favor == "recall",
        "skip_elements": None if include_tables else ["table"],  # None: resiliparse's own skips only
    }

    def main_text(html: str, url: str | None) -> str | None:
        return extract_plain_text(HTMLTree.parse(html), **options)

    return main_text


_MAIN_TEXT = {"trafilatura": _trafilatura, "resiliparse": _resiliparse}
