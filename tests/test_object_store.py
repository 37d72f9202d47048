"""A run directory on an object store: every worker writes its outputs there, global stages read and write there,
and the trainer trains from there, with the same result as a run on local disk.

The store is a real S3 server on 127.0.0.1 (moto's standalone server, started by the test), reached through
pyarrow's own S3 client exactly as a cluster reaches S3 or MinIO: the run directory is
`s3://bucket/...?endpoint_override=127.0.0.1:PORT&scheme=http`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import yaml

from pipeline.config import ConfigError, RunConfig, validated
from pipeline.io.atomic import AtomicParquetWriter, atomic_write_json, atomic_write_parquet
from pipeline.io.storage import RemotePath, arrow_location, read_parquet, storage_path

REPO = Path(__file__).resolve().parents[1]
BUCKET = "pipeline-test"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_query():
    """An S3 server on loopback with one bucket; yields the URI query that points pyarrow at it."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = {name: os.environ.get(name) for name in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "the S3 server did not start"
                time.sleep(0.2)
        query = f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1&allow_bucket_creation=true"
        RemotePath(f"s3://{BUCKET}?{query}").mkdir()  # creates the bucket
        yield query
    finally:
        server.terminate()
        server.wait(timeout=30)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def s3(query: str, key: str) -> RemotePath:
    return RemotePath(f"s3://{BUCKET}/{key}?{query}")


def test_remote_paths_read_write_list_and_move(s3_query):
    root = s3(s3_query, "paths")
    assert isinstance(storage_path(str(root)), RemotePath) and storage_path(str(root)) == root
    assert str(root / "a" / "b.json") == f"s3://{BUCKET}/paths/a/b.json?{s3_query}"  # options travel with children
    assert (root / "a" / ".." / "c").path == f"{BUCKET}/paths/c"
    assert (root / "a" / "b.json").parent == root / "a" and (root / "a" / "b.json").name == "b.json"
    assert storage_path("file:///tmp/x") == Path("/tmp/x") and storage_path("runs/x") == Path("runs/x")

    atomic_write_json(root / "a" / "b.json", {"x": 1})
    assert json.loads((root / "a" / "b.json").read_text()) == {"x": 1}
    atomic_write_parquet(root / "a" / "t.parquet", pa.table({"n": [1, 2, 3]}))
    assert read_parquet(str(root / "a" / "t.parquet")).column("n").to_pylist() == [1, 2, 3]
    assert [p.name for p in (root / "a").glob("*.parquet")] == ["t.parquet"]
    assert [p.name for p in root.rglob("*.json")] == ["b.json"]
    assert (root / "a" / "b.json").exists() and (root / "a").is_dir() and not (root / "nothing").exists()

    # a writer that fails leaves nothing behind, under its final name or its temporary one
    writer = AtomicParquetWriter(root / "a" / "failed.parquet", pa.schema([("n", pa.int64())]))
    writer.write(pa.table({"n": [1]}))
    writer.abort()
    assert sorted(p.name for p in (root / "a").iterdir()) == ["b.json", "t.parquet"]

    (root / "a" / "b.json").unlink()
    assert not (root / "a" / "b.json").exists()
    (root / "a" / "b.json").unlink(missing_ok=True)
    import pickle

    assert pickle.loads(pickle.dumps(root / "a")) == root / "a"  # Ray task arguments travel pickled


def test_output_uri_must_be_a_storage_location():
    base = {"name": "x", "input": {"paths": ["x.warc.gz"]}, "stages": ["extract"]}
    with pytest.raises(ConfigError, match="output.*ftp://h/x: a run directory is a local path"):
        validated(RunConfig, {**base, "output": "ftp://h/x"}, "config.yaml")


def _run(config: Path, output: str, env: dict) -> subprocess.CompletedProcess:
    completed = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--config", str(config), "--output",
                                output], cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


def _ids(directory) -> list[str]:
    where, filesystem = arrow_location(directory)
    return sorted(ds.dataset(where, format="parquet", filesystem=filesystem).to_table(columns=["id"])
                  .column("id").to_pylist())


def _shard_files(shards) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(shards.iterdir()) if path.name != "_done.json"}


@pytest.mark.slow
def test_a_run_on_s3_equals_the_same_run_on_local_disk(tmp_path, warc_dir, s3_query):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        # one of the three files (290 pages): cut into about 9 units (unit_mb auto), enough for the resume below
        "name": "store", "input": {"paths": [str(warc_dir / "derived_real_html" / "derived-real-html-00000.warc.gz")]},
        "stages": ["extract", "dedup", {"tokenizer": {"vocab_size": 1000}}, {"tokenize": {"shard_tokens": 100_000}},
                   {"train": {"model": {"n_layer": 1, "n_head": 2, "n_embd": 32}, "block_size": 32,
                              "batch_size": 4, "max_steps": 6, "warmup_steps": 2, "eval_interval": 3,
                              "eval_batches": 2, "checkpoint_interval": 3, "device": "cpu"}}],
        "rejects": True,
    }))
    env = {**os.environ, **CREDENTIALS, "RAY_USAGE_STATS_ENABLED": "0", "CCPIPELINE_CACHE": str(tmp_path / "cache")}
    local = tmp_path / "local"
    _run(config, str(local), env)
    remote = s3(s3_query, "runs/store")
    _run(config, str(remote), env)

    assert _ids(remote / "documents") == _ids(local / "documents")
    assert _ids(remote / "dedup" / "documents") == _ids(local / "dedup" / "documents")
    assert _ids(remote / "rejects") == _ids(local / "rejects")
    cluster_files = sorted(path.name for path in (local / "dedup" / "clusters").glob("part-*.parquet"))
    assert cluster_files and sorted(path.name for path in (remote / "dedup" / "clusters").glob("part-*.parquet")) == \
        cluster_files
    for name in cluster_files:
        assert read_parquet(str(remote / "dedup" / "clusters" / name)).equals(
            read_parquet(str(local / "dedup" / "clusters" / name)))
    assert (remote / "tokenizer" / "tokenizer.model").read_bytes() == (local / "tokenizer" / "tokenizer.model").read_bytes()
    assert _shard_files(remote / "shards") == _shard_files(local / "shards")  # byte-identical shards and manifest
    remote_log = [json.loads(line) for line in (remote / "train" / "log.jsonl").read_text().splitlines()]
    local_log = [json.loads(line) for line in (local / "train" / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in remote_log] == list(range(1, 7))
    assert [row["loss"] for row in remote_log] == pytest.approx([row["loss"] for row in local_log], rel=1e-5)
    assert (remote / "train" / "checkpoint.pt").is_file()
    summary = json.loads((remote / "stats" / "summary.json").read_text())
    assert summary["accounting_problems"] == [] and summary["records_read"] > 250
    assert remote.rglob(".*.tmp") == []  # every temporary name was renamed or removed

    # the notebook API and the report read the run where it is
    reported = subprocess.run([sys.executable, "-m", "pipeline.cli", "report", str(remote)], cwd=REPO,
                              capture_output=True, text=True, timeout=300, env=env)
    assert reported.returncode == 0, reported.stderr[-3000:]
    page = (remote / "report.html").read_text()
    assert page.count("<img class='plot'") >= 5 and "alt='training loss'" in page
    assert f"<b>{summary['documents']:,}</b><span>documents kept" in page

    # resume on the store: a unit whose outputs were lost is redone, the others are not, and nothing changes
    unit = sorted(p.name for p in (remote / "_done").glob("*.json"))[0].removesuffix(".json")
    (remote / "_done" / f"{unit}.json").unlink()
    (remote / "documents" / f"part-{unit}.parquet").unlink()
    rerun = _run(config, str(remote), env)
    units = len(list((remote / "_done").glob("*.json")))
    assert f"{units} units, {units - 1} done earlier" in rerun.stdout
    assert _ids(remote / "documents") == _ids(local / "documents")
    assert _shard_files(remote / "shards") == _shard_files(local / "shards")
    assert not (Path(REPO) / str(remote)).exists() and not any(Path(REPO).glob("s3:*"))  # nothing went to local disk
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)


def test_the_output_rules_hold_on_an_object_store(s3_query):
    """The same guard as on disk: a prefix holding someone's objects is refused with or without --overwrite, a
    bucket's root is never cleared, and --overwrite on a run directory removes what a run writes and nothing else."""
    from pipeline.output_guard import OutputRefused, check_output, clear_run_dir, write_marker

    theirs = s3(s3_query, "theirs")
    atomic_write_json(theirs / "table.json", {"keep": True})
    for overwrite in (False, True):
        with pytest.raises(OutputRefused, match="not a run directory"):
            check_output(theirs, overwrite=overwrite)
    with pytest.raises(OutputRefused, match="the root of a bucket"):
        check_output(RemotePath(f"s3://{BUCKET}?{s3_query}"), overwrite=True)
    with pytest.raises(OutputRefused, match="holding the input file"):
        check_output(theirs, overwrite=True, inputs=[str(theirs / "table.json")])

    run = s3(s3_query, "guarded-run")
    write_marker(run, "t")
    atomic_write_json(run / "plan.json", {})
    atomic_write_json(run / "documents" / "part-u.parquet", {})
    atomic_write_json(run / "notes.json", {"keep": True})
    assert check_output(run, overwrite=False) is True and check_output(run, overwrite=True) is False
    assert clear_run_dir(run) == ["notes.json"]
    assert sorted(entry.name for entry in run.iterdir()) == ["_ccpipeline_run.json", "notes.json"]
    assert json.loads((theirs / "table.json").read_text()) == {"keep": True}


def test_one_run_at_a_time_on_an_object_store_with_a_lease(s3_query, monkeypatch):
    """The lock is a lease there: a second holder is refused while the first renews it, and takes it over once
    it was not renewed for STALE_AFTER_S (the clock is moved, not waited for)."""
    from pipeline import run_lock
    from pipeline.run_lock import RunFenced, RunLock, RunLocked

    monkeypatch.setattr(run_lock, "READ_BACK_DELAY_S", 0.05)
    root = s3(s3_query, "leased-run")
    first = RunLock(root)
    first.acquire()
    first.fence.check()
    with pytest.raises(RunLocked, match=f"in use by another run: pid {os.getpid()}"):
        RunLock(root).acquire()
    first.release()
    assert not (root / "_lock.json").exists()

    first = RunLock(root)
    first.acquire()
    first._stop.set()  # the holder stops renewing (a driver that hangs, or a node that vanished)
    first._heartbeat.join()
    later = time.time() + run_lock.STALE_AFTER_S + 1
    monkeypatch.setattr(run_lock.time, "time", lambda: later)
    second = RunLock(root)
    second.acquire()
    with pytest.raises(RunFenced, match="another run holds it now"):
        first.fence.check()  # the first run's workers write nothing more
    second.release()


def test_a_demo_run_on_an_object_store_reads_its_crawl_from_the_run_directory(tmp_path, s3_query):
    """The demo crawl of a run on a store is put into <run>/demo-crawl, so that workers on any node read it there
    (not in the driver's cache); its documents are those of the same demo on local disk."""
    from pipeline.plan import load_plan
    from pipeline.run_dir import RunDir

    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump({"name": "demo", "input": {"demo_crawl": {"pages": 40, "files": 2}},
                                      "stages": ["extract"], "ray": {"in_process_max_mb": 0}}))
    env = {**os.environ, **CREDENTIALS, "RAY_USAGE_STATS_ENABLED": "0", "CCPIPELINE_CACHE": str(tmp_path / "cache")}
    remote = s3(s3_query, "runs/demo")
    _run(config, str(remote), env)
    _run(config, str(tmp_path / "local"), env)
    assert json.loads((remote / "stats" / "summary.json").read_text())["executor"] == "ray"
    assert sorted(entry.name for entry in (remote / "demo-crawl").iterdir()) == [
        "demo-crawl-00000.warc.gz", "demo-crawl-00001.warc.gz"]
    units, _ = load_plan(RunDir(remote).saved_plan())
    assert units and all(unit.path.startswith(f"s3://{BUCKET}/runs/demo/demo-crawl/") for unit in units)
    assert _ids(remote / "documents") == _ids(tmp_path / "local" / "documents") != []
