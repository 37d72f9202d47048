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


def process_label(pid: int) -> str:
    """A short name for a process, to group the memory of a tree by kind: a Ray process by its program (raylet,
    gcs_server, default_worker, ...) or its task or actor name (ray::UnitActor), a sandbox child by its factory,
    another Python process by its script or module."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = [part.decode(errors="replace") for part in fh.read().split(b"\0") if part]
    except OSError:
        return "?"
    if not argv:
        return "?"
    if argv[0].startswith("ray::"):
        return argv[0].split()[0]
    if "child_main" in " ".join(argv[:3]):
        return "sandbox " + next((part.split(":")[0] for part in argv if ":make_" in part), "child")
    program = os.path.basename(argv[0])
    if program.startswith("python"):
        script = next((part for part in argv[1:] if not part.startswith("-")), "")
        if "-m" in argv:
            script = argv[argv.index("-m") + 1]
        return os.path.basename(script) or program
    return program


def cpu_seconds(pid: int) -> float | None:
    """The process's own user + system CPU time (not its reaped children's, which are counted as themselves)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class TreeMonitor:
    """Peak PSS of the tree under `root` (default: this process), by kind of process at that peak, and of the root
    alone, and CPU seconds of the tree, sampled every `interval_s` while the `with` block runs.

    Reading PSS walks each process's page tables in the kernel and holds its memory lock meanwhile, which slows a
    busy process down; `memory=False` samples only the CPU times (cheap), for the runs whose speed is measured."""

    def __init__(self, root: int | None = None, interval_s: float = 0.2, memory: bool = True):
        self.root = root if root is not None else os.getpid()
        self.interval_s = interval_s
        self.memory = memory
        self.peak_tree = 0
        self.peak_root = 0
        self.peak_by_label: dict[str, int] = {}  # PSS bytes by process_label, at the tree's peak
        self._cpu: dict[int, float] = {}  # pid -> CPU seconds last seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            pids = descendants(self.root)
            if self.memory:
                by_pid = {pid: pss_bytes(pid) for pid in pids}
                if sum(by_pid.values()) > self.peak_tree:
                    self.peak_tree = sum(by_pid.values())
                    self.peak_by_label = {}
                    for pid, size in by_pid.items():
                        label = process_label(pid)
                        self.peak_by_label[label] = self.peak_by_label.get(label, 0) + size
                self.peak_root = max(self.peak_root, by_pid.get(self.root, 0))
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
