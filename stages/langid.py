"""Language identification with fastText lid.176: `lang` and `lang_score` for every document, then a keep-list.

The model is a configured path or URL, or by default lid.176.ftz fetched once into the cache (see pipeline.models).
Decisions: `other_language` when the top language is not in `languages`, `low_score` when it is but its
probability is under `min_score`. Re-thresholding needs only the two signal columns.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from pydantic import Field

from pipeline.models import LID176, ModelUnavailable, resolve_model
from pipeline.schema import TEXT
from stages.base import Decision, Stage, StageConfig, StageSetupError, set_columns, with_outcome
from stages.fasttext_model import FastTextModel, fasttext_line


class LangIdConfig(StageConfig):
    model: str | None = Field(
        None, description="Path or URL of a fastText language-ID model; default: lid.176.ftz, fetched and cached."
    )
    languages: list[str] | None = Field(
        default_factory=lambda: ["en"], min_length=1,
        description="Languages to keep (lid.176 codes: en, de, fr, ...); null: all.",
    )
    min_score: float = Field(0.65, ge=0, le=1, description="Documents whose top language scores lower are dropped.")


def with_local_lid_model(config: StageConfig) -> StageConfig:
    """The settings with `model` made a local file (the cached lid.176 by default), for the workers; a model that
    cannot be had stops the run before any work."""
    try:
        return config.model_copy(update={"model": str(resolve_model(config.model, LID176))})
    except ModelUnavailable as exc:
        raise StageSetupError("model", str(exc)) from None


class LangId(Stage):
    name = "langid"
    Config = LangIdConfig
    output_fields = (pa.field("lang", pa.string()), pa.field("lang_score", pa.float32()))
    decisions = (Decision("lang_score", "low_score", "min_score", "below"),)
    file_settings = ("model",)

    @classmethod
    def prepare(cls, config: LangIdConfig, workspace: Path) -> LangIdConfig:
        return with_local_lid_model(config)

    def __init__(self, config: LangIdConfig):
        super().__init__(config)
        self._model = FastTextModel(resolve_model(config.model, LID176))
        self._keep = set(config.languages) if config.languages is not None else None

    def process(self, docs: pa.Table) -> pa.Table:
        languages, scores, drops = [], [], []
        for text in docs.column(TEXT).to_pylist():
            language, score = self._model.top(fasttext_line(text or "", lower=False))
            languages.append(language)
            scores.append(score)
            if self._keep is not None and language not in self._keep:
                drops.append("other_language")
            elif score < self.config.min_score:
                drops.append("low_score")
            else:
                drops.append(None)
        docs = set_columns(docs, {"lang": languages, "lang_score": scores}, {"lang": pa.string(), "lang_score": pa.float32()})
        none = [None] * docs.num_rows
        return with_outcome(docs, drops, none, none)
