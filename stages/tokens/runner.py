"""The tokenizer and tokenize global stages on Ray.

tokenizer: a bottom-k sample of the documents by seeded id hash, drawn in two passes (1: each part's k smallest
hashes, merged by a tree of tasks, give the k-th smallest; 2: each part keeps the texts at or under it, in the
object store), then sentencepiece training in a task that takes the sample's blocks by reference: the driver
receives k hashes once and the model, never texts. A model given by the `model` setting is copied as it is instead.
Writes the model (tokenizer/tokenizer.model for sentencepiece, tokenizer/tokenizer.hf.json for a given Hugging Face
tokenizer.json), its description tokenizer/tokenizer.json (the model's file name and kind, vocabulary, end-of-text
id and token, settings, what the sample was, and the vocabulary size trained beside the one asked: a small sample
gives fewer pieces, and the stage warns that it did) and _done.json.

tokenize: one plain Ray task per slice of a documents part (whole row groups holding about shard_tokens tokens,
stages/tokens/tasks.py) encodes it (the model cached per worker process) and writes its shards, one per split
(pipeline/token_shards.py); the driver writes manifest.json from the entries the tasks return.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray
import ray.data

from pipeline.config import ConfigError
from pipeline.io.atomic import atomic_write_bytes, atomic_write_json
from pipeline.io.storage import StoragePath, parquet_file, read_parquet, storage_path
from pipeline.progress import StepReport, no_steps
from pipeline.run_dir import RunDir
from pipeline.stats import StageTally
from pipeline.token_shards import FORMAT, write_manifest
from stages.tokens.tasks import slices, tokenize_slice
from pipeline.tree_reduce import tree_reduce
from stages.tokens.tokenize import TRAIN, VALIDATION, TokenizeConfig
from stages.tokens.tokenizer import TokenizerConfig, bottom_k, id_hashes, train_model, training_lines
from stages.tokens.files import FILE_NAMES, load_tokenizer

DESCRIPTION_FILE = "tokenizer.json"  # the run's description of its tokenizer, not a Hugging Face tokenizer.json
log = logging.getLogger(__name__)


def _part_files(source: StoragePath) -> list[str]:
    return sorted(str(path) for path in source.glob("part-*.parquet"))


def _parts_dataset(parts: list[str]) -> ray.data.Dataset:
    return ray.data.from_items([{"path": path} for path in parts], override_num_blocks=max(1, len(parts)))


# --------------------------------------------------------------------------------------------------- tokenizer


def _part_bottom_hashes(path: str, k: int, seed: int) -> np.ndarray:
    """The k smallest id hashes of one documents part (a leaf of the sample's tree)."""
    hashes = id_hashes(read_parquet(path, columns=["id"]).column("id").to_pylist(), seed)
    return hashes[bottom_k(hashes, k)]


def _merge_bottom_hashes(k: int, *results: np.ndarray) -> np.ndarray:
    """The k smallest of several parts' k smallest (an inner node of the sample's tree)."""
    merged = np.concatenate(results)
    return merged[bottom_k(merged, k)]


def sample_threshold(parts: list[str], k: int, seed: int, options: dict) -> tuple[int, int]:
    """(the largest of the k smallest id hashes of all parts, rounds of merging): one task per part, merged 16 at a
    time by a tree of tasks (pipeline/tree_reduce.py), so the driver holds one reference per pending result and
    receives k hashes once, however many parts there are."""
    leaf = ray.remote(_part_bottom_hashes).options(**options)
    merge = ray.remote(_merge_bottom_hashes).options(**options)
    root, rounds, _ = tree_reduce([leaf.remote(path, k, seed) for path in parts],
                                  lambda results: merge.remote(k, *results))
    smallest = ray.get(root) if root is not None else np.empty(0, np.uint64)
    return (int(smallest.max()) if len(smallest) else 0), rounds


def _part_sample(batch: dict, threshold: int, seed: int, chars: int) -> dict:
    table = read_parquet(str(batch["path"][0]), columns=["id", "text"])
    ids = table.column("id").to_pylist()
    hashes = id_hashes(ids, seed)
    chosen = np.flatnonzero(hashes <= np.uint64(threshold))
    texts = table.column("text").take(pa.array(chosen, pa.int64())).to_pylist()
    texts = [(text or "")[:chars] for text in texts]
    return {"hash": hashes[chosen], "id": np.array([ids[i] for i in chosen], dtype=object),
            "text": np.array(texts, dtype=object),
            "has_text": np.array([bool(text.strip()) for text in texts], dtype=np.int64)}


def _train_on_sample(config: TokenizerConfig, threads: int, blocks: list) -> tuple[bytes, int, int]:
    """(model bytes, documents, characters): sentencepiece trained on the sample (`blocks`: references to its Arrow
    blocks) in hash order, so that the same sample trains the same model, in a Ray task that asks for the CPUs it
    trains with (ray.stages.tokenizer.cpus)."""
    rows = []
    for block in ray.get(blocks):
        rows += zip(block.column("hash").to_pylist(), block.column("id").to_pylist(), block.column("text").to_pylist())
    texts = [text for _, _, text in sorted(rows, key=lambda row: (row[0], row[1]))]
    model = train_model(training_lines(texts, config.sample_chars_per_document), config, threads=threads)
    return model, len(texts), sum(map(len, texts))


def smaller_vocabulary(asked: int, trained: int, details: dict) -> str:
    """The line that says the trained vocabulary is smaller than asked (sentencepiece stops when the sample has no
    more pieces to merge, see train_model)."""
    return (f"tokenizer: vocab_size {asked:,} asked, {trained:,} trained: the sample ({details['sample_documents']:,} "
            f"documents, {details['sample_characters']:,} characters) is too small for more pieces")


def run_tokenizer(config: TokenizerConfig, run: RunDir, source: StoragePath, workers: int,
                  options: dict | None = None, step: StepReport = no_steps) -> StageTally:
    """Train (or copy) the run's tokenizer into run.tokenizer; returns the stage's counts (it drops nothing)."""
    options = options or {}
    started = time.monotonic()
    parts = _part_files(source)
    documents = sum(parquet_file(path).metadata.num_rows for path in parts)
    details: dict = {"source": str(source)}
    if config.model is not None:
        model = storage_path(config.model).read_bytes()
        details["copied_from"] = config.model
    else:
        step("sample", len(parts), "parts")
        threshold, _ = sample_threshold(parts, config.sample_documents, config.seed, options)
        sampled = _parts_dataset(parts).map_batches(
            _part_sample, fn_kwargs={"threshold": threshold, "seed": config.seed,
                                     "chars": config.sample_chars_per_document},
            batch_size=1, batch_format="numpy", **options).materialize()
        if not sampled.sum("has_text"):
            raise ConfigError(f"no text to train a tokenizer on: {documents:,} documents in {source}, none with text "
                              "in the sample (give an existing model as tokenizer.model instead)")
        threads = max(1, int(options.get("num_cpus", 1)))
        step("train", sampled.count(), "documents")
        model, sample_documents, sample_characters = ray.get(  # the sample's blocks go by reference, not the driver
            ray.remote(_train_on_sample).options(**options).remote(config, threads, sampled.to_arrow_refs()))
        details.update(sample_documents=sample_documents, sample_characters=sample_characters,
                       vocab_size_asked=config.vocab_size)
    tokenizer = load_tokenizer(model, config.eos_token, source=config.model or "the trained model")
    if config.model is None and tokenizer.vocab_size < config.vocab_size:
        log.warning(smaller_vocabulary(config.vocab_size, tokenizer.vocab_size, details))
    model_file = FILE_NAMES[tokenizer.kind]
    atomic_write_bytes(run.tokenizer / model_file, model)
    description = {
        "model": model_file, "kind": tokenizer.kind, "sha256": hashlib.sha256(model).hexdigest(),
        "vocab_size": tokenizer.vocab_size, "eos_id": tokenizer.eos_id, "eos_token": tokenizer.eos_token,
        "dtype": tokenizer.dtype.name, "settings": config.model_dump(mode="json"), **details,
    }
    atomic_write_json(run.tokenizer / DESCRIPTION_FILE, description)
    tally = StageTally("tokenizer", rows_in=documents, kept=documents, seconds=time.monotonic() - started)
    atomic_write_json(run.tokenizer / "_done.json", {"stage": tally.to_dict(), **description})
    return tally


# ---------------------------------------------------------------------------------------------------- tokenize

def run_tokenize(config: TokenizeConfig, run: RunDir, source: StoragePath, workers: int,
                 options: dict | None = None, step: StepReport = no_steps) -> StageTally:
    """Encode every document under `source` into run.shards; returns the stage's counts.

    One task per slice of a documents part (stages/tokens/tasks.py) encodes it and writes its own shards; the
    driver holds one reference per slice and gets back counts and manifest entries, never documents or tokens. No
    documents move between tasks: the trainer mixes them by drawing blocks from every shard of a split
    (pipeline/train/data.py), as nanoGPT's and Megatron's loaders do."""
    started = time.monotonic()
    if config.model:
        model_path, eos_token = storage_path(config.model), config.eos_token
    else:  # the tokenizer stage's file, and the end-of-text token it found
        description = json.loads((run.tokenizer / DESCRIPTION_FILE).read_text())
        model_path, eos_token = run.tokenizer / description["model"], description.get("eos_token")
    model = model_path.read_bytes()
    tokenizer = load_tokenizer(model, eos_token, source=str(model_path))
    model_ref = ray.put(model)
    settings = config.model_dump(mode="json")
    options = options or {}
    work = slices(_part_files(source), config.shard_tokens)
    step("encode", len(work), "slices")
    results = ray.get([tokenize_slice.options(**options).remote(path, groups, number, model_ref, eos_token,
                                                                settings, str(run.shards))
                       for number, (path, groups) in enumerate(work)])
    documents = sum(result["documents"] for result in results)
    empty = sum(result["empty"] for result in results)
    splits = {split: [result["shards"][split] for result in results if split in result["shards"]]
              for split in (TRAIN, VALIDATION)}
    run.shards.mkdir(parents=True, exist_ok=True)
    inside = isinstance(model_path, type(run.root)) and model_path.is_relative_to(run.root)
    # relative when inside the run: a run directory can move (or be copied down from an object store)
    tokenizer_path = Path("..") / model_path.relative_to(run.root) if inside else model_path.resolve()
    manifest = {
        "format": FORMAT, "dtype": tokenizer.dtype.name, "vocab_size": tokenizer.vocab_size, "eos_id": tokenizer.eos_id,
        "tokenizer": {"path": str(tokenizer_path), "kind": tokenizer.kind, "sha256": hashlib.sha256(model).hexdigest()},
        "seed": config.seed, "validation_fraction": config.validation_fraction,
        "documents": documents - empty, "tokens": sum(entry["tokens"] for entries in splits.values() for entry in entries),
        "splits": {split: {"documents": sum(entry["documents"] for entry in entries),
                           "tokens": sum(entry["tokens"] for entry in entries), "shards": entries}
                   for split, entries in splits.items()},
    }
    write_manifest(run.shards, manifest)
    tally = StageTally("tokenize", rows_in=documents, kept=documents - empty, seconds=time.monotonic() - started)
    if empty:
        tally.dropped["no_tokens"] = empty
    atomic_write_json(run.shards / "_done.json", {"stage": tally.to_dict(), "tokens": manifest["tokens"],
                                                   "shards": sum(map(len, splits.values()))})
    return tally
