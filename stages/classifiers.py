"""fastText document classifiers as filters: toxicity (drop above a threshold) and quality (drop below one).

Both score every document with the probability of one label of a model trained by `pipeline train-classifier`
(or any fastText supervised model), write it as a column, and decide by the threshold. The model is a path or URL;
when the path does not exist yet and `train_from` names labelled data, the model is trained there once, on the
driver, before the run starts (handy for a self-contained config such as the quickstart).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
from pydantic import Field

from stages.fasttext_training import TrainingSettings, read_labelled_file, train_classifier
from pipeline.models import ModelUnavailable, is_url, resolve_model
from pipeline.schema import TEXT
from stages.base import Decision, Stage, StageConfig, StageSetupError, set_columns, with_outcome
from stages.fasttext_model import FastTextModel, fasttext_line


class ClassifierConfig(StageConfig):
    model: str = Field(description="Path or URL of a fastText classifier (.bin or .ftz).")
    label: str = Field(description="The label whose probability is the score.")
    threshold: float = Field(0.5, ge=0, le=1, description="The decision threshold on the score.")
    train_from: str | None = Field(
        None,
        description="Labelled CSV/JSONL (text, label) to train the model from when `model` does not exist yet.",
    )


class ToxicityConfig(ClassifierConfig):
    label: str = Field("toxic", description="The label whose probability is the score.")
    threshold: float = Field(0.5, ge=0, le=1, description="Documents scoring above it are dropped as toxic.")


class QualityConfig(ClassifierConfig):
    label: str = Field("hq", description="The label whose probability is the score (the high-quality class).")
    threshold: float = Field(0.5, ge=0, le=1, description="Documents scoring below it are dropped as low_quality.")


class FastTextClassifier(Stage):
    """Shared mechanism; subclasses say which side of the threshold is dropped and how the reason reads."""

    score_column: ClassVar[str]
    drop_above: ClassVar[bool]
    reason: ClassVar[str]
    file_settings = ("model",)

    @classmethod
    def prepare(cls, config: ClassifierConfig, workspace: Path) -> ClassifierConfig:
        if not is_url(config.model) and not Path(config.model).is_file():
            if config.train_from is None:
                raise StageSetupError("model", f"{config.model} does not exist (and no train_from is set)")
            if not Path(config.train_from).is_file():
                raise StageSetupError("train_from", f"{config.train_from} does not exist")
            train_classifier(read_labelled_file(config.train_from), config.model, TrainingSettings())
        try:
            path = resolve_model(config.model)
        except ModelUnavailable as exc:
            raise StageSetupError("model", str(exc)) from None
        model = FastTextModel(path)
        if config.label not in model.labels:
            raise StageSetupError("label", f"{config.label!r} is not a label of {config.model} ({model.labels})")
        return config.model_copy(update={"model": str(path)})

    def __init__(self, config: ClassifierConfig):
        super().__init__(config)
        self._model = FastTextModel(resolve_model(config.model))

    def process(self, docs: pa.Table) -> pa.Table:
        # rounded to the column's float32 before deciding, so that the saved score decides the same way again
        # (pipeline/ablation/select.py re-applies thresholds to it)
        scores = [float(np.float32(self._model.probability(fasttext_line(text or ""), self.config.label)))
                  for text in docs.column(TEXT).to_pylist()]
        threshold = self.config.threshold
        drops = [
            self.reason if (score > threshold if self.drop_above else score < threshold) else None for score in scores
        ]
        docs = set_columns(docs, {self.score_column: scores}, {self.score_column: pa.float32()})
        none = [None] * docs.num_rows
        return with_outcome(docs, drops, none, none)


class ToxicityClassifier(FastTextClassifier):
    name = "toxicity_classifier"
    Config = ToxicityConfig
    score_column = "toxicity_score"
    output_fields = (pa.field("toxicity_score", pa.float32()),)
    drop_above = True
    reason = "toxic"
    decisions = (Decision("toxicity_score", "toxic", "threshold", "above"),)


class QualityClassifier(FastTextClassifier):
    name = "quality_classifier"
    Config = QualityConfig
    score_column = "quality_score"
    output_fields = (pa.field("quality_score", pa.float32()),)
    drop_above = False
    reason = "low_quality"
    decisions = (Decision("quality_score", "low_quality", "threshold", "below"),)
