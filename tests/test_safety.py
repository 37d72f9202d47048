"""Safety of `pipeline run` as a user meets it: what it refuses to touch, inputs that changed under a resume, a full
or read-only disk, and books that do not close. Small inputs, so every run here stays in one process (no Ray);
every directory written to is under pytest's tmp_path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO, pipeline_cli
from pipeline.plan import load_plan
from test_run_dir import snapshot, user_folder


@pytest.fixture(scope="module")
def small_crawl(tmp_path_factory) -> Path:
    """A folder holding two small WARC files (the demo crawl's generator, 40 pages) and nothing else."""
    from pipeline.demo_crawl import write_demo_crawl

    generated = tmp_path_factory.mktemp("generated")
    folder = tmp_path_factory.mktemp("crawl")
    for path in write_demo_crawl(generated, pages=40, files=2, seed=3):
        shutil.copy2(path, folder / path.name)
    return folder


def config_file(tmp_path: Path, inputs: list[str], stages: list | None = None, **values) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"name": "safety", "input": {"paths": inputs}, "stages": stages or ["extract"],
                                    **values}))
    return path


def one_error_line(completed: subprocess.CompletedProcess) -> str:
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), completed.stderr
    assert "Traceback" not in completed.stdout + completed.stderr
    return lines[0]


def test_the_command_refuses_user_folders_and_input_folders_and_leaves_them_as_they_were(tmp_path, small_crawl):
    folder = user_folder(tmp_path)
    inputs = tmp_path / "inputs"
    shutil.copytree(small_crawl, inputs)
    config = config_file(tmp_path, [str(inputs / "*.warc.gz")])
    before = snapshot(tmp_path)
    for output in (folder, folder / "link", inputs, folder / "notes.txt"):
        for extra in ([], ["--overwrite"]):
            completed = pipeline_cli("run", "--config", str(config), "--output", str(output), "--quiet", *extra)
            assert completed.returncode == 2, (output, extra, completed.stdout)
            one_error_line(completed)
    assert snapshot(tmp_path) == before


def test_a_run_directory_inside_an_input_folder_is_never_read_as_input(tmp_path, small_crawl):
    inputs = tmp_path / "inputs"
    shutil.copytree(small_crawl, inputs)
    config = config_file(tmp_path, [str(inputs)])  # the whole folder: it will hold the run directory too
    output = inputs / "run"
    for extra in ([], [], ["--overwrite"]):
        completed = pipeline_cli("run", "--config", str(config), "--output", str(output), "--quiet", *extra)
        assert completed.returncode == 0, completed.stdout + completed.stderr
        units, _ = load_plan(output / "plan.parquet")
        assert {Path(unit.path).name for unit in units} == {p.name for p in small_crawl.iterdir()}


def test_a_run_name_is_one_folder_name_never_a_path(tmp_path, small_crawl):
    for name in ("../../x", "..", "a/b", "/etc"):
        config = tmp_path / "named.yaml"
        config.write_text(yaml.safe_dump({"name": name, "input": {"paths": [str(small_crawl)]},
                                          "stages": ["extract"]}))
        completed = pipeline_cli("run", "--config", str(config), cwd=tmp_path)
        assert completed.returncode == 2 and "name" in one_error_line(completed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["named.yaml"]


def test_a_resume_refuses_an_input_replaced_under_the_same_name(tmp_path, small_crawl):
    inputs = tmp_path / "inputs"
    shutil.copytree(small_crawl, inputs)
    config = config_file(tmp_path, [str(inputs / "*.warc.gz")])
    output = tmp_path / "run"
    assert pipeline_cli("run", "--config", str(config), "--output", str(output), "--quiet").returncode == 0
    first, second = sorted(inputs.glob("*.warc.gz"))
    shutil.copyfile(second, first)  # new content under the old name
    completed = pipeline_cli("run", "--config", str(config), "--output", str(output), "--quiet")
    assert completed.returncode == 2
    assert f"input {first} changed since this run was planned" in one_error_line(completed)
    first.unlink()
    completed = pipeline_cli("run", "--config", str(config), "--output", str(output), "--quiet")
    assert completed.returncode == 2 and "is gone" in one_error_line(completed)


def test_an_output_that_is_a_file_or_under_a_file_is_one_line_and_exit_2(tmp_path, small_crawl):
    config = config_file(tmp_path, [str(small_crawl)])
    (tmp_path / "a-file").write_text("mine")
    for output, message in ((tmp_path / "a-file", "is a file"), (tmp_path / "a-file" / "run", "Not a directory")):
        completed = pipeline_cli("run", "--config", str(config), "--output", str(output), "--quiet")
        assert completed.returncode == 2 and message in one_error_line(completed)
    assert (tmp_path / "a-file").read_text() == "mine"


def test_a_truncated_documents_part_stops_dedup_and_the_run_fails_naming_the_numbers(tmp_path, small_crawl):
    config = config_file(tmp_path, [str(small_crawl)], stages=["extract", "dedup"])
    output = tmp_path / "run"
    assert pipeline_cli("run", "--config", str(config), "--output", str(output), "--quiet").returncode == 0
    assert (output / "dedup" / "_done.json").exists()
    part = sorted((output / "documents").glob("part-*.parquet"))[0]
    table = pq.read_table(part)
    pq.write_table(table.slice(0, table.num_rows - 3), part)  # three documents lost

    completed = pipeline_cli("run", "--config", str(config), "--output", str(output), "--quiet")
    assert completed.returncode == 1
    kept = sum(pq.read_metadata(p).num_rows for p in (output / "documents").glob("part-*.parquet")) + 3
    assert (f"FAILED STAGE dedup: AccountingError: dedup: {output / 'documents'} holds {kept - 3:,} documents in 2 "
            f"parts, but the per-document stages kept {kept:,}") in completed.stdout
    assert not (output / "dedup").exists()  # made from other documents: not left to be taken for this run's

    part.write_bytes(part.read_bytes()[:100])  # now cut short on disk
    completed = pipeline_cli("run", "--config", str(config), "--output", str(output), "--quiet")
    assert completed.returncode == 1 and f"dedup: cannot read {part}" in completed.stdout


RECORD_WRITES = """
import json, os, sys
from pipeline.config import load_config
from pipeline.runner import run_pipeline

events, real_fsync, real_replace = [], os.fsync, os.replace

def fsync(descriptor):
    events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
    real_fsync(descriptor)

def replace(source, target):
    events.append(("rename", str(target)))
    real_replace(source, target)

os.fsync, os.replace = fsync, replace
result = run_pipeline(load_config(sys.argv[1], output=sys.argv[2]), show_progress=False)
assert result.ok and result.in_process, result
print(json.dumps(events))
"""


def test_a_part_is_on_disk_before_the_marker_that_vouches_for_it(tmp_path, small_crawl):
    """Every rename is preceded by an fsync of the file and followed by an fsync of its folder, and a unit's
    marker is renamed only after its parts were (a run in a process of its own, recording its system calls)."""
    config = config_file(tmp_path, [str(small_crawl)], rejects=True)
    completed = subprocess.run([sys.executable, "-c", RECORD_WRITES, str(config), str(tmp_path / "run")], cwd=REPO,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    events = [tuple(event) for event in json.loads(completed.stdout.splitlines()[-1])]
    renames = [index for index, (kind, _) in enumerate(events) if kind == "rename"]
    assert len(renames) > 10
    for index in renames:
        target = Path(events[index][1])
        assert events[index - 1][0] == "fsync" and Path(events[index - 1][1]).name.startswith(f".{target.name}.")
        assert events[index + 1] == ("fsync", str(target.parent))
    order = [Path(path).name for kind, path in events if kind == "rename"]
    markers = list((tmp_path / "run" / "_done").glob("*.json"))
    assert len(markers) == 2
    for marker in markers:
        assert order.count(f"part-{marker.stem}.parquet") == 2  # documents/ and rejects/
        assert order.index(f"part-{marker.stem}.parquet") < order.index(marker.name)
        assert len(order) - order[::-1].index(f"part-{marker.stem}.parquet") - 1 < order.index(marker.name)


# ------------------------------------------------------------------ a full or read-only disk, in a mount namespace

def namespaces_work() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_namespaces = pytest.mark.skipif(
    not os.environ.get("CCPIPELINE_REQUIRE_NAMESPACES") and not namespaces_work(),
    reason="unshare -rm (user and mount namespaces) is not permitted here; .ci/run requires it")


def run_on_small_disk(config: Path, mount: Path, options: str, output: Path) -> subprocess.CompletedProcess:
    """`pipeline run` with `mount` a tmpfs of its own (e.g. size=40k, or ro), visible to this command only."""
    mount.mkdir(exist_ok=True)
    script = (f"mount -t tmpfs -o {options} tmpfs {mount} && exec {sys.executable} -m pipeline.cli run "
              f"--config {config} --output {output} --quiet")
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})


@needs_namespaces
def test_a_full_disk_at_set_up_is_one_line_naming_the_path_and_errno(tmp_path, small_crawl):
    config = config_file(tmp_path, [str(small_crawl)])
    completed = run_on_small_disk(config, tmp_path / "disk", "size=4k", tmp_path / "disk" / "run")
    assert completed.returncode == 2
    line = one_error_line(completed)
    assert str(tmp_path / "disk" / "run") in line and "No space left on device (errno 28)" in line


@needs_namespaces
def test_a_disk_that_fills_mid_run_fails_units_by_name_and_writes_no_partial_statistics(tmp_path, small_crawl):
    config = config_file(tmp_path, [str(small_crawl)])
    # 36k: the run's own files (marker, config, plan, plan inputs) take a 4k page each; what is left holds
    # neither the units' output nor the statistics
    script = (f"mount -t tmpfs -o size=36k tmpfs {tmp_path / 'disk'} && "
              f"{sys.executable} -m pipeline.cli run --config {config} --output {tmp_path / 'disk' / 'run'} --quiet; "
              f"echo rc=$?; find {tmp_path / 'disk'} -type f")
    (tmp_path / "disk").mkdir()
    completed = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=REPO, capture_output=True, text=True,
                               timeout=300)
    assert "rc=1" in completed.stdout, completed.stdout + completed.stderr
    assert "FAILED UNIT" in completed.stdout and "No space left on device" in completed.stdout
    assert "Traceback" not in completed.stderr
    assert completed.stderr.strip().startswith("error: statistics not written to")
    files = [line for line in completed.stdout.splitlines() if line.startswith(str(tmp_path))]
    assert not [f for f in files if "/stats/" in f], files  # all of them or none
    assert not [f for f in files if f.endswith(".tmp")], files  # and no half-written file left


@needs_namespaces
def test_a_read_only_output_is_one_line_naming_the_path_and_errno(tmp_path, small_crawl):
    config = config_file(tmp_path, [str(small_crawl)])
    completed = run_on_small_disk(config, tmp_path / "disk", "ro", tmp_path / "disk" / "run")
    assert completed.returncode == 2
    assert "Read-only file system (errno 30)" in one_error_line(completed)


def test_a_unit_that_failed_once_then_succeeds_brings_dedup_up_to_date_byte_for_byte(tmp_path):
    """The first run may write no file over 64 KB (RLIMIT_FSIZE, as a quota would), so the unit of the big input
    file fails (EFBIG) while the small one's succeeds; within max_failed_share, dedup runs on what there is and the
    run exits 0. The same command without the limit processes the unit, and dedup must be redone: the run's
    output then equals a run that never failed, byte for byte."""
    from pipeline.demo_crawl import write_demo_crawl

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name, pages in (("small", 12), ("big", 160)):
        [path] = write_demo_crawl(tmp_path / name, pages=pages, files=1, seed=5)
        shutil.copyfile(path, inputs / f"{name}.warc.gz")
    config = config_file(tmp_path, [str(inputs / "*.warc.gz")], stages=["extract", "dedup"], max_failed_share=0.5)

    def run(output: Path, file_limit: int | None = None) -> subprocess.CompletedProcess:
        def limit() -> None:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

        return subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--config", str(config), "--output",
                               str(output), "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=300,
                              preexec_fn=limit if file_limit else None)

    assert run(tmp_path / "straight").returncode == 0
    sizes = {path.name: path.stat().st_size for path in (tmp_path / "straight" / "documents").iterdir()}
    assert min(sizes.values()) < 64_000 < max(sizes.values()), sizes
    first = run(tmp_path / "retried", file_limit=64_000)
    assert first.returncode == 0 and "FAILED UNIT big.warc.gz" in first.stdout and "File too large" in first.stdout
    assert (tmp_path / "retried" / "dedup" / "_done.json").exists()
    assert run(tmp_path / "retried").returncode == 0

    def outputs(run_dir: Path) -> dict[str, bytes]:
        return {str(path.relative_to(run_dir)): path.read_bytes() for folder in ("documents", "dedup")
                for path in sorted((run_dir / folder).rglob("*"))
                if path.is_file() and path.name not in ("_done.json", "_inputs.json", "_graph.npz")}

    assert outputs(tmp_path / "retried") == outputs(tmp_path / "straight")
    assert not list((tmp_path / "retried").rglob("*.tmp"))
