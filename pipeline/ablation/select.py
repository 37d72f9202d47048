"""A variant of a run's documents chosen by its signals: the rule stages' thresholds applied again to the signal
columns the run saved, with nothing measured again (the selection step of an ablation, issue 24).

A variant names some of the run's per-document stages, each with settings that change its thresholds (merged over
the run's own settings for that stage), or with none: the stage as the run ran it. Every document the run read
and extracted is a candidate: those it kept (documents/) and those it dropped (rejects/, so the run must keep
`rejects: true`). A candidate is selected when it passes every stage of the variant, in run order:

- a rule stage (stages.text_tools.RuleStage) decides again from its saved signal columns with `text_tools.decide`,
  the function the stage itself decides with, so the selection is what a run with those thresholds would keep;
- a classifier (quality, toxicity) decides again from its saved score with its `threshold`, the one setting that
  may change (another model or label would need the text scored again);
- any other stage (langid, pii, ...) keeps the run's own decision: a document it dropped stays dropped (its
  settings cannot be changed here: a setting for it is refused).

Stages the variant leaves out decide nothing. A document the run dropped at stage k has no signals from the stages
after k: if the variant applies one of those, the document is `undecidable` (counted, not selected), which happens
only when the variant loosens a stage the run applied before a stage it keeps; a run with loose thresholds (or none)
leaves none. A document the run failed on (an error) is never a candidate. Stages that edit the text (c4 removes
lines, pii redacts) measured the text later stages saw: a variant that leaves one out while applying a later stage
decides on signals of the edited text.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError

from pipeline.schema import DROP_REASON, ERROR, TEXT
from stages import STAGES
from stages.base import StageConfig
from stages.classifiers import FastTextClassifier
from stages.text_tools import RuleStage, decide

REJECTED_AT = "stage"  # the rejects' column naming the stage that dropped a document


class VariantError(ValueError):
    """A variant that cannot be selected from the run's signals: a stage the run did not run, or thresholds for a
    stage whose decisions are not made from its signal columns."""


@dataclass
class Variant:
    """A named selection: the stages applied (run order), each with its settings for this variant."""

    name: str
    stages: list[tuple[str, StageConfig]]


@dataclass
class Selection:
    """What a variant selected from a set of documents: how many, why the others were not, and how many could not
    be judged (see the module's docstring)."""

    selected: int = 0
    dropped: Counter = field(default_factory=Counter)  # "<stage>:<reason>" -> documents
    undecidable: int = 0

    def add(self, other: "Selection") -> None:
        self.selected += other.selected
        self.dropped.update(other.dropped)
        self.undecidable += other.undecidable


def make_variant(name: str, run_stages: list[tuple[str, StageConfig]], changes: dict[str, dict | None]) -> Variant:
    """The variant applying the stages named in `changes` (each with setting changes, or None: as the run ran it),
    in the run's order, with the run's settings for each stage updated by the changes."""
    settings = dict(run_stages)
    unknown = sorted(set(changes) - set(settings))
    if unknown:
        raise VariantError(f"variant {name}: stage {unknown[0]} is not one of the run's per-document stages "
                           f"({', '.join(settings)})")
    chosen = []
    for stage, config in run_stages:
        if stage not in changes:
            continue
        update = changes[stage] or {}
        if issubclass(STAGES[stage], FastTextClassifier) and set(update) - {"threshold"}:
            raise VariantError(f"variant {name}: {stage}: only its threshold can change (its score is saved; another "
                               "model or label would score the text again)")
        if update and not issubclass(STAGES[stage], (RuleStage, FastTextClassifier)):
            raise VariantError(f"variant {name}: {stage} decides from more than its signal columns; list it without "
                               "settings to keep the run's own decisions")
        try:
            chosen.append((stage, type(config).model_validate({**config.model_dump(), **update}) if update else config))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            raise VariantError(f"variant {name}: {stage}.{where}: {error['msg']}") from None
    return Variant(name, chosen)


def select(table: pa.Table, variant: Variant, run_order: list[str]) -> tuple[np.ndarray, Selection]:
    """Which rows of a documents/ or rejects/ table (a rejects table has the `stage` column) the variant selects,
    and the counts."""
    rows = table.num_rows
    position = {stage: index for index, stage in enumerate(run_order)}
    if REJECTED_AT in table.column_names:
        rejected_at = np.array([position.get(stage, -1) for stage in table.column(REJECTED_AT).to_pylist()])
        failed = pc.is_valid(table.column(ERROR)).to_numpy(zero_copy_only=False)
    else:
        rejected_at = np.full(rows, len(run_order))  # kept: it passed every stage
        failed = np.zeros(rows, dtype=bool)
    selected = ~failed & pc.is_valid(table.column(TEXT)).to_numpy(zero_copy_only=False)  # not extracted: no text
    counts = Selection()
    undecidable = np.zeros(rows, dtype=bool)
    for stage, settings in variant.stages:
        here = position[stage]
        undecidable |= selected & (rejected_at < here)
        judged = selected & ~undecidable
        if issubclass(STAGES[stage], RuleStage):
            columns = {name: table.column(name).to_pylist() for name in _signal_columns(STAGES[stage], table)}
            reasons = np.array(decide(STAGES[stage].rules, stage, columns, settings), dtype=object)
        elif issubclass(STAGES[stage], FastTextClassifier):
            reasons = _classifier_reasons(STAGES[stage], table, settings.threshold)
        elif DROP_REASON in table.column_names:  # the run's own decision
            reasons = np.where(rejected_at == here, table.column(DROP_REASON).to_numpy(zero_copy_only=False), None)
        else:  # documents the run kept: no stage dropped them
            reasons = np.full(rows, None, dtype=object)
        dropped = judged & (reasons != None)  # noqa: E711 (element-wise)
        counts.dropped.update(f"{stage}:{reason}" for reason in reasons[dropped])
        selected &= ~dropped
    selected &= ~undecidable
    counts.selected = int(selected.sum())
    counts.undecidable = int(undecidable.sum())
    return selected, counts


def _classifier_reasons(stage: type[FastTextClassifier], table: pa.Table, threshold: float) -> np.ndarray:
    """The classifier's decision from its saved score, as FastTextClassifier.process makes it (NaN: no score, the
    document never reached the stage; such rows are undecidable or not selected already)."""
    if stage.score_column not in table.column_names:
        raise VariantError(f"the run's documents have no column {stage.score_column}: was {stage.name} run?")
    scores = table.column(stage.score_column).to_numpy(zero_copy_only=False).astype(float)
    with np.errstate(invalid="ignore"):
        failed = scores > threshold if stage.drop_above else scores < threshold
    return np.where(failed, stage.reason, None)


def _signal_columns(stage: type[RuleStage], table: pa.Table) -> list[str]:
    """The stage's signal columns, all of which the table must hold."""
    names = [output.name for output in stage.output_fields]
    missing = [name for name in names if name not in table.column_names]
    if missing:
        raise VariantError(f"the run's documents have no column {missing[0]}: was {stage.name} run?")
    return names
