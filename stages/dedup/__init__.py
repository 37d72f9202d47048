"""Deduplication across the whole run: exact (same normalised text) and near (MinHash-LSH), one kept per cluster.

A global stage, and its pieces together in this package: minhash.py (normalisation, shingles, signatures, band keys,
text hashes), graph.py (document keys, star edges, the keep rule), star.py (one large-star or small-star step),
pure functions that know nothing of Ray; components.py (connected components and the keep rule as Ray Data
shuffles) and runner.py (the whole stage on Ray, or in this process for a small run), which compose them. The kept
document of a cluster is the longest; among equally long ones, the first in input order.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stages.base import GlobalContext, GlobalStage, StageConfig
from stages.dedup.minhash import MinHashSettings

ROWS_PER_PARTITION = 2_000_000  # shuffle rows one reducer handles at once (about 60 MB)
HASH_SHUFFLE_MIN_DOCUMENTS = 1_000_000  # shuffle: auto takes Ray Data's hash shuffle from here on


class DedupConfig(StageConfig):
    exact: bool = Field(True, description="Remove documents whose normalised text equals another's.")
    near: bool = Field(True, description="Remove near-duplicates found by MinHash-LSH.")
    minhash: MinHashSettings = Field(
        default_factory=MinHashSettings,
        description="Shingles, bands x rows, seed, and the text normalisation (also used by exact dedup).",
    )
    verify_jaccard: float | None = Field(
        None, ge=0, le=1,
        description="Check each candidate pair's real shingle Jaccard and drop pairs below this; null: trust LSH.",
    )
    shuffle_partitions: int | None = Field(
        None, ge=1, description="Groups of the band-key shuffle; default: from the document count and workers."
    )
    shuffle: Literal["auto", "sort", "hash"] = Field(
        "auto",
        description="Ray Data's shuffle: sort (no actors to start; the driver tracks map tasks x blocks), hash "
                    "(an aggregator actor per partition; the driver's memory stays flat); auto: hash from "
                    "1,000,000 documents.",
    )


def shuffle_partitions(documents: int, bands: int, workers: int) -> int:
    """Enough partitions that one holds about ROWS_PER_PARTITION band rows, and at least two per worker."""
    return max(2 * workers, -(-documents * bands // ROWS_PER_PARTITION), 1)


class Dedup(GlobalStage):
    name = "dedup"
    Config = DedupConfig
    directory = "dedup"
    writes_documents = True
    other_outputs = ("rejects/dedup",)

    @classmethod
    def run(cls, settings: DedupConfig, context: GlobalContext) -> None:
        from stages.dedup.runner import run_dedup

        run_dedup(settings, context.run, source=context.source, rejects=context.rejects, workers=context.workers,
                  options=context.options, in_process=context.in_process, step=context.step)
