"""What a run is doing, while it runs: one status line, on a terminal or in a job log.

On a terminal the line is a tqdm bar that fits the window and is redrawn in place; elsewhere (a job log, a pipe) it
is one plain line every `log_every_s`, never more often, so that a log stays readable. The run is a sequence of
phases: the per-document pass over the units, then each global stage's steps (dedup: signatures, clusters, filter;
tokenizer: sample, train; tokenize: encode, write; train: steps); each phase has a count and, where known, a total.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import time
from typing import Callable, Iterator, TextIO

from tqdm import tqdm

LOG_EVERY_S = 10.0
# tqdm's layouts: a bar with elapsed time and ETA (rates are in the detail, where they mean something), or a count
BAR = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}{postfix}]"
COUNT = "{desc}: {n_fmt} {unit} [{elapsed}{postfix}]"
TICK_S = 1.0  # how often the line is redrawn (terminal) or considered for the log while nothing reports
TRAIN_STEP = re.compile(r"^step (\d+):")

# How a global stage reports its steps: step("clusters", 1234, "edges"), the count being what the step works on.
StepReport = Callable[[str, "int | None", str], None]


def no_steps(step: str, count: int | None = None, unit: str = "") -> None:
    """A StepReport that shows nothing."""


class RunProgress:
    """The run's status line. `start` begins a phase, `update` moves it, `note` shows a line above it (kept in the
    log), `close` ends the display."""

    enabled = True

    def __init__(self, stream: TextIO | None = None, log_every_s: float = LOG_EVERY_S):
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = _is_terminal(self.stream)
        self.log_every_s = log_every_s
        self.started = time.monotonic()
        self._last_logged = self.started  # the first plain line comes after log_every_s: short runs print none
        self._bar: tqdm | None = None
        self._phase = ""
        self._total: int | None = None
        self._unit = ""
        self._done = 0
        self._phase_started = self.started
        self._detail = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def start(self, phase: str, total: int | None = None, unit: str = "") -> None:
        """Begin a phase (e.g. "documents" over 12 units, "dedup: clusters"); ends the previous one's bar."""
        with self._lock:
            self._close_bar()
            self._phase, self._total, self._unit, self._done, self._detail = phase, total, unit, 0, ""
            self._phase_started = time.monotonic()
            if self.interactive:
                self._bar = tqdm(total=total, desc=phase, unit=unit or "it", file=self.stream,
                                 bar_format=BAR if total else COUNT, dynamic_ncols=True, leave=False,
                                 mininterval=0.5)
            self._maybe_log()
        if self._ticker is None:  # so that elapsed time and ETA move while a long step reports nothing
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()

    def update(self, done: int | None = None, detail: str = "") -> None:
        """The phase's count so far (absolute, not a delta) and a short detail (rates, kept share, loss)."""
        with self._lock:
            if done is not None:
                if self._bar is not None and done != self._done:
                    self._bar.update(done - self._done)
                self._done = done
            self._detail = detail
            if self._bar is not None:
                self._bar.set_postfix_str(detail, refresh=False)
                self._bar.refresh()
            self._maybe_log()

    def note(self, line: str) -> None:
        """A line that stays (a training loss, a warning): above the bar on a terminal, as it is in a log."""
        with self._lock:
            if self._bar is not None:
                self._bar.write(line, file=self.stream)
            else:
                self.stream.write(line + "\n")
                self.stream.flush()

    def steps(self, stage: str) -> StepReport:
        """A StepReport for a global stage: each step becomes the phase "<stage>: <step>" with its count."""
        def step(name: str, count: int | None = None, unit: str = "") -> None:
            self.start(f"{stage}: {name}", unit=unit)
            if count is not None:
                self.update(count)
        return step

    def phase_seconds(self) -> float:
        """How long the current phase has run."""
        return time.monotonic() - self._phase_started

    @contextlib.contextmanager
    def showing_warnings(self, *loggers: str) -> Iterator[None]:
        """While inside, warnings of these loggers are shown as notes ("warning: ..."), above the bar."""
        handler = _NoteHandler(self)
        for name in loggers:
            logging.getLogger(name).addHandler(handler)
        try:
            yield
        finally:
            for name in loggers:
                logging.getLogger(name).removeHandler(handler)

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        with self._lock:
            self._close_bar()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            with self._lock:
                if self._bar is not None:
                    self._bar.refresh()
                self._maybe_log()

    def plain_line(self) -> str:
        """The status as one plain line: elapsed, phase, count/total, detail, ETA."""
        now = time.monotonic()
        count = f"{self._done:,}/{self._total:,}" if self._total else f"{self._done:,}"
        parts = [f"[{_duration(now - self.started):>7}] {self._phase}", f"{count} {self._unit}".rstrip()]
        if self._detail:
            parts.append(self._detail)
        eta = _eta(self._done, self._total, now - self._phase_started)
        if eta:
            parts.append(f"ETA {eta}")
        return " · ".join(parts)

    def _maybe_log(self) -> None:
        if self.interactive:
            return
        now = time.monotonic()
        if now - self._last_logged >= self.log_every_s:
            self.stream.write(self.plain_line() + "\n")
            self.stream.flush()
            self._last_logged = now

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class NoProgress(RunProgress):
    """--quiet: the same calls, no status line; notes (warnings) are still printed."""

    enabled = False

    def __init__(self) -> None:
        super().__init__(stream=sys.stderr)
        self.interactive = False

    def start(self, phase: str, total: int | None = None, unit: str = "") -> None:
        pass

    def update(self, done: int | None = None, detail: str = "") -> None:
        pass



class _NoteHandler(logging.Handler):
    """Log records at WARNING and above as progress notes, one line each."""

    def __init__(self, progress: RunProgress):
        super().__init__(logging.WARNING)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.progress.note(f"{record.levelname.lower()}: {record.getMessage()}")
        except Exception:
            self.handleError(record)


def documents_detail(stages: list[dict], elapsed_s: float) -> str:
    """The per-document pass in a few words: records read and their rate, and the share of documents kept so far
    (documents: what the read stage passed on, i.e. pages or input rows, not WARC request/metadata records)."""
    if not stages:
        return "starting workers"
    read = stages[0]
    rate = read["rows_in"] / elapsed_s if elapsed_s > 0 else 0.0
    detail = f"{read['rows_in']:,} records ({rate:,.0f}/s)"
    documents, kept = read["kept"], stages[-1]["kept"]
    if documents:
        detail += f", kept {kept:,}/{documents:,} docs ({kept / documents:.0%})"
    return detail


def train_step(line: str) -> int | None:
    """The step a trainer log line reports ("step 50: loss ..."), or None."""
    found = TRAIN_STEP.match(line)
    return int(found.group(1)) if found else None


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _eta(done: int, total: int | None, elapsed_s: float) -> str:
    if not total or done <= 0 or done >= total:
        return ""
    return _duration(elapsed_s / done * (total - done))
