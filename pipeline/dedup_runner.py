"""Global deduplication on Ray: exact (normalised-text hash) and near (MinHash-LSH), across all input files.

The plan, with what lives where:
1. signatures: one Ray task per documents part computes, for each document, its key (part index, row), text
   length, normalised-text hash and LSH band keys (vectorised MinHash). The rows go to Ray's object store, which
   spills to disk; the driver never holds them.
2. exact: rows are shuffled by text hash (Ray Data hash shuffle: groupby on a partition of the hash, so that a
   group arrives whole in one call) and each group gives star edges from its best member.
3. near: rows are exploded into (band key, key, length) rows, shuffled the same way, and every bucket holding
   several documents gives star edges. Optionally each candidate pair's real shingle Jaccard is checked (a second
   shuffle, keyed by pair) and pairs under the threshold are dropped (that check still gathers the candidate pairs
   on the driver).
4. clusters: connected components of the edges by alternating large-star / small-star steps on Ray
   (pipeline/components.py: shuffles, the driver counts changed edges per round), then the members joined with
   their documents' lengths and text hashes and the best of each cluster kept (a shuffle by key, one by cluster).
   The members (33 bytes each: key, cluster, kept, exact) come to the driver; the edges never do.
5. filter: one task per part drops the removed rows and writes dedup/documents/part-<name>.parquet, plus the ids of
   cluster members for dedup/clusters.parquet.
Steps 1-4 are saved as dedup/_graph.npz (the members): a run that dies after them resumes from there.

`in_process=True` (a small run that the runner keeps out of Ray, see RayConfig.in_process_max_mb) runs the same
functions on the whole input at once in this process: one group per hash instead of one per shuffle partition,
one partition for the star steps, the same members, the same output. Ray Data is imported only by the Ray path.
"""

from __future__ import annotations

import io
import time

from typing import TYPE_CHECKING, Callable

import numpy as np
import pyarrow as pa

from pipeline.io.atomic import AtomicParquetWriter, atomic_write_bytes, atomic_write_json, atomic_write_parquet
from pipeline.io.storage import StoragePath, read_parquet, storage_path
from pipeline.progress import StepReport, no_steps
from pipeline.run_dir import RunDir
from pipeline.stats import EXAMPLES_PER_REASON, StageTally
from stages.dedup import DedupConfig, shuffle_partitions
from stages.dedup_graph import Clusters, document_keys, key_part, key_row, star_edges
from stages.star_components import oriented, unique_pairs
from stages.minhash import NO_BUCKET, band_keys, document_hashes, jaccard, shingle_sets, signatures

if TYPE_CHECKING:
    import ray.data

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


def _band_rows(batch: dict, bands: int, partitions: int, removed: np.ndarray) -> dict:
    keep = ~np.isin(batch["key"], removed, assume_unique=False)
    keys, lengths = batch["key"][keep], batch["length"][keep]
    band_values = np.stack([batch[f"band_{band}"][keep] for band in range(bands)], axis=1).reshape(-1)
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


def _collect_edges(dataset: ray.data.Dataset) -> dict[str, np.ndarray]:
    """All edges of a dataset on the driver, each pair once. A near-identical pair shares most of its 14 bands and
    arrives once per band, so the batches are merged into the unique set whenever they outgrow it: the driver
    holds at most about twice the unique edges, not bands times as many."""
    heads, tails = np.empty(0, np.uint64), np.empty(0, np.uint64)
    pending_heads, pending_tails, pending = [], [], 0
    for batch in dataset.iter_batches(batch_format="numpy", batch_size=None):
        pending_heads.append(batch["head"])
        pending_tails.append(batch["tail"])
        pending += len(batch["head"])
        if pending > max(1 << 20, len(heads)):
            heads, tails = unique_pairs(np.concatenate([heads, *pending_heads]), np.concatenate([tails, *pending_tails]))
            pending_heads, pending_tails, pending = [], [], 0
    heads, tails = unique_pairs(np.concatenate([heads, *pending_heads]), np.concatenate([tails, *pending_tails]))
    return {"head": heads, "tail": tails}


def _collect(dataset: ray.data.Dataset, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {name: [] for name in columns}
    for batch in dataset.iter_batches(batch_format="numpy", batch_size=None):
        for name in columns:
            parts[name].append(batch[name])
    return {name: np.concatenate(arrays) if arrays else np.empty(0, np.uint64) for name, arrays in parts.items()}


def _shingle_rows(batch: dict, config: DedupConfig, edge_heads: np.ndarray, edge_tails: np.ndarray) -> dict:
    """For the documents of one part that are in candidate pairs: one row per (pair, side) with its shingles."""
    part, path = int(batch["part"][0]), str(batch["path"][0])
    texts = read_parquet(path, columns=["text"]).column("text").to_pylist()
    keys = document_keys(part, len(texts))
    pair_ids, sides, rows_of = [], [], []
    for side, ends in ((0, edge_heads), (1, edge_tails)):
        in_part = np.flatnonzero(key_part(ends) == part)
        pair_ids.append(in_part)
        sides.append(np.full(len(in_part), side, dtype=np.int8))
        rows_of.append(key_row(ends[in_part]))
    pair_ids, sides, rows_of = np.concatenate(pair_ids), np.concatenate(sides), np.concatenate(rows_of)
    needed = np.unique(rows_of)
    sets = dict(zip(needed.tolist(), shingle_sets([texts[row] or "" for row in needed], config.minhash)))
    del keys
    return {
        "pair": pair_ids.astype(np.int64),
        "side": sides,
        "shingles": [sets[row] for row in rows_of.tolist()],
    }


def _pair_similarity(group: dict) -> dict:
    order = np.lexsort((group["side"], group["pair"]))
    pairs = group["pair"][order]
    shingles = [group["shingles"][i] for i in order]
    out_pairs, similarity = [], []
    for index in range(0, len(pairs) - 1):
        if pairs[index] == pairs[index + 1]:
            out_pairs.append(pairs[index])
            similarity.append(jaccard(np.asarray(shingles[index]), np.asarray(shingles[index + 1])))
    return {"pair": np.array(out_pairs, dtype=np.int64), "jaccard": np.array(similarity, dtype=np.float64)}


def _filter_part(
    batch: dict, documents_out: str, rejects_out: str | None, members: np.ndarray, removed: np.ndarray,
    removed_reason: np.ndarray, cluster_of_member: np.ndarray,
) -> dict:
    """Write one part without its removed rows; return the ids of its cluster members for the clusters table."""
    part, path = int(batch["part"][0]), str(batch["path"][0])
    table = read_parquet(path)
    keys = document_keys(part, table.num_rows)
    is_removed = np.isin(keys, removed)
    name = storage_path(path).name
    writer = AtomicParquetWriter(storage_path(documents_out) / name, table.schema)
    writer.write(table.filter(pa.array(~is_removed)))
    writer.commit()
    if rejects_out is not None and is_removed.any():
        dropped = table.filter(pa.array(is_removed))
        reasons = removed_reason[np.searchsorted(removed, keys[is_removed])]
        dropped = dropped.append_column("stage", pa.array(["dedup"] * dropped.num_rows, pa.string()))
        dropped = dropped.append_column("drop_reason", pa.array(reasons.tolist(), pa.string()))
        atomic_write_parquet(storage_path(rejects_out) / name, dropped)
    in_cluster = np.isin(keys, members)
    ids = table.column("id").filter(pa.array(in_cluster)).to_pylist()
    urls = (table.column("url").filter(pa.array(in_cluster)).to_pylist() if "url" in table.column_names
            else [None] * len(ids))
    urls = [url or "" for url in urls]  # "" not None: a column of None does not survive the trip as strings
    offsets = (table.column("offset").filter(pa.array(in_cluster)).to_numpy(zero_copy_only=False)
               if "offset" in table.column_names else np.full(len(ids), -1))
    sources = (table.column("source").filter(pa.array(in_cluster)).to_pylist() if "source" in table.column_names
               else [path] * len(ids))
    member_keys = keys[in_cluster]
    return {
        "key": member_keys,
        "id": np.array(ids, dtype=object),
        "url": np.array(urls, dtype=object),
        "source": np.array([source or "" for source in sources], dtype=object),
        "offset": np.nan_to_num(offsets.astype(np.float64), nan=-1).astype(np.int64),
        "cluster": cluster_of_member[np.searchsorted(members, member_keys)],
    }


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


def _column(values: np.ndarray | list) -> np.ndarray:
    """A batch column as an array; a list (of shingle arrays, say) as an object array, one element per row."""
    if isinstance(values, np.ndarray):
        return values
    column = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):
        column[index] = value
    return column


def run_dedup(config: DedupConfig, run: RunDir, source: StoragePath, rejects: bool, workers: int,
              options: dict | None = None, in_process: bool = False, step: StepReport = no_steps) -> StageTally:
    """Deduplicate the documents under `source` into run.dedup; returns the stage's counts. `options`: what each
    Ray task asks for (num_cpus, memory); `in_process`: no Ray at all, for small runs; `step`: where each step
    (signatures, exact, near, verify, clusters, filter) is reported."""
    options = options or {}
    started = time.monotonic()
    if not in_process:
        from ray.data import DataContext
        from ray.data.context import ShuffleStrategy

        # Sort-based pull shuffle: no aggregator actors to start, so small runs take a second, and it scales
        # (Ray's push-based variant is the choice for clusters shuffling terabytes).
        DataContext.get_current().shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    parts = _part_files(source)
    items = [{"part": index, "path": path} for index, path in enumerate(parts)]
    graph = _load_graph(run, parts)
    if graph is None:
        step("signatures", len(parts), "parts")
        graph = (_duplicate_graph_in_process(config, items) if in_process
                 else _duplicate_graph(config, items, workers, options, step))
        _save_graph(run, parts, graph)
    documents, partitions = int(graph["documents"]), int(graph["partitions"])
    clusters, reasons = _clusters_of(graph)
    removed = clusters.removed
    step("filter", len(parts), "parts")
    members = _map_parts(
        _filter_part,
        items,
        {
            "documents_out": str(run.dedup_documents), "rejects_out": str(run.rejects / "dedup") if rejects else None,
            "members": clusters.members, "removed": removed, "removed_reason": reasons,
            "cluster_of_member": clusters.cluster,
        },
        ("key", "id", "url", "source", "offset", "cluster"),
        options,
        in_process,
    )
    atomic_write_parquet(run.dedup / "clusters.parquet", _clusters_table(clusters, members, removed, reasons))
    tally = StageTally("dedup", rows_in=documents, kept=documents - len(removed), seconds=time.monotonic() - started)
    for reason, count in zip(*np.unique(reasons, return_counts=True)):
        tally.dropped[str(reason)] = int(count)
    tally.examples = _examples(clusters, members, removed, reasons)
    atomic_write_json(run.dedup / "_done.json", {"stage": tally.to_dict(), "partitions": partitions,
                                                  "clusters": int(len(clusters.kept)), "parts": len(parts),
                                                  "graph_resumed": bool(graph.get("resumed", False))})
    return tally


def _verified(near: dict, items: list[dict], config: DedupConfig, partitions: int, options: dict) -> dict:
    """Keep the candidate pairs whose real shingle Jaccard reaches the configured threshold."""
    import ray.data

    shingled = ray.data.from_items(items, override_num_blocks=max(1, len(items))).map_batches(
        _shingle_rows, fn_kwargs={"config": config, "edge_heads": near["head"], "edge_tails": near["tail"]},
        batch_size=1, batch_format="numpy", **options,
    ).map_batches(lambda b: {**b, "bucket": b["pair"] % partitions}, batch_format="numpy", **options)
    scored = _collect(shingled.groupby("bucket", num_partitions=partitions).map_groups(_pair_similarity, batch_format="numpy", **options),
                      ("pair", "jaccard"))
    good = scored["pair"][scored["jaccard"] >= config.verify_jaccard]
    return {"head": near["head"][good], "tail": near["tail"][good]}


def _clusters_of(graph: dict) -> tuple[Clusters, np.ndarray]:
    """The clusters of the saved members (sorted by key), numbered in the order of their smallest member (a
    cluster's root), and the reason of each removed member: exact_duplicate when its normalised text equals the
    kept one's, else near_duplicate."""
    keys, kept, exact = graph["member_key"], graph["member_kept"], graph["member_exact"]
    roots, cluster = np.unique(graph["member_root"], return_inverse=True)
    kept_of_cluster = np.empty(len(roots), dtype=np.uint64)
    kept_of_cluster[cluster] = kept
    is_removed = keys != kept
    reasons = np.where(exact[is_removed], "exact_duplicate", "near_duplicate").astype(object)
    return Clusters(keys, cluster.astype(np.int64), kept_of_cluster), reasons


def _members_in_process(heads: np.ndarray, tails: np.ndarray, rows: dict) -> dict[str, np.ndarray]:
    """pipeline/components.py's steps on one partition: the star steps, the join with the documents, the keep rule."""
    from pipeline.components import cluster_members_local, star_components_local

    larger, smaller, _ = star_components_local(heads, tails)
    members = cluster_members_local(larger, smaller, rows)
    return _sorted_members(members["key"], members["cluster"], members["kept"], members["exact"])


def _sorted_members(keys: np.ndarray, roots: np.ndarray, kept: np.ndarray, exact: np.ndarray) -> dict:
    order = np.argsort(keys, kind="stable")
    return {"member_key": keys[order].astype(np.uint64), "member_root": roots[order].astype(np.uint64),
            "member_kept": kept[order].astype(np.uint64), "member_exact": exact[order].astype(bool)}


def _clusters_table(clusters: Clusters, members: dict, removed: np.ndarray, reasons: np.ndarray) -> pa.Table:
    """One row per cluster: its kept document and the removed ones with their reasons. Vectorised (no per-member
    Python objects beyond the id strings), since a big run has hundreds of millions of members."""
    if not len(clusters.kept):
        return CLUSTERS_SCHEMA.empty_table()
    order = np.argsort(members["key"])
    if not np.array_equal(members["key"][order], clusters.members):
        raise RuntimeError("dedup: the documents parts changed while the run was deduplicating them")
    ids, urls = members["id"][order], members["url"][order]
    kept_index = np.searchsorted(clusters.members, clusters.kept)
    is_removed = clusters.members != clusters.kept[clusters.cluster]
    removed_order = np.flatnonzero(is_removed)[np.argsort(clusters.cluster[is_removed], kind="stable")]
    sizes = np.bincount(clusters.cluster[is_removed], minlength=len(clusters.kept))
    offsets = pa.array(np.concatenate(([0], np.cumsum(sizes))).astype(np.int32))
    removed_reason = reasons[np.searchsorted(removed, clusters.members[removed_order])]
    kept_urls = [url or None for url in urls[kept_index].tolist()]
    return pa.table({
        "cluster": pa.array(np.arange(len(clusters.kept), dtype=np.int64)),
        "size": pa.array((sizes + 1).astype(np.int32)),
        "kept_id": pa.array(ids[kept_index].tolist(), pa.string()),
        "kept_url": pa.array(kept_urls, pa.string()),
        "removed_ids": pa.ListArray.from_arrays(offsets, pa.array(ids[removed_order].tolist(), pa.string())),
        "removed_reasons": pa.ListArray.from_arrays(offsets, pa.array(removed_reason.tolist(), pa.string())),
    }, schema=CLUSTERS_SCHEMA)


def _examples(clusters: Clusters, members: dict, removed: np.ndarray, reasons: np.ndarray) -> list[dict]:
    """The first EXAMPLES_PER_REASON removed documents of each reason, with where they came from and which
    document of which cluster was kept instead (for `pipeline stats` and stats/examples.parquet)."""
    order = np.argsort(members["key"])
    sorted_keys = members["key"][order]
    examples = []
    for reason in sorted(set(reasons.tolist())):
        chosen = removed[reasons == reason][:EXAMPLES_PER_REASON]
        rows = order[np.searchsorted(sorted_keys, chosen)]
        kept_rows = order[np.searchsorted(sorted_keys, clusters.kept_for(chosen))]
        for row, kept_row in zip(rows.tolist(), kept_rows.tolist()):
            examples.append({
                "outcome": "dropped", "reason": str(reason), "source": members["source"][row] or None,
                "offset": int(members["offset"][row]) if members["offset"][row] >= 0 else None,
                "url": members["url"][row] or None,
                "detail": f"cluster {int(members['cluster'][row])}: kept {members['id'][kept_row]}",
            })
    return examples


def _duplicate_graph_in_process(config: DedupConfig, items: list[dict]) -> dict[str, np.ndarray]:
    """_duplicate_graph's steps in this process on the whole input at once: every document's row in one array
    (fine for the small runs this is used for), each shuffle a single group."""
    columns = ("key", "length", "text_hash") + tuple(f"band_{band}" for band in range(config.minhash.bands)
                                                     if config.near)
    rows = _map_parts(_signature_rows, items, {"config": config}, columns, {}, in_process=True)
    documents = len(rows["key"])
    partitions = config.shuffle_partitions or shuffle_partitions(documents, config.minhash.bands, 1)
    empty = {"head": np.empty(0, np.uint64), "tail": np.empty(0, np.uint64)}
    exact = _exact_edges(rows) if config.exact and documents else empty
    exact = dict(zip(("head", "tail"), unique_pairs(exact["head"], exact["tail"])))
    near = empty
    if config.near and documents:
        near = _near_edges(_band_rows(rows, config.minhash.bands, partitions, np.unique(exact["tail"])))
        if config.verify_jaccard is not None and len(near["head"]):
            shingled = _map_parts(_shingle_rows, items, {"config": config, "edge_heads": near["head"],
                                                         "edge_tails": near["tail"]}, ("pair", "side", "shingles"),
                                  {}, in_process=True)
            scored = _pair_similarity(shingled)
            good = scored["pair"][scored["jaccard"] >= config.verify_jaccard]
            near = {"head": near["head"][good], "tail": near["tail"][good]}
    heads = np.concatenate([exact["head"], near["head"]])
    tails = np.concatenate([exact["tail"], near["tail"]])
    return {"documents": np.array(documents), "partitions": np.array(partitions),
            **_members_in_process(heads, tails, rows)}


def _duplicate_graph(config: DedupConfig, items: list[dict], workers: int, options: dict,
                     step: StepReport = no_steps) -> dict[str, np.ndarray]:
    """Signatures, the exact and near shuffles, the optional Jaccard check, connected components and the keep
    rule, on Ray: the members of every cluster (key, cluster root, kept key, exact), which alone reach the driver."""
    import pyarrow as pa
    import ray.data

    from pipeline.components import cluster_members, star_components

    rows = (
        ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        .map_batches(_signature_rows, fn_kwargs={"config": config}, batch_size=1, batch_format="numpy", **options)
        .materialize()
    )
    documents = rows.count()
    partitions = config.shuffle_partitions or shuffle_partitions(documents, config.minhash.bands, workers)

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
            _band_rows, fn_kwargs={"bands": config.minhash.bands, "partitions": partitions,
                                   "removed": np.empty(0, np.uint64)},
            batch_format="numpy", **options,
        )
        near = banded.groupby("partition", num_partitions=partitions).map_groups(
            _near_edges, batch_format="numpy", **options)
        if config.verify_jaccard is not None:
            pairs = _collect_edges(near)
            if len(pairs["head"]):
                step("verify", len(pairs["head"]), "pairs")
                pairs = _verified(pairs, items, config, partitions, options)
            near = ray.data.from_arrow(pa.table({"head": pairs["head"], "tail": pairs["tail"]}))
        edges.append(near)
    step("clusters", documents, "documents")
    union = edges[0].union(*edges[1:]) if len(edges) > 1 else edges[0]
    stars, _ = star_components(
        union.map_batches(lambda b: dict(zip(("larger", "smaller"), oriented(b["head"], b["tail"]))),
                          batch_format="numpy", **options),
        partitions, options)
    members = _collect(cluster_members(stars, rows.select_columns(["key", "length", "text_hash"]), partitions,
                                       options), ("key", "cluster", "kept", "exact"))
    return {"documents": np.array(documents), "partitions": np.array(partitions),
            **_sorted_members(members["key"], members["cluster"], members["kept"], members["exact"])}


def _graph_file(run: RunDir) -> StoragePath:
    return run.dedup / "_graph.npz"


def _save_graph(run: RunDir, parts: list[str], graph: dict[str, np.ndarray]) -> None:
    """The stage's one expensive intermediate: a re-run after a crash in the steps that follow starts from it."""
    buffer = io.BytesIO()
    np.savez(buffer, parts=np.array([storage_path(p).name for p in parts]), **graph)
    atomic_write_bytes(_graph_file(run), buffer.getvalue())


def _load_graph(run: RunDir, parts: list[str]) -> dict[str, np.ndarray] | None:
    """The saved graph, when it was made from these same parts (the run's config is checked by the runner)."""
    if not _graph_file(run).exists():
        return None
    with np.load(io.BytesIO(_graph_file(run).read_bytes()), allow_pickle=False) as saved:
        graph = {name: saved[name] for name in saved.files}
    if graph.pop("parts").tolist() != [storage_path(p).name for p in parts] or "member_key" not in graph:
        return None  # other parts, or the edges an earlier version saved
    graph["resumed"] = np.array(True)
    return graph
