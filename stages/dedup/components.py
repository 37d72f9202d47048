"""Connected components of an edge table that never leaves Ray: alternating large-star and small-star steps
(stages/dedup/star.py), each a shuffle of the edges by one endpoint into `partitions` groups. The driver holds
the dataset handles and one number per step, the edges that changed; the result is a dataset of (vertex, root)
edges, root being the smallest vertex of the component, with every non-root vertex once. The caller picks Ray
Data's shuffle strategy (runner.use_shuffle); each step's output is materialised, so that one shuffle runs at a time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from stages.dedup.graph import keep_best, member_attributes
from stages.dedup.star import both_ends, large_star, oriented, small_star

if TYPE_CHECKING:
    import ray.data

# Keys share their high bits (a document key is part << 32 | row): mix them before taking a partition.
_MIX = np.uint64(0x9E3779B97F4A7C15)
MAX_ROUNDS = 200  # far above what the logarithmic bound allows for any realistic graph: a guard, not a limit


def partition_of(vertices: np.ndarray, partitions: int) -> np.ndarray:
    return (((vertices * _MIX) >> np.uint64(32)) % np.uint64(partitions)).astype(np.int64)


def _large_star_rows(batch: dict, partitions: int) -> dict:
    centres, neighbours = both_ends(batch["larger"], batch["smaller"])
    return {"centre": centres, "neighbour": neighbours, "partition": partition_of(centres, partitions)}


def _small_star_rows(batch: dict, partitions: int) -> dict:
    return {"centre": batch["larger"], "neighbour": batch["smaller"],
            "partition": partition_of(batch["larger"], partitions)}


def _step_output(step: Callable) -> Callable[[dict], dict]:
    def run(group: dict) -> dict:
        larger, smaller, changed = step(group["centre"], group["neighbour"])
        counts = np.zeros(len(larger), dtype=np.int64)
        if len(counts):
            counts[0] = changed  # the partition's count rides on its first edge: summed by the driver
        return {"larger": larger, "smaller": smaller, "changed": counts}
    return run


_LARGE, _SMALL = _step_output(large_star), _step_output(small_star)


def _step(edges: ray.data.Dataset, rows: Callable, step: Callable, partitions: int,
          options: dict) -> tuple[ray.data.Dataset, int]:
    stepped = (edges.map_batches(rows, fn_kwargs={"partitions": partitions}, batch_format="numpy", **options)
               .groupby("partition", num_partitions=partitions).map_groups(step, batch_format="numpy", **options)
               .materialize())
    return stepped, int(stepped.sum("changed") or 0)


def star_components(edges: ray.data.Dataset, partitions: int, options: dict | None = None,
                    rounds_seen: Callable[[int, int], None] | None = None) -> tuple[ray.data.Dataset, int]:
    """(the (larger = vertex, smaller = root) edges of every non-root vertex, rounds taken) for a dataset of edges
    with columns `larger` and `smaller` (uint64; either orientation, self-loops ignored). `rounds_seen(round,
    changed)` hears each round's count of changed edges."""
    options = options or {}
    current = edges.map_batches(lambda batch: dict(zip(("larger", "smaller"),
                                                       oriented(batch["larger"], batch["smaller"]))),
                                batch_format="numpy", **options)
    for number in range(1, MAX_ROUNDS + 1):
        current, large_changed = _step(current, _large_star_rows, _LARGE, partitions, options)
        current, small_changed = _step(current, _small_star_rows, _SMALL, partitions, options)
        if rounds_seen is not None:
            rounds_seen(number, large_changed + small_changed)
        if large_changed + small_changed == 0:
            return current.select_columns(["larger", "smaller"]), number
    raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")


def star_components_local(larger: np.ndarray, smaller: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The same steps on one partition in this process (every vertex's edges are in it): for small graphs and for
    measuring rounds without a shuffle."""
    larger, smaller = oriented(larger, smaller)
    for number in range(1, MAX_ROUNDS + 1):
        larger, smaller, large_changed = large_star(*both_ends(larger, smaller))
        larger, smaller, small_changed = small_star(larger, smaller)
        if large_changed + small_changed == 0:
            return larger, smaller, number
    raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")


def _member_rows(batch: dict, partitions: int) -> dict:
    """Both ends of each star edge as a member row (key, root): the vertex, and the root as its own."""
    keys = np.concatenate([batch["larger"], batch["smaller"]])
    zeros = np.zeros(len(keys), dtype=np.uint64)
    return {"key": keys, "root": np.concatenate([batch["smaller"], batch["smaller"]]), "length": zeros.astype(np.int64),
            "text_hash": zeros, "is_member": np.ones(len(keys), dtype=bool), "partition": partition_of(keys, partitions)}


def _document_rows(batch: dict, partitions: int) -> dict:
    keys = batch["key"]
    return {"key": keys, "root": np.zeros(len(keys), dtype=np.uint64), "length": batch["length"].astype(np.int64),
            "text_hash": batch["text_hash"], "is_member": np.zeros(len(keys), dtype=bool),
            "partition": partition_of(keys, partitions)}


def _attached(group: dict) -> dict:
    keys, roots, lengths, hashes = member_attributes(group["key"], group["is_member"], group["root"],
                                                     group["length"], group["text_hash"])
    return {"key": keys, "root": roots, "length": lengths, "text_hash": hashes}


def _kept(group: dict) -> dict:
    keys, roots, kept, exact = keep_best(group["root"], group["key"], group["length"], group["text_hash"])
    return {"key": keys, "cluster": roots, "kept": kept, "exact": exact}


def cluster_members(stars: ray.data.Dataset, documents: ray.data.Dataset, partitions: int,
                    options: dict | None = None) -> ray.data.Dataset:
    """(key, cluster, kept, exact) of every document in a cluster of two or more, from the star edges and the
    documents' (key, length, text_hash) rows: a join by key (one shuffle of members and documents together), then
    the keep rule per cluster (a shuffle by root). A cluster is named by its root, its smallest key."""
    options = options or {}
    members = stars.map_batches(_member_rows, fn_kwargs={"partitions": partitions}, batch_format="numpy", **options)
    rows = documents.map_batches(_document_rows, fn_kwargs={"partitions": partitions}, batch_format="numpy",
                                 **options)
    attached = members.union(rows).groupby("partition", num_partitions=partitions).map_groups(
        _attached, batch_format="numpy", **options).materialize()
    by_root = attached.map_batches(lambda batch: {**batch, "partition": partition_of(batch["root"], partitions)},
                                   batch_format="numpy", **options)
    return by_root.groupby("partition", num_partitions=partitions).map_groups(_kept, batch_format="numpy", **options)


def cluster_members_local(larger: np.ndarray, smaller: np.ndarray, documents: dict) -> dict[str, np.ndarray]:
    """cluster_members on one partition in this process, from star edges and documents' key, length, text_hash."""
    members = _member_rows({"larger": larger, "smaller": smaller}, partitions=1)
    rows = _document_rows(documents, partitions=1)
    return _kept(_attached({name: np.concatenate([members[name], rows[name]]) for name in members}))
