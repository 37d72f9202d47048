"""Global deduplication on Ray: exact (normalised-text hash) and near (MinHash-LSH), across all input files.

The plan, with what lives where (the driver holds dataset handles, one number per connected-components round and one
small value per part or shuffle partition; documents, edges and members stay in Ray's object store and in files):
1. signatures: one Ray task per documents part computes, for each document, its key (part index, row), text
   length, normalised-text hash and LSH band keys (vectorised MinHash), into the object store (which spills).
2. exact: rows are shuffled by text hash (a Ray Data groupby on a partition of the hash, so that a group arrives
   whole in one call; the sort or the hash shuffle, see use_shuffle) and each group gives star edges from its best
   member.
3. near: rows are exploded into (band key, key, length) rows, shuffled the same way, and every bucket holding
   several documents gives star edges. Optionally each candidate pair's real shingle Jaccard is checked by joins
   (pairs made unique, their ends joined with their parts' texts, the two sides brought together) and pairs under
   the threshold are dropped.
4. clusters: connected components of the edges by alternating large-star / small-star steps
   (components.py), then the members joined with their documents' lengths and text hashes and the best of each
   cluster kept; the members are shuffled by part into dedup/_members/<part> (key, cluster, kept, exact).
   dedup/_members/_done.json says the graph is complete: a run that dies after it resumes from there.
5. filter: one task per part reads its own members file, drops the removed rows and writes
   dedup/documents/<part> (and rejects/dedup/<part>); its members, with ids and urls, are shuffled by cluster and
   each shuffle partition writes its clusters as dedup/clusters/part-<partition>.parquet, returning its counts and
   first examples per reason.

`in_process=True` (a small run that the runner keeps out of Ray, see RayConfig.in_process_max_mb) runs the same
functions on the whole input at once in this process: one group per hash instead of one per shuffle partition,
one partition for the star steps, the same documents, rejects, members and clusters (the clusters in as many
files as that path has shuffle partitions). Ray Data is imported only by the Ray path.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import TYPE_CHECKING, Callable

import numpy as np
import pyarrow as pa

from stages.dedup.components import partition_of
from pipeline.io.atomic import AtomicParquetWriter, atomic_write_json, atomic_write_parquet
from pipeline.io.storage import StoragePath, read_parquet, storage_path
from pipeline.progress import StepReport, no_steps
from pipeline.run_dir import RunDir
from pipeline.stats import EXAMPLES_PER_REASON, StageTally
from stages.dedup import HASH_SHUFFLE_MIN_DOCUMENTS, DedupConfig, shuffle_partitions
from stages.dedup.graph import document_keys, key_part, key_row, star_edges
from stages.dedup.star import oriented, unique_pairs
from stages.dedup.minhash import NO_BUCKET, band_keys, document_hashes, jaccard, shingle_sets, signatures

if TYPE_CHECKING:
    import ray.data

MEMBERS = "_members"  # dedup/_members/<part name>: the cluster members of each documents part
MEMBERS_SCHEMA = pa.schema([("key", pa.uint64()), ("cluster", pa.uint64()), ("kept", pa.uint64()),
                            ("exact", pa.bool_())])
CLUSTERS_SCHEMA = pa.schema(
    [
        ("cluster", pa.int64()),
        ("size", pa.int32()),
        ("kept_id", pa.string()),
        ("kept_url", pa.string()),
        ("removed_ids", pa.list_(pa.string())),
        ("removed_reasons", pa.list_(pa.string())),
    ]
)


def use_shuffle(config: DedupConfig, documents: int, *datasets: ray.data.Dataset) -> None:
    """Ray Data's shuffle for this run (the `shuffle` setting), for the datasets made from now on and for
    `datasets` made before (a dataset keeps the DataContext it was made with and a groupby is planned by it: two
    strategies in one plan fail). The sort-based pull shuffle starts no actors, so a small run takes seconds, but
    the driver tracks every block of every map task; the hash shuffle sends map output to aggregator actors (at
    most DataContext's max_hash_shuffle_aggregators) and the driver's memory stays flat as runs grow. Its
    aggregators reserve memory and CPUs while they live: the graph steps materialise each shuffle's output, so
    that one shuffle's aggregators hold resources at a time."""
    from ray.data import DataContext
    from ray.data.context import ShuffleStrategy

    hashed = config.shuffle == "hash" or (config.shuffle == "auto" and documents >= HASH_SHUFFLE_MIN_DOCUMENTS)
    strategy = ShuffleStrategy.HASH_SHUFFLE if hashed else ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    for context in (DataContext.get_current(), *(dataset.context for dataset in datasets)):
        context.shuffle_strategy = strategy


def _part_files(documents: StoragePath) -> list[str]:
    return sorted(str(path) for path in documents.glob("part-*.parquet"))


def _signature_rows(batch: dict, config: DedupConfig) -> dict:
    """Per document of one part: key, length, text hash and band keys (one column per band)."""
    part, path = int(batch["part"][0]), str(batch["path"][0])
    texts = read_parquet(path, columns=["text"]).column("text").to_pylist()
    texts = [text or "" for text in texts]
    rows = {
        "key": document_keys(part, len(texts)),
        "length": np.fromiter((len(text) for text in texts), dtype=np.int64, count=len(texts)),
        "text_hash": document_hashes(texts, config.minhash.normalization),
    }
    if config.near:
        bands = band_keys(signatures(texts, config.minhash), config.minhash.bands, config.minhash.rows)
        for band in range(config.minhash.bands):
            rows[f"band_{band}"] = bands[:, band]
    return rows


def _exact_edges(group: dict) -> dict:
    heads, tails = star_edges(group["text_hash"], group["key"], group["length"])
    return {"head": heads, "tail": tails}


def _band_rows(batch: dict, bands: int, partitions: int) -> dict:
    keys, lengths = batch["key"], batch["length"]
    band_values = np.stack([batch[f"band_{band}"] for band in range(bands)], axis=1).reshape(-1)
    in_bucket = band_values != NO_BUCKET  # documents without shingles (empty after normalisation) are in none
    band_values = band_values[in_bucket]
    return {
        "partition": (band_values % np.uint64(partitions)).astype(np.int64),
        "band_key": band_values,
        "key": np.repeat(keys, bands)[in_bucket],
        "length": np.repeat(lengths, bands)[in_bucket],
    }


def _near_edges(group: dict) -> dict:
    heads, tails = unique_pairs(*star_edges(group["band_key"], group["key"], group["length"]))
    return {"head": heads, "tail": tails}


def _collect(dataset: ray.data.Dataset, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {name: [] for name in columns}
    for batch in dataset.iter_batches(batch_format="numpy", batch_size=None):
        for name in columns:
            parts[name].append(batch[name])
    return {name: np.concatenate(arrays) if arrays else np.empty(0, np.uint64) for name, arrays in parts.items()}


def _pair_partition(heads: np.ndarray, tails: np.ndarray, partitions: int) -> np.ndarray:
    return partition_of(heads ^ (tails * np.uint64(0xC2B2AE3D27D4EB4F)), partitions)


def _unique_edges(group: dict) -> dict:
    """A near-identical pair shares most of its bands and arrives once per band: each pair once."""
    heads, tails = unique_pairs(group["head"], group["tail"])
    return {"head": heads, "tail": tails}


def _pair_ends(batch: dict, partitions: int) -> dict:
    """Both ends of each candidate pair as a row keyed by the end's part, to be joined with that part's texts."""
    heads, tails = batch["head"], batch["tail"]
    ends = np.concatenate([heads, tails])
    return {"part": key_part(ends), "row": key_row(ends), "head": np.tile(heads, 2), "tail": np.tile(tails, 2),
            "side": np.repeat(np.array([0, 1], dtype=np.int8), len(heads))}


def _shingle_rows(group: dict, config: DedupConfig, paths: list[str], partitions: int) -> dict:
    """The pair ends that lie in one part, each with its document's shingle set, keyed by pair for the next
    shuffle (the part's texts are read once, each needed document shingled once)."""
    part = int(group["part"][0])
    texts = read_parquet(paths[part], columns=["text"]).column("text").to_pylist()
    needed, inverse = np.unique(group["row"], return_inverse=True)
    sets = shingle_sets([texts[row] or "" for row in needed.tolist()], config.minhash)
    return {"head": group["head"], "tail": group["tail"], "side": group["side"],
            "shingles": [sets[index] for index in inverse.tolist()],
            "partition": _pair_partition(group["head"], group["tail"], partitions)}


def _pair_similarity(group: dict, threshold: float) -> dict:
    """The pairs of one partition whose two shingle sets have a Jaccard similarity of at least `threshold`."""
    order = np.lexsort((group["side"], group["tail"], group["head"]))
    heads, tails = group["head"][order], group["tail"][order]
    shingles = [group["shingles"][i] for i in order.tolist()]
    good = [index for index in range(0, len(heads) - 1, 2)
            if jaccard(np.asarray(shingles[index]), np.asarray(shingles[index + 1])) >= threshold]
    return {"head": heads[good].astype(np.uint64), "tail": tails[good].astype(np.uint64)}


def _verified(near: ray.data.Dataset, paths: list[str], config: DedupConfig, partitions: int,
              options: dict) -> ray.data.Dataset:
    """The candidate pairs whose real shingle Jaccard reaches the configured threshold, by joins on Ray: pairs made
    unique (a shuffle by pair), their ends joined with their parts' texts (a shuffle by part), the two sides of each
    pair brought together (a shuffle by pair). The driver sees no pair."""
    pair_partition = lambda batch: {**batch, "partition": _pair_partition(batch["head"], batch["tail"], partitions)}
    unique = near.map_batches(pair_partition, batch_format="numpy", **options).groupby(
        "partition", num_partitions=partitions).map_groups(_unique_edges, batch_format="numpy",
                                                           **options).materialize()
    ends = unique.map_batches(_pair_ends, fn_kwargs={"partitions": partitions}, batch_format="numpy", **options)
    shingled = ends.groupby("part", num_partitions=max(1, min(len(paths), partitions))).map_groups(
        _shingle_rows, fn_kwargs={"config": config, "paths": paths, "partitions": partitions}, batch_format="numpy",
        **options).materialize()
    return shingled.groupby("partition", num_partitions=partitions).map_groups(
        _pair_similarity, fn_kwargs={"threshold": config.verify_jaccard}, batch_format="numpy", **options)


def _verified_local(near: dict, paths: list[str], config: DedupConfig) -> dict:
    """_verified's steps in this process, each shuffle one group per part or one group in all."""
    ends = _pair_ends(_unique_edges(near), partitions=1)
    rows = [_shingle_rows({name: values[ends["part"] == part] for name, values in ends.items()}, config, paths, 1)
            for part in np.unique(ends["part"]).tolist()]
    if not rows:
        return near
    return _pair_similarity({name: np.concatenate([_column(row[name]) for row in rows]) for name in rows[0]},
                            config.verify_jaccard)


def _filter_part(batch: dict, documents_out: str, rejects_out: str | None, partitions: int) -> dict:
    """Write one part without its removed rows (and those rows to rejects/dedup with their reason); return a row per
    cluster member of the part (its cluster, id, url, where it came from, whether it was kept and why not), to be
    shuffled by cluster into the clusters table. The part's members come from its own file (`members`), written
    by the shuffle by part that ends the graph steps: no list of removed documents is sent to every part."""
    part, path, members_file = int(batch["part"][0]), str(batch["path"][0]), str(batch["members"][0])
    table = read_parquet(path)
    keys = document_keys(part, table.num_rows)
    members = (read_parquet(members_file) if members_file else MEMBERS_SCHEMA.empty_table())
    member_keys = members.column("key").to_numpy()
    rows = np.searchsorted(keys, member_keys)
    if len(rows) and not (rows.max() < len(keys) and np.array_equal(keys[rows], member_keys)):
        raise RuntimeError(f"dedup: {path} changed while the run was deduplicating it")
    kept_keys = members.column("kept").to_numpy()
    removed = member_keys != kept_keys
    reasons = np.where(members.column("exact").to_numpy(zero_copy_only=False), "exact_duplicate",
                       "near_duplicate").astype(object)
    reasons[~removed] = ""
    is_removed = np.zeros(table.num_rows, dtype=bool)
    is_removed[rows[removed]] = True
    name = storage_path(path).name
    writer = AtomicParquetWriter(storage_path(documents_out) / name, table.schema)
    writer.write(table.filter(pa.array(~is_removed)))
    writer.commit()
    if rejects_out is not None and is_removed.any():
        dropped = table.filter(pa.array(is_removed))
        dropped = dropped.append_column("stage", pa.array(["dedup"] * dropped.num_rows, pa.string()))
        dropped = dropped.append_column("drop_reason", pa.array(reasons[removed].tolist(), pa.string()))
        atomic_write_parquet(storage_path(rejects_out) / name, dropped)
    taken = pa.array(rows, pa.int64())
    ids = table.column("id").take(taken).to_pylist()
    urls = table.column("url").take(taken).to_pylist() if "url" in table.column_names else [None] * len(ids)
    offsets = (table.column("offset").take(taken).to_numpy(zero_copy_only=False) if "offset" in table.column_names
               else np.full(len(ids), -1))
    sources = table.column("source").take(taken).to_pylist() if "source" in table.column_names else [path] * len(ids)
    clusters = members.column("cluster").to_numpy()
    return {
        "partition": partition_of(clusters, partitions), "cluster": clusters, "key": member_keys,
        "kept": ~removed, "reason": reasons, "id": np.array(ids, dtype=object),
        "url": np.array([url or "" for url in urls], dtype=object),  # "": a column of None does not stay a string
        "source": np.array([source or "" for source in sources], dtype=object),
        "offset": np.nan_to_num(offsets.astype(np.float64), nan=-1).astype(np.int64),
    }


def _write_clusters(group: dict, directory: str) -> dict:
    """The clusters of one shuffle partition as dedup/clusters/part-<partition>.parquet, one row per cluster, sorted
    by cluster (its root: the smallest key of its members); returns one row, a JSON summary of the partition (its
    clusters, removed documents by reason, and the first removed documents of each reason as examples)."""
    partition = int(group["partition"][0])
    order = np.lexsort((group["key"], group["cluster"]))
    cluster, key, kept, reason = group["cluster"][order], group["key"][order], group["kept"][order], group["reason"][order]
    ids, urls = group["id"][order], group["url"][order]
    roots, starts = np.unique(cluster, return_index=True)
    kept_rows = np.flatnonzero(kept)
    if len(kept_rows) != len(roots) or not np.array_equal(cluster[kept_rows], roots):
        raise RuntimeError(f"dedup: clusters partition {partition} does not have one kept document per cluster")
    removed_rows = np.flatnonzero(~kept)
    sizes = np.diff(np.append(starts, len(cluster)))
    offsets = pa.array(np.concatenate(([0], np.cumsum(sizes - 1))).astype(np.int32))
    table = pa.table({
        "cluster": pa.array(roots.astype(np.int64)),
        "size": pa.array(sizes.astype(np.int32)),
        "kept_id": pa.array(ids[kept_rows].tolist(), pa.string()),
        "kept_url": pa.array([url or None for url in urls[kept_rows].tolist()], pa.string()),
        "removed_ids": pa.ListArray.from_arrays(offsets, pa.array(ids[removed_rows].tolist(), pa.string())),
        "removed_reasons": pa.ListArray.from_arrays(offsets, pa.array(reason[removed_rows].tolist(), pa.string())),
    }, schema=CLUSTERS_SCHEMA)
    atomic_write_parquet(storage_path(directory) / f"part-{partition:05d}.parquet", table)
    kept_id_of = dict(zip(roots.tolist(), ids[kept_rows].tolist()))
    summary: dict = {"clusters": len(roots), "dropped": {}, "examples": []}
    for name in sorted(set(reason[removed_rows].tolist())):
        chosen = removed_rows[reason[removed_rows] == name]
        summary["dropped"][name] = len(chosen)
        for row in chosen[np.argsort(key[chosen], kind="stable")][:EXAMPLES_PER_REASON].tolist():
            original = order[row]
            summary["examples"].append({
                "key": int(key[row]), "outcome": "dropped", "reason": name,
                "source": group["source"][original] or None,
                "offset": int(group["offset"][original]) if group["offset"][original] >= 0 else None,
                "url": urls[row] or None, "detail": f"cluster {int(cluster[row])}: kept {kept_id_of[int(cluster[row])]}",
            })
    return {"summary": np.array([json.dumps(summary)], dtype=object)}


def _first_examples(summaries: list[dict]) -> list[dict]:
    """The first EXAMPLES_PER_REASON removed documents of each reason in input order (by key), from the examples
    each clusters partition sent (its first ones of each reason)."""
    examples = sorted((example for summary in summaries for example in summary["examples"]),
                      key=lambda example: (example["reason"], example["key"]))
    taken: Counter[str] = Counter()
    chosen = []
    for example in examples:
        if taken[example["reason"]] < EXAMPLES_PER_REASON:
            taken[example["reason"]] += 1
            chosen.append({name: value for name, value in example.items() if name != "key"})
    return chosen


def _filter_and_cluster(items: list[dict], run: RunDir, rejects: bool, partitions: int, options: dict,
                        in_process: bool) -> list[dict]:
    """Each part filtered by its members (one task per part), the members shuffled by cluster, each partition's
    clusters written: the partitions' summaries, one small value per partition."""
    filter_settings = {"documents_out": str(run.dedup_documents),
                       "rejects_out": str(run.rejects / "dedup") if rejects else None, "partitions": partitions}
    clusters = str(run.dedup / "clusters")
    if in_process:
        rows = [_filter_part({name: np.array([item[name]]) for name in item}, **filter_settings) for item in items]
        merged = {name: np.concatenate([_column(row[name]) for row in rows]) for name in rows[0]} if rows else {}
        summaries = []
        for partition in np.unique(merged.get("partition", np.empty(0, np.int64))).tolist():
            chosen = merged["partition"] == partition
            summaries.append(_write_clusters({name: values[chosen] for name, values in merged.items()}, clusters))
        return [json.loads(str(summary["summary"][0])) for summary in summaries]
    import ray.data

    written = (
        ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        .map_batches(_filter_part, fn_kwargs=filter_settings, batch_size=1, batch_format="numpy", **options)
        .groupby("partition", num_partitions=partitions)
        .map_groups(_write_clusters, fn_kwargs={"directory": clusters}, batch_format="numpy", **options)
    )
    return [json.loads(str(summary)) for summary in _collect(written, ("summary",))["summary"]]


def _column(values: np.ndarray | list) -> np.ndarray:
    """A batch column as an array; a list (of shingle arrays, say) as an object array, one element per row."""
    if isinstance(values, np.ndarray):
        return values
    column = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):
        column[index] = value
    return column


def _map_parts(function: Callable, items: list[dict], fn_kwargs: dict, columns: tuple[str, ...], options: dict,
               in_process: bool) -> dict[str, np.ndarray]:
    """`function` on each part (as a one-row batch), its columns concatenated: Ray tasks, or calls in this process."""
    if in_process:
        batches = [function({"part": np.array([item["part"]]), "path": np.array([item["path"]])}, **fn_kwargs)
                   for item in items]
        return {name: np.concatenate([_column(batch[name]) for batch in batches]) if batches
                else np.empty(0, np.uint64) for name in columns}
    import ray.data

    return _collect(
        ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(
            function, fn_kwargs=fn_kwargs, batch_size=1, batch_format="numpy", **options),
        columns,
    )


def run_dedup(config: DedupConfig, run: RunDir, source: StoragePath, rejects: bool, workers: int,
              options: dict | None = None, in_process: bool = False, step: StepReport = no_steps) -> StageTally:
    """Deduplicate the documents under `source` into run.dedup; returns the stage's counts. `options`: what each
    Ray task asks for (num_cpus, memory); `in_process`: no Ray at all, for small runs; `step`: where each step
    (signatures, exact, near, verify, clusters, filter) is reported."""
    options = options or {}
    started = time.monotonic()
    parts = _part_files(source)
    names = [storage_path(path).name for path in parts]
    items = [{"part": index, "path": path} for index, path in enumerate(parts)]
    graph = _load_graph(run, names)
    if graph is None:
        step("signatures", len(parts), "parts")
        graph = (_duplicate_graph_in_process(config, items, run, names) if in_process
                 else _duplicate_graph(config, items, workers, options, run, names, step))
        atomic_write_json(_graph_file(run), graph)
    documents, partitions = int(graph["documents"]), int(graph["partitions"])
    if not in_process:
        use_shuffle(config, documents)
    with_members = set(graph["with_members"])
    for item, name in zip(items, names):
        item["members"] = str(run.dedup / MEMBERS / name) if name in with_members else ""
    step("filter", len(parts), "parts")
    summaries = _filter_and_cluster(items, run, rejects, partitions, options, in_process)
    if not summaries:  # no clusters: an empty table, so that clusters/ reads as one like any other run's
        atomic_write_parquet(run.dedup / "clusters" / "part-00000.parquet", CLUSTERS_SCHEMA.empty_table())
    dropped: Counter[str] = Counter()
    for summary in summaries:
        dropped.update(summary["dropped"])
    tally = StageTally("dedup", rows_in=documents, kept=documents - sum(dropped.values()),
                       seconds=time.monotonic() - started)
    tally.dropped.update(dict(sorted(dropped.items())))
    tally.examples = _first_examples(summaries)
    atomic_write_json(run.dedup / "_done.json", {"stage": tally.to_dict(), "partitions": partitions,
                                                  "clusters": sum(summary["clusters"] for summary in summaries),
                                                  "parts": len(parts), "members": graph["members"],
                                                  "rounds": graph.get("rounds"),
                                                  "graph_resumed": bool(graph.get("resumed"))})
    return tally


def _duplicate_graph_in_process(config: DedupConfig, items: list[dict], run: RunDir,
                                names: list[str]) -> dict:
    """_duplicate_graph's steps in this process on the whole input at once: every document's row in one array
    (fine for the small runs this is used for), each shuffle a single group."""
    from stages.dedup.components import cluster_members_local, star_components_local

    columns = ("key", "length", "text_hash") + tuple(f"band_{band}" for band in range(config.minhash.bands)
                                                     if config.near)
    rows = _map_parts(_signature_rows, items, {"config": config}, columns, {}, in_process=True)
    documents = len(rows["key"])
    partitions = config.shuffle_partitions or shuffle_partitions(documents, config.minhash.bands, 1)
    empty = {"head": np.empty(0, np.uint64), "tail": np.empty(0, np.uint64)}
    exact = _exact_edges(rows) if config.exact and documents else empty
    near = empty
    if config.near and documents:
        near = _near_edges(_band_rows(rows, config.minhash.bands, partitions))
        if config.verify_jaccard is not None and len(near["head"]):
            near = _verified_local(near, [item["path"] for item in items], config)
    larger, smaller = oriented(np.concatenate([exact["head"], near["head"]]),
                               np.concatenate([exact["tail"], near["tail"]]))
    stars = dict(zip(("larger", "smaller", "rounds"), star_components_local(larger, smaller)))
    members = cluster_members_local(stars["larger"], stars["smaller"], rows)
    parts = key_part(members["key"])
    written = [_write_part_members({name: values[parts == part] for name, values in members.items()},
                                   str(run.dedup / MEMBERS), names)
               for part in np.unique(parts).tolist()]
    return _graph_summary(documents, partitions, names, written, stars["rounds"])


def _write_part_members(group: dict, directory: str, names: list[str]) -> dict:
    """The cluster members of one documents part, sorted by key, as dedup/_members/<part name>: what that part's
    filter task reads (the join of removed documents with their parts)."""
    part = int(key_part(group["key"][:1])[0])
    order = np.argsort(group["key"], kind="stable")
    atomic_write_parquet(storage_path(directory) / names[part], pa.table({
        "key": pa.array(group["key"][order].astype(np.uint64)),
        "cluster": pa.array(group["cluster"][order].astype(np.uint64)),
        "kept": pa.array(group["kept"][order].astype(np.uint64)),
        "exact": pa.array(group["exact"][order].astype(bool)),
    }, schema=MEMBERS_SCHEMA))
    return {"part": np.array([part]), "members": np.array([len(order)])}


def _graph_summary(documents: int, partitions: int, names: list[str], written: list[dict], rounds: int) -> dict:
    """What the graph steps leave for the rest of the stage, and for a resumed run: a few numbers (rounds: of
    connected components) and the names of the parts that have member files."""
    with_members = sorted({names[int(part)] for batch in written for part in batch["part"].tolist()})
    return {"documents": documents, "partitions": partitions, "parts": names, "with_members": with_members,
            "members": int(sum(int(batch["members"].sum()) for batch in written)), "rounds": rounds}


def _duplicate_graph(config: DedupConfig, items: list[dict], workers: int, options: dict, run: RunDir,
                     names: list[str], step: StepReport = no_steps) -> dict:
    """Signatures, the exact and near shuffles, the optional Jaccard check, connected components, the keep rule and
    the members' shuffle by part into their files, on Ray: the driver holds dataset handles and counts."""
    import pyarrow as pa
    import ray.data

    from stages.dedup.components import cluster_members, star_components

    rows = (
        ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        .map_batches(_signature_rows, fn_kwargs={"config": config}, batch_size=1, batch_format="numpy", **options)
        .materialize()
    )
    documents = rows.count()
    partitions = config.shuffle_partitions or shuffle_partitions(documents, config.minhash.bands, workers)
    use_shuffle(config, documents, rows)

    edges = [ray.data.from_arrow(pa.table({"head": pa.array([], pa.uint64()), "tail": pa.array([], pa.uint64())}))]
    if config.exact and documents:
        step("exact", documents, "documents")
        hashed = rows.select_columns(["key", "length", "text_hash"]).map_batches(
            lambda b: {**b, "partition": (b["text_hash"] % np.uint64(partitions)).astype(np.int64)},
            batch_format="numpy", **options,
        )
        edges.append(hashed.groupby("partition", num_partitions=partitions).map_groups(
            _exact_edges, batch_format="numpy", **options))
    if config.near and documents:
        # exact duplicates are banded too (their edges join what exact edges join already): no list of them to send
        step("near", documents, "documents")
        banded = rows.map_batches(
            _band_rows, fn_kwargs={"bands": config.minhash.bands, "partitions": partitions},
            batch_format="numpy", **options,
        )
        near = banded.groupby("partition", num_partitions=partitions).map_groups(
            _near_edges, batch_format="numpy", **options)
        if config.verify_jaccard is not None:
            step("verify", documents, "documents")
            near = _verified(near, [item["path"] for item in items], config, partitions, options)
        edges.append(near)
    step("clusters", documents, "documents")
    union = (edges[0].union(*edges[1:]) if len(edges) > 1 else edges[0]).materialize()  # one shuffle at a time
    stars, rounds = star_components(
        union.map_batches(lambda b: dict(zip(("larger", "smaller"), oriented(b["head"], b["tail"]))),
                          batch_format="numpy", **options),
        partitions, options)
    members = cluster_members(stars, rows.select_columns(["key", "length", "text_hash"]), partitions,
                              options).materialize()
    by_part = members.map_batches(lambda batch: {**batch, "part": key_part(batch["key"])}, batch_format="numpy",
                                  **options)
    written = by_part.groupby("part", num_partitions=max(1, min(len(items), partitions))).map_groups(
        _write_part_members, fn_kwargs={"directory": str(run.dedup / MEMBERS), "names": names},
        batch_format="numpy", **options)
    return _graph_summary(documents, partitions, names, [_collect(written, ("part", "members"))], rounds)


def _graph_file(run: RunDir) -> StoragePath:
    return run.dedup / MEMBERS / "_done.json"


def _load_graph(run: RunDir, names: list[str]) -> dict | None:
    """What the graph steps left (dedup/_members/_done.json), when they ran on these same parts (the run's
    config is checked by the runner): a run that died after them resumes from there."""
    if not _graph_file(run).exists():
        return None
    graph = json.loads(_graph_file(run).read_text())
    if graph.get("parts") != names:
        return None
    return {**graph, "resumed": True}
