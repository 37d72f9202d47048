"""Live progress on the terminal: rows per stage and rows per second, while a run goes."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressPrinter:
    """Renders snapshots of per-stage counts. On a terminal it rewrites one line; in a log, a line every 10 s."""

    def __init__(self, total_units: int, stream: TextIO = sys.stderr, log_every_s: float = 10.0):
        self.total_units = total_units
        self.stream = stream
        self.interactive = stream.isatty()
        self.log_every_s = log_every_s
        self.started = time.monotonic()
        self._last_time = self.started
        self._last_counts: dict[str, int] = {}
        self._last_logged = 0.0
        self._rates: dict[str, float] = {}

    def update(self, stages: list[dict], units_done: int) -> None:
        """`stages`: [{"stage", "rows_in", "kept"}] summed over the run so far."""
        now = time.monotonic()
        elapsed = now - self._last_time
        if elapsed > 0:
            for stage in stages:
                delta = stage["rows_in"] - self._last_counts.get(stage["stage"], 0)
                self._rates[stage["stage"]] = delta / elapsed
        self._last_counts = {stage["stage"]: stage["rows_in"] for stage in stages}
        self._last_time = now
        line = self._line(stages, units_done, now - self.started)
        if self.interactive:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
        elif now - self._last_logged >= self.log_every_s:
            self.stream.write(line + "\n")
            self._last_logged = now

    def _line(self, stages: list[dict], units_done: int, elapsed: float) -> str:
        parts = [f"{elapsed:7.1f}s", f"units {units_done}/{self.total_units}"]
        for stage in stages:
            rate = self._rates.get(stage["stage"], 0.0)
            parts.append(f"{stage['stage']} {stage['rows_in']:,} ({rate:,.0f}/s) kept {stage['kept']:,}")
        return " | ".join(parts)

    def finish(self) -> None:
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()
