"""Connected components by alternating large-star / small-star steps: the components scipy finds, each vertex
linked to its component's smallest vertex, in a number of rounds that grows with log n, not with a component's
diameter; on Ray, over shuffled partitions, with the same edges and rounds as in one partition."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from stages.dedup.components import cluster_members, star_components, star_components_local
from stages.dedup.graph import connected_components as scipy_clusters


def random_graph(seed: int, vertices: int, edges: int, chains: int = 0,
                 chain_length: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random sparse edges over keys that look like document keys (part << 32 | row), plus long chains of
    drifting copies: each vertex linked to the next, in a random key order."""
    rng = np.random.default_rng(seed)
    keys = np.unique((rng.integers(0, 64, vertices * 2).astype(np.uint64) << np.uint64(32))
                     | rng.integers(0, 1 << 20, vertices * 2).astype(np.uint64))[:vertices]
    rng.shuffle(keys)
    first, second = keys[rng.integers(0, vertices, edges)], keys[rng.integers(0, vertices, edges)]
    for chain in range(chains):
        chain_keys = keys[chain * chain_length:(chain + 1) * chain_length]
        first, second = np.concatenate([first, chain_keys[:-1]]), np.concatenate([second, chain_keys[1:]])
    return first, second


def scipy_roots(first: np.ndarray, second: np.ndarray) -> dict[int, int]:
    """{vertex: smallest vertex of its component} for every vertex in a component of two or more."""
    keep = first != second
    vertices, ends = np.unique(np.concatenate([first[keep], second[keep]]), return_inverse=True)
    count = int(keep.sum())
    graph = coo_array((np.ones(count, dtype=bool), (ends[:count], ends[count:])), shape=(len(vertices),) * 2)
    _, labels = connected_components(graph, directed=False)
    smallest = {}
    for vertex, label in zip(vertices.tolist(), labels.tolist()):
        smallest.setdefault(label, vertex)  # vertices are sorted: the first of a label is its smallest
    return {vertex: smallest[label] for vertex, label in zip(vertices.tolist(), labels.tolist())}


def roots_of(larger: np.ndarray, smaller: np.ndarray) -> dict[int, int]:
    """{vertex: root} from the (vertex, root) edges, the roots included as their own."""
    assert len(np.unique(larger)) == len(larger)  # every non-root vertex once
    assert not np.isin(smaller, larger).any()  # a root is no one's member: the result is a set of stars
    roots = dict(zip(larger.tolist(), smaller.tolist()))
    roots.update((root, root) for root in smaller.tolist())
    return roots


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_components_are_scipys_with_the_smallest_vertex_as_root(seed):
    first, second = random_graph(seed, vertices=3000, edges=2000, chains=3, chain_length=200)
    larger, smaller, _ = star_components_local(first, second)
    assert roots_of(larger, smaller) == scipy_roots(first, second)


def test_rounds_grow_with_log_n_not_with_the_diameter():
    """A path of n vertices in random key order (diameter n - 1, the worst case for label propagation): the
    rounds, counted, stay within 2 log2 n and grow by a few per 16-fold growth of n."""
    rounds = {}
    for exponent in (6, 10, 14, 17):
        n = 1 << exponent
        first, second = random_graph(exponent, vertices=n, edges=0, chains=1, chain_length=n)
        larger, smaller, rounds[n] = star_components_local(first, second)
        assert len(larger) == n - 1 and set(smaller.tolist()) == {int(min(first.min(), second.min()))}
        assert rounds[n] <= 2 * math.log2(n), rounds
    assert rounds[1 << 17] - rounds[1 << 6] <= 2 * (17 - 6), rounds  # not proportional to n: 131,072 vs 64


def test_a_star_of_stars_and_isolated_edges_converge():
    hub = np.uint64(5)
    spokes = np.arange(10, 1010, dtype=np.uint64)
    first = np.concatenate([np.full(len(spokes), hub), np.array([2000, 3000], dtype=np.uint64), spokes[:-1]])
    second = np.concatenate([spokes, np.array([2001, 3000], dtype=np.uint64), spokes[1:]])  # a self-loop too
    larger, smaller, rounds = star_components_local(first, second)
    assert roots_of(larger, smaller) == scipy_roots(first, second) and rounds <= 4


@pytest.fixture
def sort_shuffle(local_ray):
    """Ray Data's sort-based pull shuffle, as dedup's runner sets it for small runs (no aggregator actors)."""
    from ray.data import DataContext
    from ray.data.context import ShuffleStrategy

    DataContext.get_current().shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    return local_ray


def test_on_ray_the_shuffled_steps_give_the_same_stars_and_rounds(sort_shuffle):
    """Four partitions, the edges in Ray's object store between steps: the driver hears one count per round."""
    import pyarrow as pa
    import ray.data

    first, second = random_graph(7, vertices=4000, edges=2500, chains=2, chain_length=500)
    edges = ray.data.from_arrow(pa.table({"larger": first, "smaller": second})).repartition(3)
    heard = []
    result, rounds = star_components(edges, partitions=4, rounds_seen=lambda number, changed: heard.append(changed))
    table = result.to_pandas()
    expected_larger, expected_smaller, expected_rounds = star_components_local(first, second)
    assert rounds == expected_rounds == len(heard) and heard[-1] == 0 and all(type(c) is int for c in heard)
    order = np.argsort(table["larger"].to_numpy())
    assert np.array_equal(table["larger"].to_numpy()[order], expected_larger)
    assert np.array_equal(table["smaller"].to_numpy()[order], expected_smaller)
    assert roots_of(expected_larger, expected_smaller) == scipy_roots(first, second)


def test_on_ray_each_member_gets_the_document_the_keep_rule_keeps(sort_shuffle):
    """Members joined with their documents' lengths and text hashes by key, then the best of each cluster (longest,
    then smallest key: many equal lengths here) by root: what the in-memory scipy path keeps, for every member."""
    import pyarrow as pa
    import ray.data

    first, second = random_graph(11, vertices=3000, edges=2000, chains=2, chain_length=300)
    first, second = first[first != second], second[first != second]
    rng = np.random.default_rng(11)
    keys = np.unique(np.concatenate([first, second, rng.integers(0, 1 << 40, 500).astype(np.uint64)]))
    lengths = rng.integers(50, 54, len(keys))
    hashes = rng.integers(0, 3, len(keys)).astype(np.uint64)
    edges = ray.data.from_arrow(pa.table({"larger": first, "smaller": second})).repartition(3)
    documents = ray.data.from_arrow(pa.table({"key": keys, "length": lengths, "text_hash": hashes})).repartition(4)
    stars, _ = star_components(edges, partitions=4)
    members = cluster_members(stars, documents, partitions=4).to_pandas().sort_values("key")
    expected = scipy_clusters(first, second, keys, lengths)
    member_keys = members["key"].to_numpy()
    assert np.array_equal(member_keys, expected.members)
    assert np.array_equal(members["kept"].to_numpy(), expected.kept_for(member_keys))
    hash_of = dict(zip(keys.tolist(), hashes.tolist()))
    assert members["exact"].tolist() == [hash_of[key] == hash_of[kept] for key, kept in
                                         zip(member_keys.tolist(), members["kept"].tolist())]
    roots = scipy_roots(first, second)
    assert members["cluster"].tolist() == [roots[key] for key in member_keys.tolist()]  # named by smallest key
