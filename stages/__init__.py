"""Stages, one module each (per-document ones, then global ones). `STAGES` maps the names a config may list to their classes.

Importing this package imports none of them: `STAGES` and the base classes load on first use (PEP 562), so that a
process that needs one module of the package (an extraction child needs stages.extraction_engines) does not import
pyarrow, pydantic and every stage. Heavy libraries are imported when a stage is built, not when its module is.
"""

from __future__ import annotations

import importlib
from typing import Any

# In the order a config would usually list them: cheap decisions first (the URL before the page), PII redaction and
# decontamination last, then the global stages, which see the whole run.
_STAGE_CLASSES = (
    ("stages.url_filter", "UrlFilter"), ("stages.html_langid", "HtmlLangId"), ("stages.extract", "Extract"),
    ("stages.langid", "LangId"), ("stages.gopher_repetition", "GopherRepetition"),
    ("stages.gopher_quality", "GopherQuality"), ("stages.c4", "C4"), ("stages.fineweb", "FineWeb"),
    ("stages.word_list", "ToxicWords"), ("stages.classifiers", "ToxicityClassifier"),
    ("stages.classifiers", "QualityClassifier"), ("stages.pii", "Pii"), ("stages.decontaminate", "Decontaminate"),
    ("stages.dedup", "Dedup"), ("stages.tokens.tokenizer", "Tokenizer"), ("stages.tokens.tokenize", "Tokenize"),
    ("stages.train", "Train"),
)
_BASE = ("GlobalStage", "Stage", "StageConfig", "StageKind")

__all__ = ["STAGES", *_BASE]


def __getattr__(name: str) -> Any:
    if name == "STAGES":
        classes = [getattr(importlib.import_module(module), attribute) for module, attribute in _STAGE_CLASSES]
        stages = {stage.name: stage for stage in classes}
        globals()["STAGES"] = stages
        return stages
    if name in _BASE:
        return getattr(importlib.import_module("stages.base"), name)
    raise AttributeError(f"module 'stages' has no attribute {name!r}")
