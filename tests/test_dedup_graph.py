"""The graph half of dedup: star edges per group, connected components, and the keep rule."""

import numpy as np

from stages.dedup_graph import connected_components, document_keys, key_part, key_row, star_edges


def reference_components(edges: list[tuple[int, int]], vertices: int) -> list[int]:
    parent = list(range(vertices))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        parent[max(root(a), root(b))] = min(root(a), root(b))
    return [root(x) for x in range(vertices)]


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


def test_components_match_a_reference_union_find_on_random_graphs():
    rng = np.random.default_rng(0)
    for _ in range(20):
        vertices = 300
        edges = rng.integers(0, vertices, size=(int(rng.integers(1, 400)), 2))
        lengths = rng.integers(1, 4, size=vertices)
        clusters = connected_components(edges[:, 0].astype(np.uint64), edges[:, 1].astype(np.uint64),
                                        np.arange(vertices, dtype=np.uint64), lengths)
        reference = reference_components([tuple(edge) for edge in edges.tolist()], vertices)
        same_cluster = {(x, y) for i, x in enumerate(clusters.members.tolist())
                        for j, y in enumerate(clusters.members.tolist()) if clusters.cluster[i] == clusters.cluster[j]}
        expected = {(x, y) for x in clusters.members.tolist() for y in clusters.members.tolist()
                    if reference[x] == reference[y]}
        assert same_cluster == expected
        for index, kept in enumerate(clusters.kept.tolist()):
            group = clusters.members[clusters.cluster == index].tolist()
            assert kept == min(group, key=lambda key: (-lengths[key], key))


def test_a_long_chain_needs_few_rounds():
    count = 100_000
    heads = np.arange(count - 1, dtype=np.uint64)
    clusters = connected_components(heads, heads + np.uint64(1), np.arange(count, dtype=np.uint64),
                                    np.ones(count, dtype=np.int64))
    assert len(clusters.kept) == 1 and clusters.kept[0] == 0 and len(clusters.removed) == count - 1


def test_no_edges_no_clusters():
    empty = np.empty(0, dtype=np.uint64)
    clusters = connected_components(empty, empty, empty, np.empty(0, dtype=np.int64))
    assert len(clusters.members) == 0 and len(clusters.removed) == 0
