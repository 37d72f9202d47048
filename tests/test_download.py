"""Downloads against a real HTTP server on 127.0.0.1 with injected faults: retries, HTTP range resume, length and
checksum checks, and a partial file a later run picks up."""

from __future__ import annotations

import hashlib
import os

import pytest

from http_server import FileServer
from pipeline.io import download as download_module
from pipeline.io.download import DownloadError, download

BODY = os.urandom(3 << 20) + b"tail"  # 3 MB: several read chunks


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(download_module, "BACKOFF_S", 0.01)


def test_a_503_is_retried(tmp_path):
    with FileServer({"/f": BODY}) as server:
        server.faults["/f"] = ["503", "503"]
        assert download(f"{server.base_url}/f", tmp_path / "f").read_bytes() == BODY
        assert server.requests["/f"] == 3


def test_a_connection_cut_half_way_resumes_with_a_range_request(tmp_path):
    with FileServer({"/f": BODY}) as server:
        server.faults["/f"] = ["cut"]
        assert download(f"{server.base_url}/f", tmp_path / "f").read_bytes() == BODY
        first, second = server.ranges["/f"]
        assert first == 0 and second == len(BODY) // 2  # the retry asked only for the missing half


def test_a_slow_response_completes(tmp_path):
    with FileServer({"/f": BODY}, slow_s=1.0) as server:
        server.faults["/f"] = ["slow"]
        assert download(f"{server.base_url}/f", tmp_path / "f", timeout_s=5).read_bytes() == BODY
        assert server.requests["/f"] == 1


def test_a_partial_file_left_by_a_killed_run_is_continued_not_restarted(tmp_path):
    partial = tmp_path / ".f.part"
    partial.write_bytes(BODY[:1_000_000])
    with FileServer({"/f": BODY}) as server:
        assert download(f"{server.base_url}/f", tmp_path / "f").read_bytes() == BODY
        assert server.ranges["/f"] == [1_000_000] and not partial.exists()


def test_a_complete_partial_file_is_just_renamed(tmp_path):
    (tmp_path / ".f.part").write_bytes(BODY)
    with FileServer({"/f": BODY}) as server:
        assert download(f"{server.base_url}/f", tmp_path / "f").read_bytes() == BODY


def test_checksum_mismatch_and_missing_file_fail_clearly_and_leave_nothing(tmp_path):
    with FileServer({"/f": BODY}) as server:
        with pytest.raises(DownloadError, match="sha256 is"):
            download(f"{server.base_url}/f", tmp_path / "f", sha256="0" * 64)
        with pytest.raises(DownloadError, match="404"):
            download(f"{server.base_url}/missing", tmp_path / "g")
        assert server.requests["/missing"] == 1  # a 404 is not retried
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with FileServer({"/f": BODY}) as server:
        digest = hashlib.sha256(BODY).hexdigest()
        assert download(f"{server.base_url}/f", tmp_path / "f", sha256=digest).read_bytes() == BODY


def test_a_server_that_keeps_failing_is_reported_after_the_retries(tmp_path):
    with FileServer({"/f": BODY}) as server:
        server.faults["/f"] = ["503"] * 10
        with pytest.raises(DownloadError, match="failed after 3 attempts"):
            download(f"{server.base_url}/f", tmp_path / "f", retries=3)
