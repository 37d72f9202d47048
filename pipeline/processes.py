"""A process known by its pid and start time, from /proc, so that a later process given the same pid is never taken
for it. Standard library only: the embedded Ray's watchdog (pipeline.ray_session) imports it and nothing heavier."""

from __future__ import annotations

import os


def process_start(pid: int) -> int | None:
    """When a process started (clock ticks since boot), from /proc; None where there is no /proc or no process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def process_alive(pid: int, started: int | None) -> bool:
    """Whether the process `pid` that started at `started` still runs (not a later process given the same pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if started is None:
        return True
    now = process_start(pid)
    return now is None or now == started
