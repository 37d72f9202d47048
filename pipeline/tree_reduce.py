"""A reduction as a tree of tasks: results merged `fanout` at a time, round after round, until one is left. On Ray
each merge is a task whose inputs are references to the previous round's results, so the driver holds one
reference per pending result and never their contents, and N leaves take ceil(log_fanout N) rounds."""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")
FANOUT = 16


def tree_reduce(leaves: list[T], merge: Callable[[list[T]], T], fanout: int = FANOUT) -> tuple[T | None, int, int]:
    """(the root, rounds, merges) of merging `leaves` with `merge(items) -> item` (which may submit a task and
    return its reference); the root is None when there are no leaves."""
    if fanout < 2:
        raise ValueError("fanout must be at least 2")
    level, rounds, merges = list(leaves), 0, 0
    while len(level) > 1:
        level = [merge(level[start:start + fanout]) for start in range(0, len(level), fanout)]
        rounds += 1
        merges += len(level)
    return (level[0] if level else None), rounds, merges
