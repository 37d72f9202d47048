"""The settings of an ablation (`pipeline ablate --config configs/ablate-*.yaml`), validated before any work.

An ablation trains the same models on several variants of the data and compares what they learn: every variant
is tokenized with one tokenizer, cut to one budget of training tokens, and trained at each model size with each
seed; every model is scored in bits per byte on the reference sets and on its own variant's validation split.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipeline.config import Strict
from pipeline.train.settings import ModelSettings, TrainingSettings


class VariantSettings(Strict):
    """One variant: a selection from `run`'s documents by its signals, or another run's output."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.+-]+$", description="Its name in tables and folders.")
    select: dict[str, dict | None] | None = Field(
        None, description="Stages of `run` to apply, each with threshold changes or null (as the run ran it); "
        "{} selects every document the run extracted.")
    run: str | None = Field(None, description="Another run's directory: its output documents are the variant.")

    @model_validator(mode="after")
    def _one_source(self) -> VariantSettings:
        if (self.select is None) == (self.run is None):
            raise ValueError(f"variant {self.name}: give either select (stages of `run`) or run (a run directory)")
        return self


class SizeSettings(ModelSettings):
    name: str = Field(pattern=r"^[A-Za-z0-9_.+-]+$", description="The size's name in tables and folders.")


class ReferenceSettings(Strict):
    """Held-out text the models are scored on: .txt files (cut into pieces at blank lines), .zip archives of .txt
    files, JSONL or Parquet (the `field` column), gzip or not."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.+-]+$")
    paths: list[str] = Field(min_length=1, description="Files or glob patterns.")
    field: str = Field("text", description="The text field of JSONL and Parquet records.")
    max_bytes: int = Field(300_000, ge=1_000, description="UTF-8 bytes scored: a uniform sample of the pieces "
                           "(by a hash of their text) up to this size.")
    piece_chars: int = Field(4_000, ge=100, description="Longest piece a text file is cut into (at blank lines).")


class TokenizerSettings(Strict):
    model: str | None = Field(None, description="A sentencepiece model or tokenizer.json to use; default: train one "
                              "on a uniform sample of every variant's documents together.")
    vocab_size: int = Field(2_000, ge=300)
    sample_documents: int = Field(10_000, ge=1)
    seed: int = Field(0, ge=0)


class AblateConfig(Strict):
    output: str = Field(description="The ablation's directory: data, models, stats/ and report.html.")
    run: str | None = Field(None, description="The run whose documents the `select` variants choose from (it must "
                            "keep its rejects: `rejects: true`).")
    baseline: str | None = Field(None, description="The variant the others are compared with; default: the first.")
    variants: list[VariantSettings] = Field(min_length=2)
    tokenizer: TokenizerSettings = Field(default_factory=TokenizerSettings)
    tokens: int | Literal["auto"] = Field(
        "auto", description="Training tokens per variant (end-of-document tokens included): each variant's "
        "training documents in a seeded random order, the last one cut; auto: the smallest variant's.")
    budgets: list[float] = Field(
        [1.0], min_length=1, description="Shares of `tokens` each variant also trains on, for the scaling view over "
        "data: each a prefix of the same order (3 or more give a fit of loss over tokens); a share s trains "
        "round(s * max_steps) steps, so every budget gets the same number of passes over its data.")
    validation_fraction: float = Field(0.05, gt=0, lt=0.5, description="Share of each variant's documents held out "
                                       "(by a hash of the id, so a document is held out in every variant).")
    validation_documents: int = Field(500, ge=1, description="Held-out documents of each variant scored in bits "
                                      "per byte (a uniform sample).")
    seed: int = Field(0, ge=0, description="Seed of the documents' order (hence the budget's cut).")
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="Training seeds: each variant, each size, each seed.")
    sizes: list[SizeSettings] = Field(min_length=1, description="Model sizes; 3 or more give the scaling fit.")
    training: TrainingSettings = Field(description="Schedule, batch and device, as `pipeline train` (its model is "
                                       "replaced by each size, its seed by each of `seeds`).")
    references: list[ReferenceSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> AblateConfig:
        for kind, names in (("variant", [v.name for v in self.variants]), ("size", [s.name for s in self.sizes]),
                            ("reference set", [r.name for r in self.references])):
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise ValueError(f"{kind} {repeated[0]} is named twice")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must be distinct")
        if len(set(self.budgets)) != len(self.budgets) or not all(0 < share <= 1 for share in self.budgets):
            raise ValueError("budgets must be distinct shares of tokens, each above 0 and at most 1")
        if any(variant.select is not None for variant in self.variants) and self.run is None:
            raise ValueError("variants with select need `run`: the run whose documents they choose from")
        if self.baseline is not None and self.baseline not in [variant.name for variant in self.variants]:
            raise ValueError(f"baseline {self.baseline} is not one of the variants")
        if "validation" in [reference.name for reference in self.references]:
            raise ValueError("reference set name 'validation' is taken by each variant's own held-out documents")
        return self

    @property
    def baseline_name(self) -> str:
        return self.baseline or self.variants[0].name
