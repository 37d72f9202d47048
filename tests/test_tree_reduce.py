"""A reduction as a tree: N leaves merged 16 at a time take ceil(log16 N) rounds, every leaf counted once."""

from __future__ import annotations

import math

import pytest

from pipeline.tree_reduce import tree_reduce


@pytest.mark.parametrize("leaves", [1, 2, 16, 17, 256, 257, 5000])
def test_rounds_are_the_logarithm_of_the_leaves_and_nothing_is_lost(leaves):
    calls = []

    def merge(items):
        calls.append(len(items))
        return sum(items)

    root, rounds, merges = tree_reduce(list(range(leaves)), merge, fanout=16)
    assert root == leaves * (leaves - 1) // 2
    assert rounds == (math.ceil(math.log(leaves, 16) - 1e-9) if leaves > 1 else 0)
    assert merges == len(calls) and max(calls, default=2) <= 16


def test_no_leaves_give_no_root():
    assert tree_reduce([], lambda items: items[0]) == (None, 0, 0)
