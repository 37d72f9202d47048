"""Inputs read where they are: a real multi-member .warc.gz served by a loopback HTTP server (and by a moto S3
server) is cut into byte-range units and read by range, with the rows of the local copy; network faults are retried,
a 404 fails at once, Retry-After is honoured, and in a Ray run only the workers read the WARC bytes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import yaml

from http_server import FileServer
import test_object_store
from test_object_store import BUCKET, s3
from pipeline.config import load_config
from pipeline.io import ranged
from pipeline.io.archive_reader import ReadOptions
from pipeline.io.ranged import RemoteReadError, open_input
from pipeline.io.remote import list_uris
from pipeline.io.text_reader import TextFields
from pipeline.io.units import plan_file, read_unit
from pipeline.runner import run_pipeline

NAME = "derived-real-html-00000.warc.gz"  # 8.6 MB, one gzip member per record
MB = 1 << 20


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(ranged, "BACKOFF_S", 0.01)


@pytest.fixture(scope="module")
def s3_query():
    """moto's S3 server on loopback, as tests/test_object_store.py starts it."""
    yield from test_object_store.s3_query.__wrapped__()


@pytest.fixture(scope="module")
def warc(warc_dir) -> Path:
    return warc_dir / "derived_real_html" / NAME


def rows(units) -> list[dict]:
    """Every row of the units, without the `source` column (the path or URI that was read)."""
    return [{key: value for key, value in row.items() if key != "source"}
            for unit in units for row in read_unit(unit, ReadOptions(), TextFields())]


def spans(units) -> list[tuple]:
    return [(unit.format, unit.layout, unit.start, unit.end) for unit in units]


def test_byte_range_units_read_over_http_give_the_rows_of_the_local_file(warc):
    local = plan_file(str(warc), "warc", MB)
    with FileServer({f"/crawl/{NAME}": warc.read_bytes()}) as server:
        remote = plan_file(f"{server.base_url}/crawl/{NAME}", "warc", MB)
        planning = [entry for entry in server.log if entry[0] == "GET"]
        assert len(remote) == 9 and spans(remote) == spans(local)
        # planning reads the size (HEAD) and the first bytes only
        assert all(int(asked.split("=")[1].split("-")[1]) < MB // 2 for _, _, asked, _ in planning)
        remote_rows = rows(remote)
    assert len(remote_rows) > 250 and remote_rows == rows(local)


def test_503_cut_and_slow_answers_are_retried_and_change_nothing(warc):
    local_rows = rows(plan_file(str(warc), "warc", MB))
    with FileServer({f"/crawl/{NAME}": warc.read_bytes()}, slow_s=0.3) as server:
        units = plan_file(f"{server.base_url}/crawl/{NAME}", "warc", MB)
        server.faults[f"/crawl/{NAME}"] = ["503", "cut", "slow", "503", "cut"]
        assert rows(units) == local_rows
        assert server.faults[f"/crawl/{NAME}"] == []


def test_after_a_cut_connection_the_retry_asks_for_the_bytes_not_yet_received():
    body = os.urandom(300_000)
    with FileServer({"/f": body}) as server:
        server.faults["/f"] = ["cut"]
        assert open_input(f"{server.base_url}/f").read() == body
        half = ranged.FIRST_BLOCK // 2
        assert server.ranges["/f"][:3] == [0, half, ranged.FIRST_BLOCK]


def test_json_lines_and_parquet_over_http_give_the_rows_of_the_local_files(tmp_path, data_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [f"document {index} " * 20 for index in range(3000)]
    pq.write_table(pa.table({"text": texts}), tmp_path / "docs.parquet", row_group_size=300)
    (tmp_path / "docs.jsonl").write_bytes((data_dir / "benchmarks" / "gsm8k" / "test.jsonl").read_bytes())
    with FileServer({f"/{name}": (tmp_path / name).read_bytes() for name in ("docs.parquet", "docs.jsonl")}) as server:
        for name, fmt in (("docs.jsonl", "jsonl"), ("docs.parquet", "parquet")):
            remote = plan_file(f"{server.base_url}/{name}", fmt, 50_000)
            local = plan_file(str(tmp_path / name), fmt, 50_000)
            assert len(remote) > 5 and spans(remote) == spans(local)
            assert rows(remote) == rows(local) != []


def test_a_404_fails_at_once_naming_the_uri_the_range_and_the_status():
    with FileServer({}) as server:
        url = f"{server.base_url}/crawl/missing.warc.gz"
        with pytest.raises(RemoteReadError) as failure:
            open_input(url).read(10)
        assert str(failure.value) == f"{url} bytes 0-{ranged.FIRST_BLOCK - 1}: HTTP 404"
        assert len(server.log) == 1


def test_a_server_that_keeps_failing_is_named_with_its_status_after_the_last_try():
    with FileServer({"/f.warc.gz": b"x" * 100}) as server:
        server.faults["/f.warc.gz"] = ["503"] * ranged.TRIES
        url = f"{server.base_url}/f.warc.gz"
        with pytest.raises(RemoteReadError, match=f"^{url} bytes 0-.*: HTTP 503 after {ranged.TRIES} tries$"):
            open_input(url).read()
        assert server.requests["/f.warc.gz"] == ranged.TRIES


def test_retry_after_is_honoured():
    with FileServer({"/f": b"payload"}, retry_after_s=1) as server:
        server.faults["/f"] = ["429"]
        started = time.monotonic()
        assert open_input(f"{server.base_url}/f").read() == b"payload"
        waited = time.monotonic() - started
    assert 1.0 <= waited < 3.0  # the backoff alone would be 0.01 s


def test_every_request_says_which_process_reads():
    with FileServer({"/f": b"payload"}) as server:
        ranged.input_size(f"{server.base_url}/f")
        open_input(f"{server.base_url}/f").read()
        assert [reader for *_, reader in server.log] == [f"{os.uname().nodename}:{os.getpid()}"] * 2


def test_in_a_ray_run_the_driver_reads_no_warc_bytes_beyond_planning_probes(tmp_path, warc_dir, local_ray):
    """Two files over HTTP, unit_mb 1: the driver asks for sizes and the first bytes of each file; every other byte
    is fetched by worker processes, and the documents are those of the local files."""
    sources = [warc_dir / "derived_real_html" / NAME, warc_dir / "dolma_wget" / "sample-0000.warc.gz"]
    files = {f"/crawl/{source.name}": source.read_bytes() for source in sources}
    with FileServer(files) as server:
        remote = run(tmp_path, "remote", [server.base_url + path for path in files])
        log = list(server.log)
    local = run(tmp_path, "local", [str(source) for source in sources])
    assert remote.ok and local.ok and remote.units_total == 10
    assert documents(remote) == documents(local) != []
    driver = f"{os.uname().nodename}:{os.getpid()}"
    driver_gets = [asked for method, _, asked, reader in log if method == "GET" and reader == driver]
    worker_gets = [(path, asked) for method, path, asked, reader in log if method == "GET" and reader != driver]
    assert driver_gets and all(int(asked.split("-")[1]) < MB // 2 for asked in driver_gets)  # probes only
    for path, body in files.items():  # the workers read each file to its end
        last = max(int(asked.split("-")[1]) for asked_path, asked in worker_gets if asked_path == path)
        assert last >= len(body) - 1


def test_s3_objects_are_listed_planned_and_read_by_range(warc, s3_query):
    """A glob URI with the store's options lists the object; its units are byte ranges read through pyarrow's range
    reads, with the rows of the local file."""
    target = s3(s3_query, f"inputs/{NAME}")
    with target.filesystem.open_output_stream(target.path, compression=None) as out:
        out.write(warc.read_bytes())
    listed, failures = list_uris([f"s3://{BUCKET}/inputs/*.warc.gz?{s3_query}"])
    assert not failures and list(listed) == [f"s3://{BUCKET}/inputs/{NAME}?{s3_query}"]
    assert listed[f"s3://{BUCKET}/inputs/{NAME}?{s3_query}"]["bytes"] == warc.stat().st_size  # sized by the listing
    units = plan_file(next(iter(listed)), "warc", MB)
    local = plan_file(str(warc), "warc", MB)
    assert spans(units) == spans(local) and len(units) == 9
    assert units[0].id.startswith(NAME) and s3_query not in units[0].id
    assert rows(units) == rows(local)


def run(tmp_path: Path, name: str, paths: list[str]):
    config_file = tmp_path / f"{name}.yaml"
    config_file.write_text(yaml.safe_dump({"name": name, "input": {"paths": paths, "unit_mb": 1},
                                           "stages": ["extract"]}))
    return run_pipeline(load_config(config_file, output=str(tmp_path / name)), show_progress=False)


def documents(result) -> list[tuple]:
    table = ds.dataset(result.run_dir / "documents", format="parquet").to_table(columns=["id", "url", "text"])
    return sorted(zip(*(table.column(c).to_pylist() for c in ("id", "url", "text"))))
