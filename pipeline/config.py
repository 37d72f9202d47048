"""Run configuration: YAML validated by typed models, with errors that name the file and the key path.

A run config says where the input is, which stages run in which order with which settings, and where the run
directory goes. Stage settings are the stage's own model (next to its code, in stages/). Everything is checked
before any work starts: an unknown key, a wrong type, or an input path that matches no file is a `ConfigError`.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, ValidationInfo, create_model,
                      field_validator, model_validator)

from pipeline.io.remote import is_uri
from pipeline.io.storage import REMOTE_SCHEMES, StoragePath, storage_path
from pipeline.io.units import expand_paths
from stages import STAGES, GlobalStage, StageConfig
from stages.base import single_values_as_lists

ON_WORKER = "on_worker"  # validation context flag: skip the checks that only the driver's filesystem can answer


class ConfigError(Exception):
    """A config problem, worded for the user: one line, naming the file and the key path."""


class Strict(BaseModel):
    # Unknown keys are errors; `name: 2024` is still a name; `paths: /x` is a list of one.
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    @model_validator(mode="before")
    @classmethod
    def _single_values_as_lists(cls, data: Any) -> Any:
        return single_values_as_lists(cls, data)


class DemoCrawlInput(Strict):
    """A small crawl the project writes itself (articles, boilerplate, duplicates, languages, PII, spam)."""

    pages: int = Field(300, ge=1, description="HTML pages in the crawl.")
    files: int = Field(2, ge=1, description="WARC files to spread them over.")
    seed: int = Field(0, description="Same seed, same bytes.")
    directory: str | None = Field(None, description="Where to write it; default: <run dir>/demo-crawl.")


class TextFieldsConfig(Strict):
    """Field names in JSONL/Parquet input."""

    text: str = Field("text", description="The text to process (a string); a record without it fails as missing_text.")
    id: str | None = Field("id", description="Kept as the document id; where absent, an id is made from file and offset.")
    url: str | None = Field("url", description="Kept as url, and gives host and domain.")
    date: str | None = Field("date", description="ISO 8601 or 14-digit date, kept as date.")


class CommonCrawlInput(Strict):
    """Files of a Common Crawl crawl, picked from its paths manifest and read where they are, by byte range."""

    crawl: str = Field(pattern=r"^CC-MAIN-\d{4}-\d{2}$", description="Crawl id, e.g. CC-MAIN-2024-51.")
    kind: Literal["warc", "wet"] = Field("warc", description="warc: raw pages (extract them); wet: Common Crawl's "
                                         "own plain text (no extraction).")
    base_url: str = Field("https://data.commoncrawl.org", description="Where crawl-data/ lives: https://, http://, "
                          "or a pyarrow filesystem URI (s3://commoncrawl with credentials, file:///mirror).")
    segments: list[str] | None = Field(None, description="Only files of these segments (e.g. '1733066035857.23').")
    sample: float | None = Field(None, gt=0, le=1, description="Keep this share of the files, chosen by a seeded "
                                 "hash of their path (the same files every time).")
    limit: int | None = Field(None, ge=1, description="At most this many files, the first in manifest order.")
    seed: int = Field(0, ge=0, description="Seed of `sample`.")
    cache_dir: str | None = Field(None, description="Where the paths manifest is kept (the one file downloaded); "
                                  "default: $CCPIPELINE_CACHE/commoncrawl (~/.cache/ccpipeline/commoncrawl).")
    parallel_downloads: int = Field(4, ge=1, description="Files sized (HEAD requests) at once while planning.")
    retries: int = Field(5, ge=1, description="Attempts at the manifest and at each file's size while planning "
                         "(workers retry their byte ranges on their own).")


class InputConfig(Strict):
    """What to read: files, or the generated demo crawl."""

    paths: list[str] = Field(default_factory=list, description="Files, globs (** allowed) or directories; or "
                             "URIs (https://, s3://bucket/prefix/*.warc.gz, gs://, file://), read in place by byte range. "
                             "A folder or glob reads only data files (by extension and first bytes) and lists the "
                             "others as skipped; a file named by its own path is always read.")
    demo_crawl: DemoCrawlInput | None = Field(None, description="Generate and read the demo crawl.")
    commoncrawl: CommonCrawlInput | None = Field(None, description="Read files of a Common Crawl crawl "
                                                 "where they are.")
    format: Literal["auto", "warc", "jsonl", "parquet"] = Field(
        "auto", description="auto: by file name, then by content. warc covers ARC, WARC/0.17, WET."
    )
    unit_mb: float | Literal["auto"] = Field(
        "auto",
        description="Size of a unit of work (a byte range of a big file). auto: the total input over 8 units per "
        "worker (the cluster's CPUs over ray.cpus_per_worker, or ray.workers if fewer; 1 for a run in this process), "
        "between 1 MB and 1 GB: a small input keeps every worker busy, and a Common Crawl dump (about 100 TB) makes "
        "about 100,000 units of one whole WARC each, not millions.",
    )
    max_payload_mb: float = Field(5.0, gt=0, description="Bigger records are skipped as too_large, unread: HTTP "
                                  "payloads, WET records, JSONL lines and Parquet text cells.")
    html_content_types: list[str] = Field(
        default_factory=lambda: ["text/html", "application/xhtml+xml"],
        description="Content types extracted as HTML; other responses are skipped as not_html.",
    )
    fields: TextFieldsConfig = Field(default_factory=TextFieldsConfig, description="Field names in JSONL/Parquet input.")

    @field_validator("paths")
    @classmethod
    def _paths_match_files(cls, paths: list[str], info: ValidationInfo) -> list[str]:
        if info.context and info.context.get(ON_WORKER):
            return paths  # the driver checked them and planned the units, which name their files
        for index, pattern in enumerate(paths):
            if not is_uri(pattern) and not expand_paths(pattern):  # URIs are listed when the run starts
                raise ValueError(f"[{index}] {pattern!r} matches no file")
        return paths

    @field_validator("unit_mb")
    @classmethod
    def _positive_unit(cls, value: float | str) -> float | str:
        if value != "auto" and value <= 0:
            raise ValueError("must be 'auto' or a positive number of megabytes")
        return value


class StageResources(Strict):
    """What each Ray task of one global stage asks for, so that Ray places it on a node that can hold it."""

    cpus: float = Field(1.0, gt=0, description="CPUs per task; the stage's parallelism is the cluster's CPUs over "
                        "this. For tokenizer, also the threads sentencepiece trains with (in one task).")
    memory_mb: int | None = Field(None, ge=64, description="Memory per task (Ray schedules by it; none: no request).")
    gpus: float = Field(0, ge=0, description="GPUs per task. For train: above 0, training runs as one Ray task on "
                        "a node with a GPU (use a run directory every node reaches, such as s3://) instead of in "
                        "the driver.")

    def ray_options(self) -> dict:
        options: dict = {"num_cpus": self.cpus}
        if self.memory_mb:
            options["memory"] = self.memory_mb * 1024 * 1024
        if self.gpus:
            options["num_gpus"] = self.gpus
        return options


class RayConfig(Strict):
    """Where and how wide to run. Execution settings: a resumed run may change them."""

    address: str | None = Field(
        None, description="Ray cluster to join (also --address / RAY_ADDRESS); none: start an embedded local Ray."
    )
    workers: int | None = Field(None, ge=1, description="Parallel workers; default: one per CPU of the cluster.")
    object_store_mb: int | None = Field(None, ge=64, description="Object store of the embedded Ray.")
    in_process_max_mb: float = Field(
        4.0, ge=0, description="With no cluster to join and no Ray already running in this process, a run whose "
        "input files total at most this many MB, and whose only global stage (if any) is dedup, runs in this "
        "process without starting Ray: Ray's start-up and shutdown (4-6 s) are more than such a run's work, and "
        "the output is the same. 0: always Ray.")
    unit_timeout_s: float = Field(
        1800.0, gt=0, description="A unit still running after this many seconds has its worker killed (and "
        "restarted) and is tried once more; a second time it fails by name, with its file and byte range, so that no "
        "input can hold a worker forever. Not enforced in a run small enough to stay in this process.")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs each document worker (one actor running every "
                                   "per-document stage) asks Ray for; the number of workers defaults to the "
                                   "cluster's CPUs divided by this.")
    memory_mb_per_worker: int | None = Field(None, ge=64, description="Memory each document worker asks Ray for, "
                                             "so that Ray does not place more workers on a node than it can hold.")
    stages: dict[str, StageResources] = Field(
        default_factory=dict, description="Requests of each global stage's tasks, by stage name (dedup, tokenizer, "
        "tokenize, train); the per-document stages run fused in the workers above.")

    @field_validator("stages")
    @classmethod
    def _global_stage_names(cls, stages: dict) -> dict:
        for name in stages:
            if name not in STAGES or not issubclass(STAGES[name], GlobalStage):
                known = ", ".join(n for n, stage in STAGES.items() if issubclass(stage, GlobalStage))
                raise ValueError(f"{name!r} is not a global stage (per-document stages share the workers' "
                                 f"cpus_per_worker and memory_mb_per_worker; global stages: {known})")
        return stages


def _stage_tag(entry: Any) -> str | None:
    if isinstance(entry, BaseModel):  # serialising a validated entry: its one field is the stage name
        return next(iter(type(entry).model_fields))
    if isinstance(entry, str):
        return entry if entry in STAGES else None
    if isinstance(entry, dict) and len(entry) == 1:
        name = next(iter(entry))
        return name if name in STAGES else None
    return None


def _stage_entry_models() -> Any:
    """A tagged union with one `{name: settings}` model per registered stage."""
    members = []
    for name, stage in STAGES.items():
        entry = create_model(
            f"{name}_entry", __config__=ConfigDict(extra="forbid"), **{name: (stage.Config, Field(default_factory=stage.Config))}
        )
        members.append(Annotated[entry, Tag(name)])
    return Annotated[
        Union[tuple(members)],
        Discriminator(
            _stage_tag,
            custom_error_type="unknown_stage",
            custom_error_message=f"a stage is one of {', '.join(STAGES)}, as `name` or `name: {{settings}}`",
        ),
    ]


StageEntry = _stage_entry_models()


class RunConfig(Strict):
    name: str = Field(description="Run name; the default output is runs/<name>.")
    input: InputConfig
    output: str | None = Field(None, description="Run directory (also --output): a local path, or a filesystem URI "
                               "(s3://bucket/runs/x, gs://..., with pyarrow options as a query) for cluster runs.")
    stages: list[StageEntry] = Field(min_length=1, description="Stages, in order: per-document ones, then global ones (dedup).")
    rejects: bool = Field(False, description="Also write dropped and failed documents to rejects/.")
    max_failed_share: float = Field(
        0.0, ge=0, le=1, description="Share of units that may fail (after retries) with the run still going on to "
        "its global stages and exiting 0; the failed units are listed by name either way, and a re-run retries them.")
    batch_rows: int = Field(256, ge=1, description="Records a worker processes at a time.")
    ray: RayConfig = Field(default_factory=RayConfig)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        """The default run directory is runs/<name>: a name is one path component, never `..` or a path."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise ValueError(f"{name!r}: a run name is letters, digits, '.', '_' and '-', starting with a letter or "
                             "digit (it names the folder runs/<name>; use output for another place)")
        return name

    @field_validator("output")
    @classmethod
    def _known_storage(cls, output: str | None) -> str | None:
        if output is not None and "://" in output and output.split("://", 1)[0] not in (*REMOTE_SCHEMES, "file"):
            raise ValueError(f"{output}: a run directory is a local path, file://, or one of "
                             f"{', '.join(s + '://' for s in REMOTE_SCHEMES)}")
        return output

    @field_validator("stages", mode="before")
    @classmethod
    def _bare_names(cls, stages: Any) -> Any:
        """`- extract` and `- extract:` (no settings) both mean the stage with its defaults."""
        if not isinstance(stages, list):
            return stages
        normalised = []
        for index, entry in enumerate(stages):
            name = entry if isinstance(entry, str) else next(iter(entry)) if isinstance(entry, dict) and len(entry) == 1 else None
            if name is not None and name not in STAGES:
                raise ValueError(f"[{index}] unknown stage {name!r} (known: {', '.join(STAGES)})")
            if isinstance(entry, str) or (isinstance(entry, dict) and name is not None and entry[name] is None):
                entry = {name: {}}
            normalised.append(entry)
        return normalised

    @field_validator("stages")
    @classmethod
    def _global_stages_last(cls, stages: list) -> list:
        """Per-document stages run first (fused, per unit); each global stage sees everything they kept. A stage is
        listed once: the funnel counts each by its name."""
        names = [next(iter(type(entry).model_fields)) for entry in stages]
        seen_global = None
        for index, name in enumerate(names):
            if name in names[:index]:
                raise ValueError(f"[{index}] {name} is listed twice")
            if issubclass(STAGES[name], GlobalStage):
                seen_global = seen_global or name
            elif seen_global is not None:
                raise ValueError(f"[{index}] {name} comes after {seen_global}: per-document stages come first")
        if "html_langid" in names and "extract" in names[:names.index("html_langid")]:
            raise ValueError(f"[{names.index('html_langid')}] html_langid reads the raw page: list it before "
                             "extract, which replaces the page with its text")
        if "train" in names and "tokenize" not in names[:names.index("train")]:
            raise ValueError(f"[{names.index('train')}] train needs the run's token shards: list tokenize before it")
        if "tokenize" in names:
            index = names.index("tokenize")
            if "tokenizer" in names[index:]:
                raise ValueError(f"[{names.index('tokenizer')}] tokenizer comes after tokenize, which needs its model")
            if "tokenizer" not in names and getattr(stages[index], "tokenize").model is None:
                raise ValueError(f"[{index}].tokenize.model: tokenize needs a tokenizer: list the tokenizer stage "
                                 "before it, or give the path of a sentencepiece model here")
        return stages

    def stage_settings(self) -> list[tuple[str, StageConfig]]:
        """(stage name, its validated settings), in run order."""
        return [next(iter(entry.__dict__.items())) for entry in self.stages]

    def document_stages(self) -> list[tuple[str, StageConfig]]:
        """The per-document stages, fused into one pass per unit of work."""
        return [(name, settings) for name, settings in self.stage_settings() if not issubclass(STAGES[name], GlobalStage)]

    def global_stages(self) -> list[tuple[str, StageConfig]]:
        """The stages over the whole run, in order, after the per-document pass."""
        return [(name, settings) for name, settings in self.stage_settings() if issubclass(STAGES[name], GlobalStage)]

    def run_dir(self) -> StoragePath:
        """A local Path, or a RemotePath when `output` is a filesystem URI (s3://, gs://...)."""
        return storage_path(self.output or os.path.join("runs", self.name))

    def resolved(self) -> dict:
        """The config with every default filled in, as saved in the run directory."""
        return self.model_dump(mode="json")

    @classmethod
    def for_worker(cls, resolved: dict) -> "RunConfig":
        """The config a worker gets from the driver, validated as the driver validated it but for the checks
        against the driver's filesystem (input paths matching files): the worker's node may see none of them, and
        its units name the files it reads."""
        return cls.model_validate(resolved, context={ON_WORKER: True})


def load_config(path: str | os.PathLike, overrides: list[str] = (), output: str | None = None) -> RunConfig:
    """Read, override (`key.path=value`), and validate a config file. Raises ConfigError."""
    path = str(path)
    raw = read_yaml_mapping(path)
    for override in overrides:
        apply_override(raw, override, path)
    if output is not None:
        raw["output"] = output
    return validated(RunConfig, raw, path)


def validated(model: type[BaseModel], raw: dict, path: str):
    """`model` built from `raw`, or a ConfigError naming the file and every bad key path in one line."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {format_validation_errors(exc)}") from None


def read_yaml_mapping(path: str) -> dict:
    """A YAML file's top-level mapping; ConfigError for a missing, unreadable, non-UTF-8 or invalid file."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: not valid YAML: {' '.join(str(problem).split())}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return raw


def apply_override(raw: dict, override: str, path: str) -> None:
    """Set `a.b.c=value` in the raw config; a list item is addressed by index or, in `stages`, by stage name. (A
    single value where the config takes a list becomes a list of one when the config is validated.)"""
    key_path, sep, text = override.partition("=")
    if not sep or not key_path:
        raise ConfigError(f"--set {override!r}: expected key.path=value")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(f"{path}: --set {key_path}: the value is not valid YAML ({problem})") from None
    keys = key_path.split(".")
    node: Any = raw
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        where = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            index = _list_index(node, key)
            if index is None:
                raise ConfigError(f"{path}: --set {key_path}: no item {key!r} in {'.'.join(keys[:depth]) or 'the list'}")
            if last:
                node[index] = value
                return
            item = node[index]
            if isinstance(item, str):  # a bare stage name: give it a settings mapping to set into
                node[index] = item = {item: {}}
            node = _descend_stage_entry(item, key)
        elif isinstance(node, dict):
            if last:
                node[key] = value
                return
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
        else:
            raise ConfigError(f"{path}: --set {key_path}: {where} is a value, not a mapping")


def _list_index(items: list, key: str) -> int | None:
    if key.lstrip("-").isdigit():
        index = int(key)
        return index if -len(items) <= index < len(items) else None
    for index, item in enumerate(items):
        if item == key or (isinstance(item, dict) and len(item) == 1 and key in item):
            return index
    return None


def _descend_stage_entry(item: Any, key: str) -> Any:
    """`stages.extract.x` goes into the settings of the extract entry, not into a key named extract."""
    if isinstance(item, dict) and len(item) == 1 and key in item:
        if item[key] is None:
            item[key] = {}
        return item[key]
    return item


def format_validation_errors(exc: ValidationError) -> str:
    """All problems on one line: `key.path: message; other.key: message`."""
    problems = []
    for error in exc.errors():
        location = _location(error["loc"])
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "required key is missing"
        elif error["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        problems.append(f"{location}: {message}" if location else message)
    return "; ".join(problems)


def _location(loc: tuple) -> str:
    """`('stages', 0, 'extract', 'extract', 'favor')` -> `stages[0].extract.favor` (the union tag is dropped)."""
    parts: list[str] = []
    previous = None
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item != previous or item not in STAGES:
            parts.append(str(item))
        previous = item
    return ".".join(parts)
