"""Tokenize every kept document into token shards a trainer can stream (global stage).

The runner (stages/tokens/runner.py) encodes the documents in Ray tasks with the run's tokenizer (the
`tokenizer` stage's model, or this stage's own `model`: a sentencepiece model or a Hugging Face tokenizer.json,
stages/tokens/files.py), each task writing the shards of its slice of a documents part with
pipeline/token_shards.py. The pure parts are here: encoding a batch and the train/validation split.

Determinism: a document's split depends only on its id (a fixed-key hash), its place in its shard only on its id
and `seed`, the slices only on the documents parts and `shard_tokens`. So the same documents give byte-identical
shards whatever the number of workers. Documents are not moved between shards: the trainer draws its blocks from
every shard of a split at random (pipeline/train/data.py), so a batch mixes websites without a global shuffle.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pydantic import Field

from stages.base import GlobalContext, StageConfig
from stages.tokens.tokenizer import EOS_TOKEN_DESCRIPTION, GivenModelStage, id_hashes
from stages.tokens.files import BOTH_KINDS, load_tokenizer

SPLIT_SEED = 0x5EED_5B1D  # fixed: the split of a document never changes with the shuffle seed
TRAIN, VALIDATION = "train", "validation"


class TokenizeConfig(StageConfig):
    model: str | None = Field(
        None, description=f"Tokenizer to encode with: {BOTH_KINDS}; default: the one the run's tokenizer stage "
        "trained or copied.",
    )
    eos_token: str | None = Field(None, description=EOS_TOKEN_DESCRIPTION)
    validation_fraction: float = Field(
        0.01, ge=0, lt=1, description="Share of documents in the validation split, chosen by a hash of their id."
    )
    shard_tokens: int = Field(
        50_000_000, ge=1_000,
        description="Target tokens per shard: a shard is one task's slice of a documents part, whole row groups "
                    "whose text holds about this many tokens (a part never shares a shard with another)."
    )
    seed: int = Field(0, ge=0, description="Seed of the order of documents across and within shards.")
    batch_documents: int = Field(256, ge=1, description="Documents encoded per call.")


class Tokenize(GivenModelStage):
    name = "tokenize"
    Config = TokenizeConfig
    directory = "shards"

    @classmethod
    def run(cls, settings: TokenizeConfig, context: GlobalContext) -> None:
        from stages.tokens.runner import run_tokenize

        run_tokenize(settings, context.run, source=context.source, workers=context.workers,
                     options=context.options, step=context.step)


def splits_of(ids: Sequence[str], validation_fraction: float) -> np.ndarray:
    """True where a document is in the validation split: its fixed-key id hash is in the lowest fraction."""
    return id_hashes(ids, SPLIT_SEED) < np.uint64(min(int(validation_fraction * 2.0**64), (1 << 64) - 1))


class Encoder:
    """Texts -> token ids with an end-of-document token after each, with a tokenizer file of either kind (its bytes;
    `eos_token` as the stage's setting); built once per worker."""

    def __init__(self, model: bytes, eos_token: str | None = None):
        self.tokenizer = load_tokenizer(model, eos_token)
        self.eos_id = self.tokenizer.eos_id  # found now: a tokenizer without one fails before any document
        self.dtype = self.tokenizer.dtype

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        return self.tokenizer.encode(texts)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)
