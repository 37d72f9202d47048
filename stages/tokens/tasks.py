"""The Ray task of the tokenize stage, in a module of its own that imports only what it needs (not Ray Data), so
that a fresh worker process starts it in a fraction of a second. stages/tokens/runner.py composes it.

One task per slice (a run of whole row groups of one documents part) encodes its documents and writes its own
shards, one per split, ordered by seeded id hash; nothing but counts and manifest entries returns to the driver.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import ray

from pipeline.io.storage import parquet_file, storage_path
from pipeline.token_shards import shard_name, write_shard
from stages.tokens.tokenize import TRAIN, VALIDATION, Encoder, TokenizeConfig, splits_of
from stages.tokens.tokenizer import id_hashes

BYTES_PER_TOKEN = 4  # to size a slice from the Parquet footer's text bytes before anything is encoded


def slices(parts: list[str], shard_tokens: int) -> list[tuple[str, list[int]]]:
    """(part, row groups) work items from the Parquet footers: consecutive row groups of one part until their text
    holds about `shard_tokens` tokens. A function of the files and the setting only, so that the same input gives
    the same shards whatever the number of workers."""
    items = []
    for path in parts:
        metadata = parquet_file(path).metadata
        text = metadata.schema.names.index("text") if "text" in metadata.schema.names else None
        groups: list[int] = []
        estimate = 0
        for index in range(metadata.num_row_groups):
            groups.append(index)
            if text is not None:
                estimate += metadata.row_group(index).column(text).total_uncompressed_size // BYTES_PER_TOKEN
            if estimate >= shard_tokens:
                items.append((path, groups))
                groups, estimate = [], 0
        if groups:
            items.append((path, groups))
    return items


# per worker process: Ray reuses a worker for many tasks, the model loads once
_encoders: dict[tuple[str, str | None], Encoder] = {}


def _encoder(model: bytes, eos_token: str | None) -> Encoder:
    key = (hashlib.sha256(model).hexdigest(), eos_token)
    if key not in _encoders:
        _encoders.clear()
        _encoders[key] = Encoder(model, eos_token)
    return _encoders[key]


@ray.remote
def tokenize_slice(path: str, row_groups: list[int], number: int, model: bytes, eos_token: str | None, config: dict,
                   directory: str) -> dict:
    """Encode one slice of a documents part with the tokenizer file `model` (its end-of-text token `eos_token`, None
    for the file's own) and write its shards (`<split>-<number>`, documents ordered by seeded id hash, then id; a
    split without documents gets none). Returns the slice's counts and its shards' manifest entries."""
    settings = TokenizeConfig.model_validate(config)
    encoder = _encoder(model, eos_token)
    table = parquet_file(path).read_row_groups(row_groups, columns=["id", "text"])
    ids = table.column("id").to_pylist()
    texts = [text or "" for text in table.column("text").to_pylist()]
    encoded: list[np.ndarray] = []
    for start in range(0, len(texts), settings.batch_documents):
        encoded += encoder.encode(texts[start:start + settings.batch_documents])
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    validation = splits_of(ids, settings.validation_fraction)
    has_tokens = lengths > 1  # more than the end-of-document token
    keys = id_hashes(ids, settings.seed)
    result: dict = {"documents": len(ids), "empty": int((~has_tokens).sum()), "shards": {}}
    for split, in_split in ((TRAIN, ~validation & has_tokens), (VALIDATION, validation & has_tokens)):
        chosen = np.flatnonzero(in_split)
        if not len(chosen):
            continue
        chosen_ids = [ids[i] for i in chosen]
        order = chosen[np.lexsort((np.array(chosen_ids, dtype=object).astype(str), keys[chosen]))]
        flat = np.concatenate([encoded[i] for i in order])
        offsets = pa.array(np.concatenate(([0], np.cumsum(lengths[order]))).astype(np.int64))
        result["shards"][split] = write_shard(
            storage_path(directory), shard_name(split, number), [ids[i] for i in order],
            pa.LargeListArray.from_arrays(offsets, pa.array(flat)), encoder.dtype)
    return result
