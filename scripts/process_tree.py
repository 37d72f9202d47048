"""Memory and CPU of a process and all its descendants (Ray's raylet and workers, sandbox children, datatrove's
worker pool), sampled from /proc in a thread, for the benchmarks.

PSS counts shared memory (Ray's object store, forked copy-on-write pages) once across the processes that share it,
so the sum over the tree is the memory the job really held. CPU is each process's own user + system time, last
seen before it exited (a process that lives less than one interval may be missed; the benchmarks' processes live
for the whole run).
"""

from __future__ import annotations

import os
import threading

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def descendants(root: int) -> list[int]:
    """root and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parent = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        found.append(pid)
        frontier.extend(children.get(pid, []))
    return found


def pss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float | None:
    """The process's own user + system CPU time (not its reaped children's, which are counted as themselves)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class TreeMonitor:
    """Peak PSS of the tree under `root` (default: this process) and of the root alone, and CPU seconds of the
    tree, sampled every `interval_s` while the `with` block runs.

    Reading PSS walks each process's page tables in the kernel and holds its memory lock meanwhile, which slows a
    busy process down; `memory=False` samples only the CPU times (cheap), for the runs whose speed is measured."""

    def __init__(self, root: int | None = None, interval_s: float = 0.2, memory: bool = True):
        self.root = root if root is not None else os.getpid()
        self.interval_s = interval_s
        self.memory = memory
        self.peak_tree = 0
        self.peak_root = 0
        self._cpu: dict[int, float] = {}  # pid -> CPU seconds last seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            pids = descendants(self.root)
            if self.memory:
                self.peak_tree = max(self.peak_tree, sum(pss_bytes(pid) for pid in pids))
                self.peak_root = max(self.peak_root, pss_bytes(self.root))
            for pid in pids:
                seconds = cpu_seconds(pid)
                if seconds is not None:
                    self._cpu[pid] = max(self._cpu.get(pid, 0.0), seconds)
            if self._stop.wait(self.interval_s):
                return

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu.values())

    def __enter__(self) -> "TreeMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
