"""The hostile corpus of scripts/fuzz_inputs.py (--quick sizes) beside good files, through every per-document
stage and dedup on a real local Ray: no unit fails, every hostile file ends as counted rows with a reason, each
unit stays within its time and memory bounds, and not one of the good files' records is lost."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def fuzz_module():
    spec = importlib.util.spec_from_file_location("fuzz_inputs", REPO / "scripts" / "fuzz_inputs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_inputs"] = module  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def test_hostile_inputs_beside_good_ones_lose_nothing_and_stay_bounded(tmp_path: Path):
    fuzz = fuzz_module()
    report = fuzz.fuzz(tmp_path, fuzz.QUICK, seed=0)
    mixed, alone = report["mixed"], report["alone"]
    assert mixed["exit"] == 0 and not mixed["failed_units"] and not mixed["accounting_problems"], mixed
    assert report["good_records_lost"] == 0
    assert mixed["records"] > alone["records"]
    for reason in ("not_a_warc", "not_parquet", "bad_content_length", "invalid_json", "damaged_gzip"):
        assert mixed["read_failed"].get(reason, 0) > 0, (reason, mixed["read_failed"])
    assert mixed["read_dropped"].get("too_large", 0) >= 2  # the long JSONL line and the huge Parquet cell
    # bounds, not speed targets: the bomb (64 MiB of zeros), the 32 MiB zero file and the quadratic-regex page
    # would each hold a worker for minutes, and the 8 MB line take gigabytes, if a read were unbounded
    assert mixed["slowest_unit_s"] < 60, mixed["slowest_unit_s"]
    assert mixed["peak_worker_mb"] < 1536, mixed["peak_worker_mb"]
