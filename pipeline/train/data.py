"""Batches of contiguous token blocks from the Arrow token shards, memory-mapped, never loaded.

Every shard of a split is mapped once (`map_tokens`: a numpy view of the file, no copy); a batch copies only its
own blocks, B x (T + 1) tokens. A split is read as its shards back to back, in manifest order, and a block starts at
a uniformly random token of it: documents from every shard mix in each batch (the tokenize stage does not shuffle
across shards, the loader does), small shards count like large ones, and blocks cross document (and shard)
boundaries, where the end-of-document token tells the model a new document begins, as GPT-2 and nanoGPT train.

Which blocks make batch `step` is a pure function of (seed, split, step): no loader state, so a resumed run sees
exactly the batches an uninterrupted one would. Under data parallelism rank r of W takes rows r*B/W to (r+1)*B/W of
that global batch of B rows, so the run sees the same blocks whatever the number of ranks (train.py averages the
ranks' gradients and losses over equal slices, which is the single-process mean).
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


def rows_of_rank(batch_size: int, rank: int, world_size: int) -> slice:
    """The rows of a global batch of `batch_size` that rank `rank` of `world_size` trains on: an equal share each,
    so that averaging the ranks' mean losses gives the mean over the whole batch."""
    if batch_size % world_size:
        raise TrainSetupError(f"batch_size {batch_size} is not divisible by the {world_size} data-parallel ranks: "
                              f"each rank takes an equal share of the global batch; set batch_size to a multiple of "
                              f"{world_size} (e.g. {batch_size + world_size - batch_size % world_size}) or run "
                              f"on a number of ranks that divides {batch_size}")
    share = batch_size // world_size
    return slice(rank * share, (rank + 1) * share)


def _too_short(directory: Path, split: str, block_size: int, tokens: int) -> str:
    """Why a split cannot give a block, and what to change."""
    more = "more documents, or a larger tokenize.validation_fraction" if split == "validation" else "more documents"
    return (f"{directory}: the {split} split is not longer than block_size {block_size} (it has {tokens:,} "
            f"tokens): lower block_size, or give it more data ({more})")


class TokenBlocks:
    """The blocks of one split, for rank `rank` of `world_size` data-parallel ranks."""

    def __init__(self, shards_dir: str | Path, split: str, block_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not one of the {world_size} ranks")
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
        """(inputs, targets) of this rank's rows of global batch `step` of `batch_size` rows: int64 tensors of
        shape (batch_size / world_size, block_size), targets shifted by one token."""
        rows = rows_of_rank(batch_size, self.rank, self.world_size)
        generator = np.random.default_rng([self.seed, _SPLIT_STREAMS.get(self.split, 2), step])
        positions = generator.integers(0, int(self.ends[-1]) - self.block_size, size=batch_size)[rows]
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
