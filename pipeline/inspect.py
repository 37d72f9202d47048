"""A run's statistics as pandas DataFrames, for notebooks: `from pipeline import inspect`.

    run = inspect.load_run("runs/quickstart")          # or s3://bucket/runs/x
    run.funnel()                 # per stage: in, kept, dropped, failed, seconds, documents/s
    run.reasons()                # per stage and reason: count and share of the stage's input
    run.signals()                # per document (sampled for big runs): every signal column, outcome, reason
    run.sample("low_quality")    # documents dropped for a reason, with URL and the signal value that did it
    run.languages(), run.domains(), run.clusters(), run.cluster_sizes(), run.shards(), run.training(), run.units()
    run.contamination()          # per evaluation set (decontaminate stage): items found, documents, top domains
    run.parquet_paths()          # the files themselves, for polars / duckdb

    ablation = inspect.load_ablation("ablations/quickstart")   # `pipeline ablate`'s directory
    ablation.table()             # per variant, size, evaluation set: bits/byte mean and std over seeds, vs baseline
    ablation.runs(), ablation.variants(), ablation.curves(), ablation.scaling()

Every number comes from the run's own files: the counts from stats/ (merged from the per-unit completion markers,
so they survive resume and add up across cluster workers), the per-document values from the documents/ and
rejects/ parts the workers wrote. Nothing here recomputes a signal.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from pipeline.ablation import tables as ablation_tables
from pipeline.contamination import ITEMS_SCHEMA, ITEMS_TABLE, SETS_SCHEMA, SETS_TABLE
from pipeline.io.storage import StoragePath, arrow_location, parquet_file, read_parquet, storage_path
from pipeline.run_dir import RunDir
from pipeline.schema import DROP_REASON, ERROR, LINEAGE_SCHEMA, TEXT
from pipeline.stats import read_funnel

DEFAULT_SAMPLE_ROWS = 200_000
_NOT_SIGNALS = {field.name for field in LINEAGE_SCHEMA} | {TEXT, "charset", "stage", DROP_REASON, ERROR,
                                                           "error_detail"}


def load_run(path: str | StoragePath) -> "Run":
    """The run in `path` (a run directory, local or on an object store) once it has statistics; FileNotFoundError
    without them, StatsUnreadable when its stats/summary.json is damaged."""
    run = RunDir(storage_path(path) if isinstance(path, str) else path)
    if not (run.stats / "summary.json").exists():
        raise FileNotFoundError(f"{run.root}: no stats/summary.json; is this a finished run directory?")
    read_funnel(run.stats)  # a damaged summary is an error here, not in the middle of a report
    return Run(run)


@dataclass
class Run:
    run_dir: RunDir

    # ------------------------------------------------------------------------------------------- counts
    @cached_property
    def summary(self) -> dict:
        """stats/summary.json: name, units, records read, documents kept, failures, the merged stage tallies."""
        return read_funnel(self.run_dir.stats)[1]

    @cached_property
    def config(self) -> dict:
        """The resolved config the run was made with."""
        import yaml

        return (yaml.safe_load(self.run_dir.config_file.read_text()) or {}).get("config", {})

    def funnel(self) -> pd.DataFrame:
        """One row per stage in order: rows in, kept, dropped, failed, seconds (summed over workers) and
        documents per second of worker time."""
        frame = read_parquet(self.run_dir.stats / "funnel.parquet").to_pandas().sort_values("order")
        frame["docs_per_s"] = frame["rows_in"] / frame["seconds"].where(frame["seconds"] > 0)
        frame["kept_share"] = frame["kept"] / frame["rows_in"].where(frame["rows_in"] > 0)
        return frame.reset_index(drop=True)

    def reasons(self, stage: str | None = None) -> pd.DataFrame:
        """Why documents were dropped (or failed), per stage, with each reason's share of the stage's input."""
        frame = read_parquet(self.run_dir.stats / "reasons.parquet").to_pandas()
        rows_in = self.funnel().set_index("stage")["rows_in"]
        # as floats: mapping an empty column (a run that dropped nothing) gives strings, which do not divide
        frame["share"] = frame["count"] / frame["stage"].map(rows_in).astype("float64")
        if stage is not None:
            frame = frame[frame["stage"] == stage]
        return frame.reset_index(drop=True)

    def units(self) -> pd.DataFrame:
        """Per unit of work and stage: the counts and seconds (stats/units.parquet)."""
        return read_parquet(self.run_dir.stats / "units.parquet").to_pandas()

    def examples(self) -> pd.DataFrame:
        """The few examples per reason every stage keeps, even without `rejects: true` (stats/examples.parquet)."""
        return read_parquet(self.run_dir.stats / "examples.parquet").to_pandas()

    # --------------------------------------------------------------------------------- per document
    def parquet_paths(self) -> dict[str, list[str]]:
        """The Parquet files behind each table, as paths or URIs (for polars.scan_parquet, duckdb read_parquet)."""
        paths = {
            "documents": self._parts(self.run_dir.documents),
            "rejects": self._parts(self.run_dir.rejects),
            "dedup_documents": self._parts(self.run_dir.dedup_documents),
            "dedup_rejects": self._parts(self.run_dir.rejects / "dedup"),
            "clusters": self._parts(self.run_dir.dedup / "clusters"),
            "shards": [str(p) for p in (self.run_dir.shards.glob("*.parquet") if self.run_dir.shards.exists() else [])],
        }
        paths.update({name: [str(self.run_dir.stats / f"{name}.parquet")]
                      for name in ("funnel", "reasons", "units", "examples", SETS_TABLE, ITEMS_TABLE)})
        return {name: [p for p in files if storage_path(p).exists()] for name, files in paths.items()}

    @staticmethod
    def _parts(directory: StoragePath) -> list[str]:
        return [str(path) for path in directory.glob("part-*.parquet")] if directory.exists() else []

    def signals(self, max_rows: int = DEFAULT_SAMPLE_ROWS, seed: int = 0) -> pd.DataFrame:
        """Per document: id, url, domain, lang, every numeric signal column, and its outcome: `kept`, or `dropped`
        / `failed` with the stage and reason (dropped documents are there when the run kept `rejects: true`).

        Big runs are sampled: whole parts, chosen by a seeded hash of their names, until max_rows rows."""
        frames = []
        paths = self.parquet_paths()
        for outcome, parts in (("kept", paths["documents"]), ("not kept", paths["rejects"])):
            chosen = _sample_parts(parts, max_rows, seed)
            if not chosen:
                continue
            table = _read_columns(chosen, exclude={TEXT, "charset", "error_detail", "html"})
            frame = table.to_pandas()
            if outcome == "kept":
                frame["outcome"], frame["stage"], frame[DROP_REASON] = "kept", None, None
            else:
                frame["outcome"] = frame[ERROR].notna().map({True: "failed", False: "dropped"})
                frame[DROP_REASON] = frame[DROP_REASON].fillna(frame[ERROR])
            frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=["id", "outcome", "stage", DROP_REASON])
        return pd.concat(frames, ignore_index=True).drop(columns=[ERROR], errors="ignore")

    def signal_columns(self) -> list[str]:
        """The numeric per-document signals the run's stages wrote (scores, counts, ratios)."""
        paths = self.parquet_paths()
        parts = paths["documents"] or paths["rejects"]
        if not parts:
            return []
        schema = parquet_file(parts[0]).schema_arrow
        return [field.name for field in schema if field.name not in _NOT_SIGNALS
                and (pa.types.is_integer(field.type) or pa.types.is_floating(field.type))]

    def sample(self, reason: str, n: int = 5, stage: str | None = None, seed: int = 0) -> pd.DataFrame:
        """Up to n documents dropped (or failed) for `reason`: id, url, stage, reason, the signal column that
        decided and its value, and the start of the text. From rejects/ when the run kept them, else from the
        examples every run keeps (url and detail, no text)."""
        from stages import STAGES

        rejects = self.parquet_paths()["rejects"]
        if not rejects:
            examples = self.examples()
            chosen = examples[(examples["reason"] == reason) & ((examples["stage"] == stage) if stage else True)]
            return chosen.head(n).reset_index(drop=True)
        _, filesystem = arrow_location(rejects[0])
        dataset = ds.dataset([arrow_location(p)[0] for p in rejects], format="parquet", filesystem=filesystem)
        condition = (ds.field(DROP_REASON) == reason) | (ds.field(ERROR) == reason)
        if stage is not None:
            condition &= ds.field("stage") == stage
        frame = dataset.to_table(filter=condition).to_pandas()
        if len(frame) > n:
            frame = frame.sample(n=n, random_state=seed)
        rows = []
        for _, row in frame.iterrows():
            stage_class = STAGES.get(row["stage"])
            column = stage_class.signal_of(row[DROP_REASON] or reason) if stage_class is not None else None
            rows.append({"id": row["id"], "url": row.get("url"), "stage": row["stage"], "reason": reason,
                         "signal": column if column in row else None,
                         "value": row[column] if column in row else None,
                         "text": _text_start(row.get(TEXT))})
        return pd.DataFrame(rows, columns=["id", "url", "stage", "reason", "signal", "value", "text"])

    def languages(self) -> pd.DataFrame:
        """Documents per language: kept at the end of the per-document stages, and dropped (from rejects/)."""
        return self._value_counts("lang")

    def domains(self, top: int = 50) -> pd.DataFrame:
        """The `top` registered domains by kept documents, with their dropped documents."""
        return self._value_counts("domain").head(top)

    def _value_counts(self, column: str) -> pd.DataFrame:
        counts = {}
        paths = self.parquet_paths()
        for name, parts in (("kept", paths["documents"]), ("dropped", paths["rejects"])):
            if parts and column in parquet_file(parts[0]).schema_arrow.names:
                values = _read_columns(parts, include=[column]).column(column).to_pandas()
                counts[name] = values.fillna("(none)").value_counts()
        if not counts:
            return pd.DataFrame(columns=[column, "kept", "dropped"])
        frame = pd.DataFrame(counts).fillna(0).astype(int)
        for name in ("kept", "dropped"):
            if name not in frame:
                frame[name] = 0
        frame = frame.sort_values(["kept", "dropped"], ascending=False)
        return frame.rename_axis(column).reset_index()[[column, "kept", "dropped"]]

    # ------------------------------------------------------------------------------- global stages
    def clusters(self, columns: list[str] | None = None) -> pd.DataFrame:
        """dedup/clusters/: one row per duplicate cluster (cluster: its smallest member's key; size; kept id and url;
        removed ids and reasons), sorted by cluster. `columns`: read only these from the part files (the lists of
        removed ids are most of the bytes); for a run too big for memory, read parquet_paths()["clusters"] lazily
        with polars or duckdb."""
        paths = sorted(self._parts(self.run_dir.dedup / "clusters"))
        if not paths:
            return pd.DataFrame()
        wanted = None if columns is None else list(dict.fromkeys(["cluster", *columns]))
        frame = pa.concat_tables([read_parquet(path, wanted) for path in paths]).to_pandas()
        frame = frame.sort_values("cluster", ignore_index=True)
        return frame if columns is None else frame[columns]

    def cluster_sizes(self) -> pd.DataFrame:
        """How many duplicate clusters there are of each size (documents in the cluster, the kept one included)."""
        clusters = self.clusters(columns=["size"])
        if clusters.empty:
            return pd.DataFrame(columns=["size", "clusters"])
        return clusters["size"].value_counts().sort_index().rename_axis("size").reset_index(name="clusters")

    def shards(self) -> pd.DataFrame:
        """One row per token shard: split, name, documents, tokens (from shards/manifest.json)."""
        manifest_path = self.run_dir.shards / "manifest.json"
        if not manifest_path.exists():
            return pd.DataFrame(columns=["split", "name", "documents", "tokens"])
        manifest = json.loads(manifest_path.read_text())
        return pd.DataFrame([{"split": split, "name": shard["name"], "documents": shard["documents"],
                              "tokens": shard["tokens"]}
                             for split, values in manifest["splits"].items() for shard in values["shards"]])

    def contamination(self) -> pd.DataFrame:
        """Per evaluation set of the decontaminate stage: its items, the items found in the run's documents and their
        share, the documents holding any (kept: flagged or redacted; dropped) and the top domains
        (stats/contamination.parquet; empty when the run has no decontaminate stage)."""
        return self._stats_table(SETS_TABLE, SETS_SCHEMA)

    def contaminated_items(self) -> pd.DataFrame:
        """Per evaluation item found in the run's documents: its set, its number in the set (from 1, in file order)
        and the documents holding it (stats/contaminated_items.parquet)."""
        return self._stats_table(ITEMS_TABLE, ITEMS_SCHEMA)

    def _stats_table(self, name: str, schema: pa.Schema) -> pd.DataFrame:
        path = self.run_dir.stats / f"{name}.parquet"
        return (read_parquet(path) if path.exists() else schema.empty_table()).to_pandas()

    def training(self) -> pd.DataFrame:
        """The trainer's log, one row per step: loss, lr, tokens/s, grad_norm (mfu on CUDA), and val_loss /
        val_perplexity on evaluation steps (train/log.jsonl; empty when the run did not train)."""
        log = self.run_dir.train / "log.jsonl"
        if not log.exists():
            return pd.DataFrame(columns=["step", "loss", "val_loss"])
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        # A resumed training run appends: the last line written for a step is the one its checkpoint continued.
        return pd.DataFrame(rows).drop_duplicates("step", keep="last").sort_values("step").reset_index(drop=True)


def load_ablation(path: str | Path) -> "Ablation":
    """The ablation in `path` (the output of `pipeline ablate`) once its tables are written."""
    root = Path(path)
    if not (root / "stats" / ablation_tables.SUMMARY).exists():
        raise FileNotFoundError(f"{root}: no stats/{ablation_tables.SUMMARY}; is this a finished ablation directory?")
    return Ablation(root)


@dataclass
class Ablation:
    """An ablation's tables (pipeline/ablation/tables.py says what each holds)."""

    root: Path

    @cached_property
    def config(self) -> dict:
        return json.loads((self.root / "ablation.json").read_text())

    def table(self) -> pd.DataFrame:
        """Per variant, size and evaluation set: documents, tokens, bits per byte (mean, std over seeds), the
        difference to the baseline and its paired p-value."""
        return self._read(ablation_tables.SUMMARY)

    def runs(self) -> pd.DataFrame:
        """Per model (variant, size, seed) and evaluation set: bits per byte and per token, final losses."""
        return self._read(ablation_tables.RUNS)

    def variants(self) -> pd.DataFrame:
        """Per variant: candidates, selected, dropped by reason (JSON), tokens before and under the budget."""
        return self._read(ablation_tables.VARIANTS)

    def curves(self) -> pd.DataFrame:
        """Per model and step: training loss, and validation loss where measured."""
        return self._read(ablation_tables.CURVES)

    def scaling(self) -> pd.DataFrame:
        """Per variant and evaluation set: the fitted L(N) = E + A / N^alpha (empty with fewer than 3 sizes)."""
        return self._read(ablation_tables.SCALING)

    def _read(self, name: str) -> pd.DataFrame:
        path = self.root / "stats" / name
        return pd.read_parquet(path) if path.exists() else pd.DataFrame()


def _sample_parts(parts: list[str], max_rows: int, seed: int) -> list[str]:
    """Whole parts in a seeded order until they hold max_rows rows (all of them for a small run)."""
    order = sorted(parts, key=lambda p: hashlib.blake2b(f"{seed}:{storage_path(p).name}".encode()).digest())
    chosen, rows = [], 0
    for path in order:
        if rows >= max_rows:
            break
        chosen.append(path)
        rows += parquet_file(path).metadata.num_rows
    return sorted(chosen)


def _read_columns(parts: list[str], include: list[str] | None = None, exclude: set[str] = frozenset()) -> pa.Table:
    """The chosen columns of several parts as one table (parts written by different stage lists are unified)."""
    _, filesystem = arrow_location(parts[0])
    dataset = ds.dataset([arrow_location(p)[0] for p in parts], format="parquet", filesystem=filesystem)
    columns = include or [name for name in dataset.schema.names if name not in exclude]
    return dataset.to_table(columns=columns)


def _text_start(text: object) -> str:
    """The first 300 characters of a rejected row's text; "" for a page dropped before extraction (html_langid,
    or a read-stage skip), which has none: pandas gives it as NaN or None."""
    return text[:300] if isinstance(text, str) else ""
