"""The run directory: what a run may do with the directory it is given (use, resume, clear, refuse), the saved
config, refusal to mix configs, the lock, and clean-up of a killed worker's temporary files.

Every destructive call here points at a temp dir; refusal of `/`, `~` and `.` is tested by asking the guard,
never by running anything against them.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.output_guard import (LOCK_FILE, RUN_MARKER, OutputRefused, check_output, clear_run_dir,
                                   protected_reason, write_marker)
from pipeline.run_dir import RunDir, RunDirConflict, first_difference, open_run_dir, remove_temporaries
from pipeline.run_lock import RunFenced, RunLock, RunLocked

CONFIG = {"name": "t", "input": {"paths": ["a.warc.gz"]}, "stages": [{"extract": {"favor": "precision"}}],
          "ray": {"workers": 2}, "output": "runs/t"}


def prepare(run: RunDir, config: dict, overwrite: bool = False, inputs=()) -> bool:
    with open_run_dir(run, config, overwrite, inputs) as opened:
        return opened.resuming


def user_folder(tmp_path: Path) -> Path:
    """A folder of someone's files, with a link to a folder outside it that holds more of them."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    (folder / "data").mkdir()
    (folder / "data" / "table.csv").write_text("a,b\n1,2\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me too")
    (folder / "link").symlink_to(outside, target_is_directory=True)
    return folder


def snapshot(*folders: Path) -> dict[str, str]:
    """Every file under the folders (its bytes' hash), and where links point, without following links."""
    import hashlib

    found = {}
    for folder in folders:
        for root, directories, names in os.walk(folder):
            for name in directories + names:
                path = Path(root) / name
                found[str(path)] = f"-> {os.readlink(path)}" if path.is_symlink() else (
                    hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "/")
    return found


def test_the_resolved_config_and_package_versions_are_saved(tmp_path):
    run = RunDir(tmp_path / "run")
    assert prepare(run, CONFIG) is False
    saved = yaml.safe_load(run.config_file.read_text())
    assert saved["config"] == CONFIG
    assert {"python", "ray", "pyarrow", "trafilatura", "warcio"} <= set(saved["versions"])
    marker = json.loads((run.root / RUN_MARKER).read_text())
    assert marker["project"] == "ccpipeline" and marker["format"] == 1


def test_a_rerun_with_the_same_outcome_settings_resumes_even_with_other_execution_settings(tmp_path):
    run = RunDir(tmp_path / "run")
    prepare(run, CONFIG)
    assert prepare(run, {**CONFIG, "ray": {"workers": 8}, "output": "elsewhere"}) is True


def test_a_rerun_with_another_config_is_refused_with_the_key_that_differs(tmp_path):
    run = RunDir(tmp_path / "run")
    prepare(run, CONFIG)
    changed = {**CONFIG, "stages": [{"extract": {"favor": "recall"}}]}
    with pytest.raises(RunDirConflict, match=r"stages\[0\]\.extract\.favor"):
        prepare(run, changed)
    assert prepare(run, changed, overwrite=True) is False  # --overwrite starts afresh


def test_temporary_files_of_a_killed_worker_are_removed_on_resume_and_finished_parts_kept(tmp_path):
    run = RunDir(tmp_path / "run")
    prepare(run, CONFIG)
    run.documents.mkdir()
    (run.documents / ".part-u1.parquet.0a1b2c3d.tmp").write_bytes(b"half")
    (run.documents / "part-u0.parquet").write_bytes(b"done")
    prepare(run, CONFIG)
    assert sorted(path.name for path in run.documents.iterdir()) == ["part-u0.parquet"]


def test_temporaries_are_removed_only_in_what_a_run_writes(tmp_path):
    run = RunDir(tmp_path / "run")
    prepare(run, CONFIG)
    (run.root / ".config.yaml.0a1b2c3d.tmp").write_text("half")
    (run.root / ".notes.0a1b2c3d.tmp").write_text("the user's")
    (run.root / "mine").mkdir()
    (run.root / "mine" / ".x.parquet.0a1b2c3d.tmp").write_text("the user's")
    (run.root / "stats").mkdir()
    (run.root / "stats" / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / ".y.parquet.0a1b2c3d.tmp").write_text("not the run's")
    assert remove_temporaries(run.root) == 1
    assert (run.root / ".notes.0a1b2c3d.tmp").exists() and (run.root / "mine" / ".x.parquet.0a1b2c3d.tmp").exists()
    assert (tmp_path / "elsewhere" / ".y.parquet.0a1b2c3d.tmp").exists()


def test_the_guard_never_clears_the_root_home_or_current_directory_or_its_parents(tmp_path, monkeypatch):
    assert protected_reason(Path("/")) == "the filesystem root"
    assert protected_reason(Path.home()) == "the home directory"
    assert protected_reason(Path("~").expanduser()) == "the home directory"
    monkeypatch.chdir(tmp_path)
    assert protected_reason(Path(".")) == "the current directory"
    assert protected_reason(tmp_path) == "the current directory"
    assert protected_reason(tmp_path.parent) == "a parent of the current directory"
    assert protected_reason(Path("..")) == "a parent of the current directory"
    assert protected_reason(tmp_path / "run") is None
    for place in (Path("/"), Path.home(), Path(".")):  # decided before anything in them is read or written
        with pytest.raises(OutputRefused, match="refusing --overwrite on the"):
            check_output(place, overwrite=True)


def test_the_guard_refuses_a_directory_holding_an_input_file(tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "a.warc.gz").write_bytes(b"x")
    write_marker(inputs, "t")  # even a marked one
    with pytest.raises(OutputRefused, match="holding the input file .*a.warc.gz"):
        check_output(inputs, overwrite=True, inputs=[str(inputs / "a.warc.gz")])
    with pytest.raises(OutputRefused, match="holding the input file"):
        check_output(tmp_path, overwrite=True, inputs=[str(inputs / "a.warc.gz")])


def test_a_folder_of_user_files_and_a_link_out_survive_every_combination(tmp_path):
    folder = user_folder(tmp_path)
    before = snapshot(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(OutputRefused, match="not a run directory"):
            prepare(RunDir(folder), CONFIG, overwrite=overwrite)
        with pytest.raises(OutputRefused):
            prepare(RunDir(folder / "link"), CONFIG, overwrite=overwrite)  # the link's target has no marker either
        with pytest.raises(OutputRefused):
            prepare(RunDir(folder / "notes.txt"), CONFIG, overwrite=overwrite)
    assert snapshot(tmp_path) == before


def test_overwrite_clears_only_what_a_run_writes_and_names_the_rest(tmp_path):
    run = RunDir(tmp_path / "run")
    prepare(run, CONFIG)
    run.documents.mkdir()
    (run.documents / "part-u0.parquet").write_bytes(b"old")
    (run.root / "dedup").mkdir()
    (run.root / "dedup" / "_done.json").write_text("{}")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep")
    (run.root / "shards").symlink_to(outside, target_is_directory=True)  # a run entry that is a link: unlinked only
    (run.root / "stats").mkdir()
    (run.root / "stats" / "into").symlink_to(outside, target_is_directory=True)  # a link inside a run entry
    (run.root / "my-notes.txt").write_text("keep")
    (run.root / "analysis").mkdir()
    (run.root / "analysis" / "plot.png").write_bytes(b"png")

    with open_run_dir(run, CONFIG, overwrite=True) as opened:
        assert opened.resuming is False
        assert sorted(opened.kept_entries) == ["analysis", "my-notes.txt"]
    names = sorted(path.name for path in run.root.iterdir())
    assert names == [RUN_MARKER, "analysis", "config.yaml", "my-notes.txt"]
    assert (outside / "precious.txt").read_text() == "keep"
    assert (run.root / "analysis" / "plot.png").read_bytes() == b"png"


def test_without_overwrite_missing_or_empty_is_used_and_a_run_directory_resumed(tmp_path):
    assert check_output(tmp_path / "missing", overwrite=False) is False
    (tmp_path / "empty").mkdir()
    assert check_output(tmp_path / "empty", overwrite=False) is False
    run = RunDir(tmp_path / "run")
    prepare(run, CONFIG)
    assert check_output(run.root, overwrite=False) is True
    assert check_output(run.root, overwrite=True) is False
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputRefused, match="is a file"):
        check_output(tmp_path / "file", overwrite=False)


def test_clear_run_dir_keeps_the_marker_and_the_lock(tmp_path):
    write_marker(tmp_path / "run", "t")
    (tmp_path / "run" / LOCK_FILE).write_text("{}")
    (tmp_path / "run" / "plan.json").write_text("{}")
    assert clear_run_dir(tmp_path / "run") == []
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [RUN_MARKER, LOCK_FILE]


HOLD_LOCK = """
import sys, time
from pathlib import Path
from pipeline.run_lock import RunLock
lock = RunLock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_second_run_is_refused_while_the_first_holds_the_lock_and_touches_nothing(tmp_path):
    run = RunDir(tmp_path / "run")
    prepare(run, CONFIG)
    run.documents.mkdir()
    in_flight = run.documents / ".part-u1.parquet.0a1b2c3d.tmp"  # the first run's worker is writing it
    in_flight.write_bytes(b"half")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=rf"in use by another run: pid {holder.pid} on .*since"):
            prepare(run, CONFIG)
        with pytest.raises(RunLocked):
            prepare(run, CONFIG, overwrite=True)
        assert in_flight.read_bytes() == b"half"
    finally:
        holder.kill()
        holder.wait()
    # the kernel let go of a killed holder's lock: the next run takes it, and clears the dead worker's file
    assert prepare(run, CONFIG) is True
    assert not in_flight.exists() and not (run.root / LOCK_FILE).exists()


def test_the_fence_stops_a_worker_whose_run_was_taken_over_or_whose_driver_is_gone(tmp_path):
    lock = RunLock(tmp_path)
    lock.acquire()
    fence = lock.fence
    fence.check()  # the run that holds the lock may write
    lock.release()
    with pytest.raises(RunFenced, match="lock is gone"):
        fence.check()
    with RunLock(tmp_path):
        with pytest.raises(RunFenced, match="another run holds it now"):
            fence.check()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with RunLock(tmp_path) as held:
        from dataclasses import replace

        orphan = replace(held.fence, pid=gone.pid, process_start=None)
        with pytest.raises(RunFenced, match=f"driver of this run \\(pid {gone.pid}\\) is gone"):
            orphan.check()


def test_first_difference_names_the_first_differing_path():
    assert first_difference({"a": {"b": [1, {"c": 2}]}}, {"a": {"b": [1, {"c": 3}]}}) == "a.b[1].c"
    assert first_difference({"a": 1}, {"a": 1, "z": 0}) == "z"
    assert first_difference([1, 2], [1, 2, 3]) == "the top level"
    assert first_difference({"a": [1]}, {"a": [1]}) is None


def test_a_lock_holder_is_described_with_host_pid_and_start(tmp_path):
    with RunLock(tmp_path) as lock:
        saved = json.loads((tmp_path / LOCK_FILE).read_text())
        assert saved["pid"] == os.getpid() and saved["epoch"] == lock.holder.epoch
        assert saved["host"] and saved["started"] and time.time() - saved["heartbeat"] < 60
