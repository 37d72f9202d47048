"""The status line a run shows: on a real terminal (a pty of a given width) one line that fits and is redrawn in
place; in a job log one plain line per interval, never more often; global stages' steps with their counts."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import re
import struct
import termios
import time

from pipeline.progress import NoProgress, RunProgress, documents_detail, train_step
from pipeline.unit_pool import worker_count

STAGES = [{"stage": "read", "rows_in": 1004, "kept": 300}, {"stage": "extract", "rows_in": 300, "kept": 170},
          {"stage": "dedup", "rows_in": 170, "kept": 120}]


class TimedLog(io.StringIO):
    """A job log (not a terminal) that notes when each line was written."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def write(self, text: str) -> int:
        self.times.extend(time.monotonic() for _ in range(text.count("\n")))
        return super().write(text)


def test_in_a_log_the_status_is_one_plain_line_per_interval_however_often_it_changes():
    log = TimedLog()
    progress = RunProgress(stream=log, log_every_s=0.2)
    progress.start("documents", total=50, unit="units")
    deadline = time.monotonic() + 1.1
    done = 0
    while time.monotonic() < deadline:  # far more updates than lines
        done += 1
        progress.update(min(done, 49), documents_detail(STAGES, 1.0))
        time.sleep(0.005)
    progress.close()
    lines = log.getvalue().splitlines()
    assert 3 <= len(lines) <= 6, lines
    gaps = [later - earlier for earlier, later in zip(log.times, log.times[1:])]
    assert min(gaps) >= 0.19, gaps
    assert all("\r" not in line and "\x1b" not in line for line in lines)
    assert re.match(r"^\[ *\d+s\] documents · \d+/50 units · 1,004 records \(1,004/s\), kept 120/300 docs \(40%\)"
                    r"( · ETA \d+s)?$", lines[-1]), lines[-1]


def test_in_a_log_a_long_step_that_reports_nothing_still_gets_a_line_per_interval():
    log = TimedLog()
    progress = RunProgress(stream=log, log_every_s=0.3)
    progress.steps("dedup")("clusters", 1234, "edges")
    time.sleep(2.2)  # the ticker (once a second) writes the status while the step is silent
    progress.close()
    lines = log.getvalue().splitlines()
    assert 1 <= len(lines) <= 3 and all("dedup: clusters · 1,234 edges" in line for line in lines), lines


def _terminal(columns: int) -> tuple[int, io.TextIOWrapper]:
    """A real pseudo-terminal `columns` wide: (the master side to read, the slave side as a text stream)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    return master, io.TextIOWrapper(os.fdopen(slave, "wb", buffering=0), encoding="utf-8", write_through=True)


def _read_all(master: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        if len(chunk) < 65536:
            break
    return b"".join(chunks).decode("utf-8", "replace")


def test_on_a_terminal_the_status_is_one_line_that_fits_the_width_and_is_redrawn_in_place():
    master, stream = _terminal(72)
    progress = RunProgress(stream=stream)
    assert progress.interactive
    progress.start("documents", total=40, unit="units")
    long_detail = documents_detail([{**s, "rows_in": s["rows_in"] * 10**6} for s in STAGES], 3.0)
    for done in range(0, 40, 4):
        progress.update(done, long_detail)
        time.sleep(0.06)
    progress.note("train step 50: loss 4.8277")  # a line that stays, above the status
    progress.steps("dedup")("signatures", 12, "parts")
    time.sleep(0.6)
    progress.close()
    shown = _read_all(master).replace("\x1b[A", "")
    stream.close()
    os.close(master)
    frames = [frame for frame in re.split(r"[\r\n]", shown) if frame.strip()]
    assert frames and all(len(frame) <= 72 for frame in frames), max(frames, key=len)
    assert any(frame.startswith("documents:") and "/40 units" in frame for frame in frames)
    assert any(frame.startswith("dedup: signatures: 12 parts") for frame in frames)
    assert "train step 50: loss 4.8277" in frames
    assert "\n" not in shown.split("train step 50")[0]  # the status before the note was redrawn in place


def test_quiet_shows_no_status_but_still_shows_warnings(capsys):
    progress = NoProgress()
    with progress.showing_warnings("pipeline"):
        progress.start("documents", total=3, unit="units")
        progress.update(2, "detail")
        logging.getLogger("pipeline.plan").warning("2 captures appear as both WARC and WET")
    progress.close()
    assert capsys.readouterr().err == "warning: 2 captures appear as both WARC and WET\n"


def test_more_workers_than_the_cpus_run_as_many_as_fit_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        assert worker_count(8, 1.0, 2.0) == 2
        assert worker_count(2, 0.5, 2.0) == 2
        assert worker_count(None, 1.0, 4.0) == 4
    warnings = [record.getMessage() for record in caplog.records]
    assert warnings == ["ray.workers = 8, but the cluster has 2 CPUs at 1 per worker: running 2 workers"]


def test_a_trainer_log_line_gives_its_step():
    assert train_step("step 150: loss 2.6112, lr 8.00e-04, 5,598 tokens/s") == 150
    assert train_step("0.23M parameters, cpu float32") is None
