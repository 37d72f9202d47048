"""The graph half of deduplication, as vectorised pure functions the runner composes on Ray.

Documents are identified by a 64-bit key (their part file's index in the high 32 bits, their row in the low 32),
which is unique by construction, unlike a hash of their id. Within one shuffle partition, rows that share a group
key (an exact text hash, or one LSH band key) become edges: a star from the group's best member to each other
member. All edges of the run, and only they, come to the driver, where connected components turn them into
clusters and the best member of each cluster is kept.

"Best" is the documented keep rule: the longest text; among equally long ones, the first in input order (the
smallest key), so that the same input always keeps the same documents.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KEY_ROW_BITS = 32


def document_keys(part_index: int, rows: int) -> np.ndarray:
    """Keys of the rows of one part file."""
    return (np.uint64(part_index) << np.uint64(KEY_ROW_BITS)) | np.arange(rows, dtype=np.uint64)


def key_part(keys: np.ndarray) -> np.ndarray:
    return (keys >> np.uint64(KEY_ROW_BITS)).astype(np.int64)


def key_row(keys: np.ndarray) -> np.ndarray:
    return (keys & np.uint64((1 << KEY_ROW_BITS) - 1)).astype(np.int64)


def _best_first(group_keys: np.ndarray, lengths: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Order that sorts rows by group, and within a group puts the best member (longest, then first) first."""
    return np.lexsort((keys, -lengths, group_keys))


def star_edges(group_keys: np.ndarray, keys: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges (best member, other member) for every group of rows sharing a group key with at least two rows.

    A document appearing twice in one group (it cannot, but cheaply guarded) gives no self-edge.
    """
    if len(keys) < 2:
        empty = np.empty(0, dtype=np.uint64)
        return empty, empty
    order = _best_first(group_keys, lengths.astype(np.int64), keys)
    grouped, members = group_keys[order], keys[order]
    starts = np.flatnonzero(np.concatenate(([True], grouped[1:] != grouped[:-1])))
    sizes = np.diff(np.append(starts, len(grouped)))
    heads = np.repeat(members[starts], sizes)
    others = np.ones(len(members), dtype=bool)
    others[starts] = False
    others &= members != heads
    return heads[others], members[others]


@dataclass
class Clusters:
    """Connected components of the duplicate graph, with the kept member of each."""

    members: np.ndarray  # keys of every document in a cluster of two or more, sorted
    cluster: np.ndarray  # cluster index of each member
    kept: np.ndarray  # key kept in each cluster (indexed by cluster)

    @property
    def removed(self) -> np.ndarray:
        """Keys of the members that are not kept, sorted."""
        return self.members[self.members != self.kept[self.cluster]]

    def kept_for(self, keys: np.ndarray) -> np.ndarray:
        """The kept key of each member key's cluster."""
        return self.kept[self.cluster[np.searchsorted(self.members, keys)]]


def connected_components(
    heads: np.ndarray, tails: np.ndarray, vertex_keys: np.ndarray, vertex_lengths: np.ndarray
) -> Clusters:
    """Clusters from edges; `vertex_keys`/`vertex_lengths` give the length of every key that appears in an edge.

    One traversal of the graph by scipy (the edges are all in this process), so the work grows with the number
    of vertices and edges whatever the clusters' shape: a long chain costs no more than a bushy cluster. Clusters
    are numbered in the order of their smallest member, whatever order scipy finds them in.
    """
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components as scipy_components

    members, ends = np.unique(np.concatenate([heads, tails]), return_inverse=True)
    if not len(members):
        empty = np.empty(0, dtype=np.uint64)
        return Clusters(empty, np.empty(0, dtype=np.int64), empty)
    edges = coo_array((np.ones(len(heads), dtype=bool), (ends[:len(heads)], ends[len(heads):])),
                      shape=(len(members), len(members)))
    count, labels = scipy_components(edges, directed=False)
    first_member = np.unique(labels, return_index=True)[1]  # members are sorted: the first is the smallest
    number = np.empty(count, dtype=np.int64)
    number[np.argsort(first_member)] = np.arange(count)
    cluster = number[labels]
    order = np.argsort(vertex_keys)
    lengths = vertex_lengths[order][np.searchsorted(vertex_keys[order], members)]
    best = np.lexsort((members, -lengths.astype(np.int64), cluster))
    first_of_cluster = np.flatnonzero(np.concatenate(([True], cluster[best][1:] != cluster[best][:-1])))
    return Clusters(members, cluster, members[best][first_of_cluster])


def member_attributes(keys: np.ndarray, is_member: np.ndarray, roots: np.ndarray, lengths: np.ndarray,
                      text_hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Join, within one shuffle partition by key, the member rows (key, root: one per star edge end, so a root comes
    several times) with the document rows (key, length, text hash): (key, root, length, text hash) of each member,
    sorted by key. Documents in no cluster are dropped here."""
    member_keys, first = np.unique(keys[is_member], return_index=True)
    member_roots = roots[is_member][first]
    documents = ~is_member
    order = np.argsort(keys[documents], kind="stable")
    document_keys_sorted = keys[documents][order]
    at = np.searchsorted(document_keys_sorted, member_keys)
    if len(member_keys) and (at.max() >= len(document_keys_sorted)
                             or not np.array_equal(document_keys_sorted[at], member_keys)):
        raise ValueError("a duplicate-graph vertex has no document row")
    rows = order[at]
    return member_keys, member_roots, lengths[documents][rows], text_hashes[documents][rows]


def keep_best(roots: np.ndarray, keys: np.ndarray, lengths: np.ndarray,
              text_hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For the members of whole clusters (grouped by root): (key, root, kept key, exact) per member, sorted by root
    then best first. The kept member is the best (the longest, then the first in input order: the keep rule above);
    `exact`: the member's normalised text equals the kept one's (exact_duplicate rather than near_duplicate)."""
    if not len(roots):
        return keys, roots, keys, np.empty(0, dtype=bool)
    order = np.lexsort((keys, -lengths.astype(np.int64), roots))
    roots, keys, text_hashes = roots[order], keys[order], text_hashes[order]
    starts = np.flatnonzero(np.concatenate(([True], roots[1:] != roots[:-1])))
    sizes = np.diff(np.append(starts, len(roots)))
    kept = np.repeat(keys[starts], sizes)
    return keys, roots, kept, text_hashes == np.repeat(text_hashes[starts], sizes)
