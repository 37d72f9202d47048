"""Batches of contiguous token blocks from the Arrow token shards, memory-mapped, never loaded.

Every shard of a split is mapped once (`map_tokens`: a numpy view of the file, no copy); a batch copies only its
own blocks, B x (T + 1) tokens. A split is read as its shards back to back, in manifest order, and a block starts at
a uniformly random token of it: documents from every shard mix in each batch (the tokenize stage does not shuffle
across shards, the loader does), small shards count like large ones, and blocks cross document (and shard)
boundaries, where the end-of-document token tells the model a new document begins, as GPT-2 and nanoGPT train.

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


def _too_short(directory: Path, split: str, block_size: int, tokens: int) -> str:
    """Why a split cannot give a block, and what to change."""
    more = "more documents, or a larger tokenize.validation_fraction" if split == "validation" else "more documents"
    return (f"{directory}: the {split} split is not longer than block_size {block_size} (it has {tokens:,} "
            f"tokens): lower block_size, or give it more data ({more})")


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
        self.tokens = [array for array in shards if len(array)]
        self.ends = np.cumsum([len(array) for array in self.tokens], dtype=np.int64)  # of each shard in the split
        total = int(self.ends[-1]) if len(self.ends) else 0
        if total <= block_size:
            raise TrainSetupError(_too_short(self.directory, split, block_size, total))
        self.split, self.block_size, self.seed, self.rank, self.world_size = split, block_size, seed, rank, world_size
        self.vocab_size = int(self.manifest["vocab_size"])

    @property
    def total_tokens(self) -> int:
        return int(sum(len(array) for array in self.tokens))

    def batch(self, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) of batch `step`: int64 tensors of shape (batch_size, block_size), targets shifted by
        one token."""
        generator = np.random.default_rng([self.seed, _SPLIT_STREAMS.get(self.split, 2), self.rank, step])
        positions = generator.integers(0, int(self.ends[-1]) - self.block_size, size=batch_size)
        blocks = torch.from_numpy(np.stack([self._block(int(p)) for p in positions]).astype(np.int64))
        return blocks[:, :-1], blocks[:, 1:]

    def _block(self, position: int) -> np.ndarray:
        """The block_size + 1 tokens of the split from `position`, copied from one shard or, at a shard's end, from
        the next ones."""
        shard = int(np.searchsorted(self.ends, position, side="right"))
        start = position - (int(self.ends[shard - 1]) if shard else 0)
        wanted = self.block_size + 1
        block = self.tokens[shard][start:start + wanted]
        if len(block) == wanted:
            return block
        pieces = [block]
        while wanted - sum(map(len, pieces)):
            shard += 1
            pieces.append(self.tokens[shard][:wanted - sum(map(len, pieces))])
        return np.concatenate(pieces)
