"""Batches of contiguous token blocks from the Arrow token shards, memory-mapped, never loaded.

Every shard of a split is mapped once (`map_tokens`: a numpy view of the file, no copy); a batch copies only its
own blocks, B x (T + 1) tokens. A block starts at a uniformly random token of the split (shards weighted by their
token counts), so blocks cross document boundaries, where the end-of-document token tells the model a new document
begins, as GPT-2 and nanoGPT train.

Which blocks make batch `step` of rank `rank` is a pure function of (seed, split, rank, step): no loader state, so
a resumed run sees exactly the batches an uninterrupted one would, and DDP ranks draw disjoint random streams.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.config import ConfigError
from pipeline.token_shards import map_tokens, read_manifest

_SPLIT_STREAMS = {"train": 0, "validation": 1}


class TrainSetupError(ConfigError):
    """Settings that do not fit the data (or the checkpoint): the same command fails the same way until one of
    them changes, so the message says which."""


def _too_short(directory: Path, split: str, block_size: int, longest: int) -> str:
    """Why a split cannot give a block, and what to change."""
    more = "more documents, or a larger tokenize.validation_fraction" if split == "validation" else "more documents"
    return (f"{directory}: the {split} split has no shard longer than block_size {block_size} (its longest has "
            f"{longest:,} tokens): lower block_size, or give it more data ({more})")


class TokenBlocks:
    def __init__(self, shards_dir: str | Path, split: str, block_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        self.directory = Path(shards_dir)
        self.manifest = read_manifest(self.directory)
        if split not in self.manifest["splits"]:
            raise TrainSetupError(f"{self.directory}: no split {split!r} in manifest.json (shards made by another "
                                  "version? make them again with the tokenize stage)")
        description = self.manifest["splits"][split]
        shards = [map_tokens(self.directory / shard["files"]["arrow"]) for shard in description["shards"]]
        self.tokens = [array for array in shards if len(array) > block_size]
        if not self.tokens:
            raise TrainSetupError(_too_short(self.directory, split, block_size, max(map(len, shards), default=0)))
        starts = np.array([len(array) - block_size for array in self.tokens], dtype=np.int64)  # valid starts
        self.cumulative = np.cumsum(starts)
        self.split, self.block_size, self.seed, self.rank, self.world_size = split, block_size, seed, rank, world_size
        self.vocab_size = int(self.manifest["vocab_size"])

    @property
    def total_tokens(self) -> int:
        return int(sum(len(array) for array in self.tokens))

    def batch(self, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) of batch `step`: int64 tensors of shape (batch_size, block_size), targets shifted by
        one token."""
        generator = np.random.default_rng([self.seed, _SPLIT_STREAMS.get(self.split, 2), self.rank, step])
        positions = generator.integers(0, self.cumulative[-1], size=batch_size)
        shard_of = np.searchsorted(self.cumulative, positions, side="right")
        offsets = positions - np.concatenate(([0], self.cumulative[:-1]))[shard_of]
        blocks = np.stack([self.tokens[s][o:o + self.block_size + 1] for s, o in zip(shard_of, offsets)])
        blocks = torch.from_numpy(blocks.astype(np.int64))
        return blocks[:, :-1], blocks[:, 1:]
