"""Connected components by alternating large-star and small-star steps (Kiveris et al., "Connected Components in
MapReduce and Beyond", SoCC 2014; the algorithm text-dedup runs on Spark), as vectorised pure functions over one
shuffle partition of an edge table. The runner composes them on Ray: each step is a shuffle of the edges by one
endpoint, every partition handled by one call, and the driver sees only the count of changed edges per step.

Vertices are uint64 keys. An edge (a, b) is stored once with a > b. At convergence every edge is (v, root): the
graph is a set of stars whose centre is the smallest key of its component.

- large-star: each vertex u links every neighbour v > u to the smallest vertex of its closed neighbourhood, m(u).
- small-star: each vertex u links itself and every neighbour v < u to the smallest of those neighbours.
An edge emitted that was not an input edge is a change; a round (large-star then small-star) with no change ends
the algorithm. The number of rounds grows with the logarithm of the number of vertices, not with a component's
diameter as label propagation's does.
"""

from __future__ import annotations

import numpy as np

EMPTY = np.empty(0, dtype=np.uint64)


def unique_pairs(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each (first, second) pair once, sorted by first then second."""
    order = np.lexsort((second, first))
    first, second = first[order], second[order]
    keep = np.ones(len(first), dtype=bool)
    keep[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
    return first[keep], second[keep]


def _neighbourhood_minimum(centres: np.ndarray, neighbours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by centre: (start of each centre's rows, smallest neighbour of each centre)."""
    starts = np.flatnonzero(np.concatenate(([True], centres[1:] != centres[:-1])))
    return starts, np.minimum.reduceat(neighbours, starts)


def large_star(larger: np.ndarray, smaller: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The large-star step on the edges of one partition, given as (larger, smaller) endpoints and holding every
    edge of each vertex the partition is responsible for, seen from both ends (see both_ends). Returns the new
    edges as (larger, smaller) and how many of them are changes."""
    if not len(larger):
        return EMPTY, EMPTY, 0
    centres, neighbours = unique_pairs(larger, smaller)
    starts, smallest = _neighbourhood_minimum(centres, neighbours)
    rows = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(centres))))
    m = np.minimum(smallest, centres[starts])[rows]  # smallest of each row's closed neighbourhood
    up = neighbours > centres  # only neighbours larger than the centre are relinked
    tails, heads = neighbours[up], m[up]
    changed = int(np.count_nonzero(heads != centres[up]))
    first, second = unique_pairs(tails, heads)
    return first, second, changed


def small_star(larger: np.ndarray, smaller: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The small-star step on the edges of one partition, as (larger, smaller) endpoints, holding every edge whose
    larger end is a vertex the partition is responsible for. Returns the new edges and how many are changes."""
    if not len(larger):
        return EMPTY, EMPTY, 0
    centres, neighbours = unique_pairs(larger, smaller)  # neighbours < centres: edges are stored larger first
    starts, smallest = _neighbourhood_minimum(centres, neighbours)
    counts = np.diff(np.append(starts, len(centres)))
    m = np.repeat(smallest, counts)
    relinked = neighbours != m  # each neighbour but the smallest goes to the smallest: a change
    first = np.concatenate([neighbours[relinked], centres[starts]])
    second = np.concatenate([m[relinked], smallest])  # and the centre itself keeps its edge to the smallest
    first, second = unique_pairs(first, second)
    return first, second, int(np.count_nonzero(relinked))


def both_ends(larger: np.ndarray, smaller: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every edge as seen from each of its two ends (centre, neighbour): what large-star groups by centre."""
    return np.concatenate([larger, smaller]), np.concatenate([smaller, larger])


def oriented(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges as (larger, smaller), without self-loops."""
    keep = first != second
    first, second = first[keep], second[keep]
    return np.maximum(first, second), np.minimum(first, second)
