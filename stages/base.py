"""The contract every per-document stage follows.

A stage is built once per worker from its config model (that is where models load) and then called on batches of
documents as `pyarrow.Table`s. It returns the same rows, in the same order, with its signal columns added and its
decision in the outcome columns: `drop_reason` (why the row is not kept) or `error` / `error_detail` (why it could
not be processed). It never removes rows itself, so the framework can count every one: read = kept + dropped +
failed. Stages know nothing about Ray, files or run directories.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Callable, ClassVar, NamedTuple, Sequence, Union, get_args, get_origin

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, model_validator

from pipeline.schema import DROP_REASON, ERROR, ERROR_DETAIL


def takes_only_lists(annotation: Any) -> bool:
    """Whether a field's type takes a list and no single value (`list[str]`, `list[str] | None`)."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, UnionType):
        members = [member for member in get_args(annotation) if member is not type(None)]
        return bool(members) and all(takes_only_lists(member) for member in members)
    return get_origin(annotation) is list


def single_values_as_lists(model: type[BaseModel], data: Any) -> Any:
    """Raw settings in which a single value given where `model` takes only a list is a list of one: `paths: /x` in
    YAML, `--set stages.langid.languages=de`."""
    if not isinstance(data, dict):
        return data
    fixed = dict(data)
    for name, field in model.model_fields.items():
        value = fixed.get(name)
        if isinstance(value, (str, int, float, bool)) and takes_only_lists(field.annotation):
            fixed[name] = [value]
    return fixed


class StageConfig(BaseModel):
    """Base of every stage's settings: unknown keys are errors, so a typo cannot silently keep a default; a single
    value where a list is expected is a list of one."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    @model_validator(mode="before")
    @classmethod
    def _single_values_as_lists(cls, data: Any) -> Any:
        return single_values_as_lists(cls, data)


class StageSetupError(Exception):
    """A stage cannot be set up: a missing file, a model that cannot be fetched. Names the setting at fault."""

    def __init__(self, setting: str, message: str):
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


class Decision(NamedTuple):
    """How one drop reason is decided: from which signal column, against which setting (None: `limit` is fixed),
    dropped `below` or `above` it. For notebooks and the report: a histogram with its threshold line."""

    signal: str
    reason: str
    setting: str | None
    drop_when: str
    limit: float | None = None


class StageKind:
    """What every stage has: a name for configs, a settings model, and a driver-side set-up step."""

    name: ClassVar[str]
    Config: ClassVar[type[StageConfig]]
    decisions: ClassVar[tuple[Decision, ...]] = ()
    # Settings that name a file the workers read (a model, a word list). After `prepare`, the runner stages each
    # into the run directory and the workers build the stage from their node's copy (pipeline/staged_assets.py):
    # a worker never reads a path of the driver's.
    file_settings: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def signal_of(cls, reason: str) -> str | None:
        """The signal column whose value decided a drop reason of this stage (None when no column did)."""
        return next((decision.signal for decision in cls.decisions if decision.reason == reason), None)

    @classmethod
    def thresholds(cls, settings: dict) -> list[Decision]:
        """The stage's decisions with their limits from its settings (a rule switched off by a null is left out)."""
        found = []
        for decision in cls.decisions:
            limit = settings.get(decision.setting) if decision.setting else decision.limit
            if limit is not None and not isinstance(limit, bool):
                found.append(decision._replace(limit=float(limit)))
        return found

    @classmethod
    def prepare(cls, config: StageConfig, workspace: Path) -> StageConfig:
        """Once per run, on the driver, before any worker starts: fetch or build what the stage needs (models,
        lists) into `workspace` or the cache, and check its files, so that a problem stops the run before work
        starts (raise StageSetupError). Returns the settings the workers get (e.g. a model URL made a local path);
        the files named by `file_settings` must then be local files of the driver's.
        """
        return config


@dataclass
class GlobalContext:
    """What the runner hands a global stage's `run`: the run directory, the documents it reads, how wide to run
    (`workers`, and `options`: what each of its Ray tasks asks for), whether it runs in this process without Ray,
    whether rejected documents are kept, where it reports its steps, and how many nodes the cluster has."""

    run: Any  # pipeline.run_dir.RunDir
    source: Any  # a StoragePath: the documents folder it reads
    workers: int = 1
    options: dict = dataclass_field(default_factory=dict)
    in_process: bool = False
    rejects: bool = False
    step: Callable = lambda *args: None
    progress: Any = None  # pipeline.progress.RunProgress, for a stage that shows its own counts (train)
    nodes: int = 1  # alive nodes of the Ray cluster: with several, nothing heavy runs in the driver's process


class GlobalStage(StageKind):
    """A stage over the whole run at once (deduplication, tokenizer training, tokenization, training). Its `run`
    composes Ray Data and Ray tasks from the pure functions of its modules and writes its outputs and its
    completion marker into `directory`; the runner calls it through the registry, once its inputs are there and
    its outputs are not current. It is listed after the per-document stages and reads what they kept."""

    # Its folder in the run directory, which holds its outputs and its completion marker (_done.json).
    directory: ClassVar[str]
    # Whether it writes documents (a documents/ folder in `directory`) that later stages read instead.
    writes_documents: ClassVar[bool] = False
    # Whether it reads documents (the run's, or those of an earlier stage that writes them); train reads shards.
    reads_documents: ClassVar[bool] = True
    # Outputs outside `directory` (paths relative to the run directory), removed with it when its input changed.
    other_outputs: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def run(cls, settings: StageConfig, context: GlobalContext) -> None:
        """Do the stage's work over context.source into context.run (a run that can be resumed: what it wrote
        atomically stays)."""
        raise NotImplementedError(f"global stage {cls.name} has no run")


class Stage(StageKind):
    """A per-document stage: subclasses set `name`, `Config`, `output_fields` and implement `process`."""

    # Columns this stage adds to the documents it keeps (written to the output files).
    output_fields: ClassVar[tuple[pa.Field, ...]] = ()

    def __init__(self, config: StageConfig):
        self.config = config

    def __call__(self, docs: pa.Table) -> pa.Table:
        return self.process(docs)

    def process(self, docs: pa.Table) -> pa.Table:
        raise NotImplementedError

    def counts(self, outcome: pa.Table) -> dict:
        """What this stage counts in one of its output batches beyond kept, dropped and failed, as nested dicts with
        integer leaves and string keys ({"gsm8k": {"documents": 2, "items": {"17": 1}}}): summed over batches, units
        and workers into the stage's tally (stats.add_counts), saved in the units' markers and the run's summary.
        Small by design: per value a run can hold few of, never per document. Most stages count nothing."""
        return {}

    def close(self) -> None:
        """Release what the stage holds (child processes, models); called once when the worker is done."""


def set_columns(docs: pa.Table, columns: dict[str, Sequence | pa.Array], types: dict[str, pa.DataType]) -> pa.Table:
    """Add or replace columns by name, with explicit types so every batch has the same schema."""
    for name, values in columns.items():
        array = values if isinstance(values, pa.Array) else pa.array(values, type=types[name])
        index = docs.schema.get_field_index(name)
        field = pa.field(name, array.type)
        docs = docs.set_column(index, field, array) if index >= 0 else docs.append_column(field, array)
    return docs


def with_outcome(
    docs: pa.Table,
    drop_reasons: Sequence[str | None],
    errors: Sequence[str | None],
    error_details: Sequence[str | None],
) -> pa.Table:
    """Set the outcome columns of a batch: one entry per row, None where the row is kept."""
    return set_columns(
        docs,
        {DROP_REASON: drop_reasons, ERROR: errors, ERROR_DETAIL: error_details},
        {DROP_REASON: pa.string(), ERROR: pa.string(), ERROR_DETAIL: pa.string()},
    )
