"""Stages, one module each (per-document ones, then global ones). `STAGES` maps the names a config may list to their classes.

Importing this package is cheap: heavy libraries are imported when a stage is built, not here.
"""

from stages.base import GlobalStage, Stage, StageConfig, StageKind
from stages.c4 import C4
from stages.classifiers import QualityClassifier, ToxicityClassifier
from stages.decontaminate import Decontaminate
from stages.dedup import Dedup
from stages.extract import Extract
from stages.fineweb import FineWeb
from stages.gopher_quality import GopherQuality
from stages.gopher_repetition import GopherRepetition
from stages.html_langid import HtmlLangId
from stages.langid import LangId
from stages.pii import Pii
from stages.tokens.tokenize import Tokenize
from stages.tokens.tokenizer import Tokenizer
from stages.train import Train
from stages.url_filter import UrlFilter
from stages.word_list import ToxicWords

# In the order a config would usually list them: cheap decisions first (the URL before the page), PII redaction and
# decontamination last, then the global stages, which see the whole run.
STAGES: dict[str, type[StageKind]] = {
    stage.name: stage
    for stage in (
        UrlFilter, HtmlLangId, Extract, LangId, GopherRepetition, GopherQuality, C4, FineWeb,
        ToxicWords, ToxicityClassifier, QualityClassifier, Pii, Decontaminate, Dedup, Tokenizer, Tokenize, Train,
    )
}

__all__ = ["STAGES", "GlobalStage", "Stage", "StageConfig", "StageKind"]
