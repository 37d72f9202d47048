"""The Ray tasks of the tokenize stage, in a module of their own that imports only what they need (not Ray Data),
so that a fresh worker process starts them in a fraction of a second. pipeline/tokenize_runner.py composes them."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from pipeline.io.storage import parquet_file, storage_path
from pipeline.token_shards import shard_name, write_shard
from stages.tokenize import TRAIN, VALIDATION, Encoder, TokenizeConfig, splits_of
from stages.tokenizer import id_hashes

SLICE_ROWS = 1_024  # documents per encoding task (whole row groups): small enough to keep both cores busy to the end


def slices(parts: list[str]) -> list[tuple[str, list[int]]]:
    """(part, row groups) work items of about SLICE_ROWS documents, from the Parquet footers."""
    items = []
    for path in parts:
        metadata = parquet_file(path).metadata
        groups: list[int] = []
        rows = 0
        for index in range(metadata.num_row_groups):
            groups.append(index)
            rows += metadata.row_group(index).num_rows
            if rows >= SLICE_ROWS:
                items.append((path, groups))
                groups, rows = [], 0
        if groups:
            items.append((path, groups))
    return items


_encoders: dict[str, Encoder] = {}  # per worker process: Ray reuses a worker for many tasks, the model loads once


def _encoder(model: bytes) -> Encoder:
    digest = hashlib.sha256(model).hexdigest()
    if digest not in _encoders:
        _encoders.clear()
        _encoders[digest] = Encoder(model)
    return _encoders[digest]


@ray.remote(num_returns=2)
def encode_slice(path: str, row_groups: list[int], model: bytes, config: dict) -> tuple[dict, pa.Table]:
    """Encode a slice of a documents part: its counts per split, and its rows (id, tokens with the end-of-document
    id last, n_tokens, validation, shuffle key), documents without tokens left out."""
    settings = TokenizeConfig.model_validate(config)
    encoder = _encoder(model)
    table = parquet_file(path).read_row_groups(row_groups, columns=["id", "text"])
    ids = table.column("id").to_pylist()
    texts = [text or "" for text in table.column("text").to_pylist()]
    encoded: list[np.ndarray] = []
    for start in range(0, len(texts), settings.batch_documents):
        encoded += encoder.encode(texts[start:start + settings.batch_documents])
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    validation = splits_of(ids, settings.validation_fraction)
    has_tokens = lengths > 1  # more than the end-of-document token
    counts = {"documents": len(ids), "empty": int((~has_tokens).sum())}
    for name, in_split in ((TRAIN, ~validation & has_tokens), (VALIDATION, validation & has_tokens)):
        counts[name] = {"documents": int(in_split.sum()), "tokens": int(lengths[in_split].sum())}
    keep = np.flatnonzero(has_tokens)
    kept_lengths = lengths[keep]
    flat = np.concatenate([encoded[i] for i in keep]) if len(keep) else np.empty(0, encoder.dtype)
    offsets = pa.array(np.concatenate(([0], np.cumsum(kept_lengths))).astype(np.int64))
    rows = pa.table({
        "id": pa.array([ids[i] for i in keep], pa.string()),
        "tokens": pa.LargeListArray.from_arrays(offsets, pa.array(flat)),
        "validation": pa.array(validation[keep]),
        "key": pa.array(id_hashes([ids[i] for i in keep], settings.seed)),
    })
    return counts, rows


@ray.remote
def split_by_shard(rows: pa.Table, train_shards: int, validation_shards: int) -> tuple[pa.Table, ...] | pa.Table:
    """The map side of the shuffle: a slice's rows cut by shard (train shards first, then validation), one return
    value per shard (submit with num_returns = shards), so each writer fetches only its own piece of each slice."""
    validation = rows.column("validation").to_numpy(zero_copy_only=False)
    keys = rows.column("key").to_numpy()
    counts = np.where(validation, max(validation_shards, 1), max(train_shards, 1)).astype(np.uint64)
    group = (keys % counts).astype(np.int64) + np.where(validation, train_shards, 0)
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(train_shards + validation_shards + 1))
    ordered = rows.take(pa.array(order))
    pieces = tuple(ordered.slice(bounds[g], bounds[g + 1] - bounds[g]) for g in range(train_shards + validation_shards))
    return pieces if len(pieces) > 1 else pieces[0]


@ray.remote
def write_shard_task(directory: str, split: str, number: int, dtype: str, *pieces: pa.Table) -> dict:
    """The reduce side: one shard's documents from every slice, ordered by shuffle key (then id), written."""
    table = pa.concat_tables(pieces)
    order = pc.sort_indices(table.select(["key", "id"]), sort_keys=[("key", "ascending"), ("id", "ascending")])
    tokens = table.column("tokens").combine_chunks() if table.num_rows else pa.array([], pa.large_list(pa.uint16()))
    return write_shard(storage_path(directory), shard_name(split, number), table.column("id").take(order).to_pylist(),
                       _reordered(tokens, order.to_numpy()), np.dtype(dtype))


def _reordered(tokens: pa.LargeListArray, order: np.ndarray) -> pa.LargeListArray:
    """tokens.take(order), as one numpy copy of each document's slice: Arrow's take on a list column of millions
    of values is several times slower."""
    offsets, values = tokens.offsets.to_numpy(), tokens.values.to_numpy()
    starts, ends = offsets[:-1][order], offsets[1:][order]
    flat = (np.concatenate([values[start:end] for start, end in zip(starts.tolist(), ends.tolist())])
            if len(order) else values[:0])
    return pa.LargeListArray.from_arrays(pa.array(np.concatenate(([0], np.cumsum(ends - starts)))), pa.array(flat))
