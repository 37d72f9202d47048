"""The graph half of dedup: star edges per group, connected components, and the keep rule."""

import numpy as np

from conftest import best_seconds
from stages.dedup.graph import Clusters, connected_components, document_keys, key_part, key_row, star_edges


def reference_clusters(heads: np.ndarray, tails: np.ndarray, lengths: dict[int, int]) -> Clusters:
    """What connected_components must return, by a plain union-find written here: the members sorted, clusters
    numbered in the order of their smallest member, and the longest member kept (the first key among equals)."""
    parent: dict[int, int] = {}

    def root(key: int) -> int:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for head, tail in zip(heads.tolist(), tails.tolist()):
        first, second = root(head), root(tail)
        parent[max(first, second)] = min(first, second)
    members = sorted(parent)
    cluster_of_root: dict[int, int] = {}
    cluster = [cluster_of_root.setdefault(root(key), len(cluster_of_root)) for key in members]
    kept: list[int | None] = [None] * len(cluster_of_root)
    for key, index in zip(members, cluster):
        if kept[index] is None or (-lengths[key], key) < (-lengths[kept[index]], kept[index]):
            kept[index] = key
    return Clusters(np.array(members, dtype=np.uint64), np.array(cluster, dtype=np.int64),
                    np.array(kept, dtype=np.uint64))


def assert_same_clusters(heads: np.ndarray, tails: np.ndarray, keys: np.ndarray, lengths: np.ndarray) -> None:
    """connected_components on these edges equals the reference, member by member, cluster ids and kept keys."""
    shuffled = np.random.default_rng(1).permutation(len(keys))  # the vertex table comes in any order
    clusters = connected_components(heads, tails, keys[shuffled], lengths[shuffled])
    expected = reference_clusters(heads, tails, dict(zip(keys.tolist(), lengths.tolist())))
    assert np.array_equal(clusters.members, expected.members)
    assert np.array_equal(clusters.cluster, expected.cluster)
    assert np.array_equal(clusters.kept, expected.kept)
    assert np.array_equal(clusters.removed, np.setdiff1d(expected.members, expected.kept))


def spread_keys(count: int) -> np.ndarray:
    """`count` document keys spread over several part files, as the runner makes them."""
    parts = 7
    return np.concatenate([document_keys(part, -(-count // parts)) for part in range(parts)])[:count]


def random_order_path(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A chain through `count` keys visited in random order: its diameter is count - 1 whatever the key order."""
    path = rng.permutation(spread_keys(count))
    return path[:-1], path[1:]


def random_graph(vertices: int, edges: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    keys = spread_keys(vertices)
    ends = rng.integers(0, vertices, size=(edges, 2))
    return keys[ends[:, 0]], keys[ends[:, 1]]


def test_keys_hold_part_and_row():
    keys = document_keys(7, 3)
    assert key_part(keys).tolist() == [7, 7, 7] and key_row(keys).tolist() == [0, 1, 2]


def test_each_group_gives_a_star_from_its_longest_member_ties_to_the_first():
    groups = np.array([5, 5, 5, 7, 7, 9], dtype=np.uint64)
    keys = np.array([1, 2, 3, 4, 5, 6], dtype=np.uint64)
    lengths = np.array([10, 30, 30, 8, 8, 99])
    heads, tails = star_edges(groups, keys, lengths)
    assert sorted(zip(heads.tolist(), tails.tolist())) == [(2, 1), (2, 3), (4, 5)]


def test_a_transitive_chain_collapses_to_one_cluster_keeping_the_longest():
    # A~B and B~C but A and C were never compared: one cluster, one kept document.
    a, b, c = np.uint64(10), np.uint64(20), np.uint64(30)
    clusters = connected_components(np.array([a, b]), np.array([b, c]), np.array([a, b, c]), np.array([5, 9, 7]))
    assert clusters.members.tolist() == [10, 20, 30]
    assert len(clusters.kept) == 1 and clusters.kept.tolist() == [20]
    assert clusters.removed.tolist() == [10, 30]


def test_small_random_graphs_match_a_reference_union_find():
    rng = np.random.default_rng(0)
    for _ in range(20):
        vertices = 300
        heads, tails = random_graph(vertices, int(rng.integers(1, 400)), rng)
        assert_same_clusters(heads, tails, spread_keys(vertices), rng.integers(1, 4, size=vertices))


def test_a_random_order_path_of_100_000_documents_matches_a_reference_union_find():
    rng = np.random.default_rng(2)
    heads, tails = random_order_path(100_000, rng)
    assert_same_clusters(heads, tails, spread_keys(100_000), rng.integers(1, 50, size=100_000))


def test_stars_match_a_reference_union_find():
    """One star of 50,000 leaves, a thousand stars of 10, pairs of those joined by an edge between two leaves, and
    edges in both directions."""
    rng = np.random.default_rng(3)
    keys = rng.permutation(spread_keys(100_000))
    small = np.arange(50_001, 60_001).reshape(-1, 10)
    centres = np.concatenate([np.zeros(50_000, dtype=np.int64), np.repeat(small[:, 0], 9), small[0:200:2, 5]])
    leaves = np.concatenate([np.arange(1, 50_001), small[:, 1:].ravel(), small[1:200:2, 7]])
    heads, tails = keys[centres], keys[leaves]
    flip = rng.random(len(heads)) < 0.5
    heads, tails = np.where(flip, tails, heads), np.where(flip, heads, tails)
    assert_same_clusters(heads, tails, keys, rng.integers(1, 4, size=len(keys)))


def test_cliques_match_a_reference_union_find():
    """Cliques of 2 to 400 documents, every pair an edge, repeated edges included."""
    rng = np.random.default_rng(4)
    keys = rng.permutation(spread_keys(2_000))
    heads, tails, start = [], [], 0
    for size in (2, 3, 50, 400, 400, 1_000):
        first, second = np.triu_indices(size, k=1)
        heads.append(keys[start + first])
        tails.append(keys[start + second])
        start += size
    heads.append(heads[-1][:1000])
    tails.append(tails[-1][:1000])
    lengths = np.ones(len(keys), dtype=np.int64)  # all equally long: the first key of each clique is kept
    assert_same_clusters(np.concatenate(heads), np.concatenate(tails), keys, lengths)


def test_a_random_graph_with_a_million_edges_matches_a_reference_union_find():
    rng = np.random.default_rng(5)
    heads, tails = random_graph(1_500_000, 1_000_000, rng)
    assert_same_clusters(heads, tails, spread_keys(1_500_000), rng.integers(1, 20, size=1_500_000))


def test_the_time_does_not_grow_with_a_clusters_diameter():
    """A random-order path (diameter 99,999) costs about what a random graph with as many vertices and edges
    (diameter about log n) costs: the work is a traversal of the edges, not rounds along the longest chain."""
    rng = np.random.default_rng(6)
    count = 100_000
    lengths = np.ones(count, dtype=np.int64)
    keys = spread_keys(count)
    path = random_order_path(count, rng)
    shallow = random_graph(count, count - 1, rng)
    path_seconds = best_seconds(lambda: connected_components(*path, keys, lengths))
    shallow_seconds = best_seconds(lambda: connected_components(*shallow, keys, lengths))
    assert path_seconds < 3 * shallow_seconds, (path_seconds, shallow_seconds)


def test_a_million_edges_cost_a_small_multiple_of_one_scipy_traversal():
    """The whole function (keys to vertex numbers, components, keep rule) on a random graph of 1,000,000 edges
    costs a few times one bare scipy traversal of the same edges: linear work plus sorting the keys, no rounds."""
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components as scipy_components

    rng = np.random.default_rng(7)
    vertices, edges = 1_500_000, 1_000_000
    ends = rng.integers(0, vertices, size=(2, edges))
    keys, lengths = spread_keys(vertices), rng.integers(1, 20, size=vertices)
    numbered = coo_array((np.ones(edges, dtype=bool), (ends[0], ends[1])), shape=(vertices, vertices)).tocsr()
    ours = best_seconds(lambda: connected_components(keys[ends[0]], keys[ends[1]], keys, lengths))
    traversal = best_seconds(lambda: scipy_components(numbered, directed=False))
    assert ours < 10 * traversal, (ours, traversal)


def test_no_edges_no_clusters():
    empty = np.empty(0, dtype=np.uint64)
    clusters = connected_components(empty, empty, empty, np.empty(0, dtype=np.int64))
    assert len(clusters.members) == 0 and len(clusters.removed) == 0
