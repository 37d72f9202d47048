"""How much of each evaluation set a run's documents hold: the contamination tables, for stats/, notebooks, the report
and `pipeline contamination`.

The decontaminate stage counts, per evaluation set, the documents holding items of it, kept (flagged or redacted)
and dropped, each item found with its documents, and the documents per domain (`Decontaminate.counts`, the shape
`SetCounts` names). Those counts are summed like any tally (stats.add_counts) over batches, units and workers and
saved in the units' markers, so the tables need no pass over the documents and add up across a resumed run. Two
tables come of them:

    contamination.parquet        one row per evaluation set: its items, the items found in the run's documents (and
                                 their share), the documents holding any (kept, dropped) and the top domains
    contaminated_items.parquet   one row per item found: its set, its number in the set (from 1), its documents

`pipeline contamination RUN_DIR --eval NAME=PATH[:fields]` audits a finished run without running it again: the same
stage, flagging only, over the run's documents (or its token shards, decoded with its tokenizer) in a tree of tasks
(leaves read a few parts, merges sum the counts), and the same tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypedDict

import numpy as np
import pyarrow as pa

from pipeline.stats import StageTally, add_counts
from pipeline.tree_reduce import tree_reduce

STAGE = "decontaminate"
SETS_TABLE = "contamination"
ITEMS_TABLE = "contaminated_items"
TOP_DOMAINS = 10
PARTS_PER_TASK = 8  # an audit's leaf task reads this many document parts
AUDIT_BATCH_ROWS = 1024


class SetCounts(TypedDict):
    """What the stage counts for one evaluation set (JSON-friendly: keys are strings)."""

    documents: int  # documents holding at least one of its items
    dropped: int  # of which the stage dropped (contaminated, contaminated_too_short)
    items: dict[str, int]  # item number (from 1) -> documents holding it
    domains: dict[str, int]  # domain -> documents holding an item of the set


SETS_SCHEMA = pa.schema([
    pa.field("set", pa.string()),
    pa.field("items", pa.int64()),
    pa.field("items_found", pa.int64()),
    pa.field("found_share", pa.float64()),
    pa.field("documents", pa.int64()),
    pa.field("kept", pa.int64()),
    pa.field("dropped", pa.int64()),
    pa.field("top_domains", pa.list_(pa.struct([pa.field("domain", pa.string()), pa.field("documents", pa.int64())]))),
])
ITEMS_SCHEMA = pa.schema([
    pa.field("set", pa.string()),
    pa.field("item", pa.int64()),
    pa.field("documents", pa.int64()),
])


def set_sizes(index_path: str | Path) -> dict[str, int]:
    """The evaluation sets of a decontamination index and the items read of each, in the order configured."""
    with np.load(index_path, allow_pickle=False) as archive:
        return {str(name): int(size) for name, size in zip(archive["set_names"], archive["set_items"])}


def contamination_tables(counts: dict[str, SetCounts], sizes: dict[str, int],
                         top_domains: int = TOP_DOMAINS) -> dict[str, pa.Table]:
    """The two tables (by file stem) from summed counts and the sets' sizes; every set gets a row, found or not."""
    set_rows, item_rows = [], []
    for name, size in sizes.items():
        found = counts.get(name) or {}
        items = found.get("items", {})
        domains = sorted(found.get("domains", {}).items(), key=lambda item: (-item[1], item[0]))
        documents, dropped = found.get("documents", 0), found.get("dropped", 0)
        set_rows.append({
            "set": name, "items": size, "items_found": len(items), "found_share": len(items) / size if size else 0.0,
            "documents": documents, "kept": documents - dropped, "dropped": dropped,
            "top_domains": [{"domain": domain, "documents": count} for domain, count in domains[:top_domains]],
        })
        item_rows += [{"set": name, "item": int(number), "documents": count}
                      for number, count in sorted(items.items(), key=lambda item: int(item[0]))]
    return {SETS_TABLE: pa.Table.from_pylist(set_rows, schema=SETS_SCHEMA),
            ITEMS_TABLE: pa.Table.from_pylist(item_rows, schema=ITEMS_SCHEMA)}


def run_contamination(stage_settings: list[tuple[str, object]], funnel: list[StageTally],
                      run_root: Path) -> dict[str, pa.Table | None]:
    """A run's tables, by file stem: from its decontaminate stage's counts, and the sets' sizes from the stage's
    index, which `prepare` builds again on the driver (the run keeps no driver-side copy of it); None for each when
    the run has no such stage (an earlier run's tables are then removed)."""
    from pipeline.config import ConfigError
    from stages import STAGES
    from stages.base import StageSetupError

    found = [(number, settings) for number, (name, settings) in enumerate(stage_settings) if name == STAGE]
    if not found:
        return {SETS_TABLE: None, ITEMS_TABLE: None}
    number, settings = found[0]
    counts = next((tally.counts for tally in funnel if tally.stage == STAGE), {})
    try:
        prepared = STAGES[STAGE].prepare(settings, run_root)
    except StageSetupError as exc:  # an evaluation file gone since the run started, say
        raise ConfigError(f"stages[{number}].{STAGE}.{exc.setting}: {exc.message}") from None
    return contamination_tables(counts, set_sizes(prepared.index))


def audit_parts(parts: list[str], settings: dict, run_root: str, tokenizer: str | None = None) -> dict[str, SetCounts]:
    """The stage's counts over some parts (a leaf of `audit_documents`' tree), flagging only, the stage built from
    this node's copy of the staged index: document parts (text and domain, read in batches), or token shards
    (`tokenizer`: the run's tokenizer file, which decodes each document's tokens back to text; no domain)."""
    from pipeline.io.storage import parquet_file, storage_path
    from pipeline.staged_assets import local_settings
    from pipeline.schema import TEXT
    from stages import STAGES

    kind = STAGES[STAGE]
    stage = kind(local_settings(kind.Config(**settings), kind.file_settings, storage_path(run_root)))
    decoder = None
    if tokenizer is not None:
        from stages.tokens.files import load_tokenizer

        decoder = load_tokenizer(storage_path(tokenizer).read_bytes(), source=tokenizer)
    counts: dict = {}
    for part in parts:
        columns = ["tokens"] if decoder else [TEXT, "domain"]
        for batch in parquet_file(part).iter_batches(batch_size=AUDIT_BATCH_ROWS, columns=columns):
            table = pa.Table.from_batches([batch])
            if decoder is not None:
                texts = [decoder.decode(tokens) for tokens in table.column("tokens").to_pylist()]
                table = pa.table({TEXT: pa.array(texts, pa.string()), "domain": pa.nulls(len(texts), pa.string())})
            add_counts(counts, stage.counts(stage(table)))
    stage.close()
    return counts


def merge_counts(*parts: dict) -> dict:
    """Counts of several leaves, summed (an inner node of `audit_documents`' tree)."""
    total: dict = {}
    for part in parts:
        add_counts(total, part)
    return total


def audit_documents(parts: list[str], settings: dict, run_root: str, submit: Callable | None = None,
                    fetch: Callable | None = None, tokenizer: str | None = None) -> dict[str, SetCounts]:
    """The stage's counts over `parts` (token shards with `tokenizer`), as a tree: `submit(function, *args)` runs a
    node (a Ray task, or by default here), `fetch` gets the root's value; the driver holds one reference per pending
    node, never a document."""
    submit = submit or (lambda function, *args: function(*args))
    fetch = fetch or (lambda result: result)
    leaves = [submit(audit_parts, parts[start:start + PARTS_PER_TASK], settings, run_root, tokenizer)
              for start in range(0, len(parts), PARTS_PER_TASK)]
    root, _, _ = tree_reduce(leaves, lambda items: submit(merge_counts, *items))
    return fetch(root) if root is not None else {}



def format_contamination(sets: pa.Table) -> str:
    """The per-set table as text, for the terminal."""
    lines = [f"{'set':<16} {'items':>8} {'found':>8} {'share':>7} {'documents':>10}  top domains"]
    for row in sets.to_pylist():
        domains = ", ".join(f"{entry['domain']} ({entry['documents']:,})" for entry in row["top_domains"][:3])
        lines.append(f"{row['set']:<16} {row['items']:>8,} {row['items_found']:>8,} {row['found_share']:>7.1%} "
                     f"{row['documents']:>10,}  {domains}")
    return "\n".join(lines)
