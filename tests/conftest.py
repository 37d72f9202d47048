"""Shared fixtures: the repository root, the real third-party test data, and a local Ray for end-to-end tests.

The data is read-only and lives outside the repository (../shared/data from the repo root); tests read it in place
and never copy it into the repository. Damaged variants are written under pytest's tmp_path.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data; a missing folder is a failure, not a skip, so a broken checkout cannot pass silently."""
    assert DATA.is_dir(), f"real test data not found at {DATA}"
    return DATA


@pytest.fixture(scope="session")
def warc_dir(data_dir: Path) -> Path:
    return data_dir / "warc"


@pytest.fixture(scope="session")
def local_ray():
    """One embedded local Ray for the whole session (the runner joins it instead of starting its own)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = False
    if not ray.is_initialized():
        ray.init(
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            object_store_memory=512 * 1024 * 1024,
            logging_level=logging.WARNING,
        )
        started = True
    yield ray
    if started:
        ray.shutdown()
