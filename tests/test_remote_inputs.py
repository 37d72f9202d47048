"""Input paths given as URIs (file:// globs, http:// files from a real loopback server with a fault) are read where
they are, nothing copied into the cache, and give the same documents as the same files given as local paths."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
import pytest
import yaml

from http_server import FileServer
from pipeline.config import load_config
from pipeline.io import ranged
from pipeline.io.remote import expand_uri, is_uri
from pipeline.runner import run_pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CCPIPELINE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(ranged, "BACKOFF_S", 0.01)


def run(tmp_path: Path, name: str, paths: list[str]):
    config_file = tmp_path / f"{name}.yaml"
    config_file.write_text(yaml.safe_dump({"name": name, "input": {"paths": paths}, "stages": ["extract"]}))
    return run_pipeline(load_config(config_file, output=str(tmp_path / name)), show_progress=False)


def documents(result) -> list[tuple]:
    table = ds.dataset(result.run_dir / "documents", format="parquet").to_table(columns=["id", "text"])
    return sorted(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))


def test_uris_give_the_documents_of_the_same_local_files(tmp_path, warc_dir, local_ray):
    whirlwind = warc_dir / "cc_whirlwind" / "whirlwind.warc.gz"
    with FileServer({"/crawl/whirlwind.warc.gz": whirlwind.read_bytes()}) as server:
        server.faults["/crawl/whirlwind.warc.gz"] = ["503"]
        remote = run(tmp_path, "remote", [f"file://{warc_dir}/dolma_wget/*.warc.gz",
                                          f"{server.base_url}/crawl/whirlwind.warc.gz"])
        assert server.faults["/crawl/whirlwind.warc.gz"] == []  # the 503 was retried
    local = run(tmp_path, "local", [str(warc_dir / "dolma_wget" / "*.warc.gz"), str(whirlwind)])
    assert remote.ok and local.ok and documents(remote) == documents(local) != []
    assert not (tmp_path / "cache").exists()  # nothing downloaded


def test_a_uri_that_names_no_file_is_failed_input_by_name(tmp_path, warc_dir, local_ray):
    missing = f"file://{warc_dir}/dolma_wget/*.nothing"
    result = run(tmp_path, "missing", [missing, str(warc_dir / "cc_whirlwind" / "whirlwind.warc.gz")])
    assert not result.ok and list(result.failed_units) == [f"download {missing}"]
    assert "matches no file" in result.failed_units[f"download {missing}"]


def test_uri_listing():
    assert is_uri("s3://bucket/x") and is_uri("https://h/x") and not is_uri("/data/x.warc.gz")
    assert expand_uri("https://example.org/a.warc.gz") == ["https://example.org/a.warc.gz"]
