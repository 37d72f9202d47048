"""Token shards on disk: the layout the trainer reads, written atomically and read back without copies.

One shard is three files, each written to a temporary name and renamed:

    <split>-<NNNNN>.parquet       one row per document: id, n_tokens, tokens (list<uint16|uint32>), for notebooks
    <split>-<NNNNN>.arrow         Arrow IPC file, one record batch, one column `tokens`: every document's tokens,
                                  each followed by the end-of-document id, back to back; memory-map it and
                                  `.to_numpy()` is a view of the mapped file (no copy)
    <split>-<NNNNN>.index.arrow   Arrow IPC file: id, start (offset into the flat tokens), n_tokens, per document

`manifest.json` beside them lists every shard with its counts and the sha256 of each file, the dtype, vocabulary
size, end-of-document id, tokenizer path (relative, so a run directory can move), kind and sha256, and the split
settings.
n_tokens counts the end-of-document token, so: manifest tokens = sum of Parquet n_tokens = length of the Arrow
token arrays.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from pipeline.io.atomic import atomic_write_bytes, publish_file, temporary_path
from pipeline.io.storage import StoragePath, local_copy, storage_path
from stages.tokens.files import SENTENCEPIECE

MANIFEST = "manifest.json"
FORMAT = "ccpipeline-token-shards/1"


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:05d}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_shard(directory: StoragePath, name: str, ids: list[str], tokens: pa.ListArray | pa.LargeListArray,
                dtype: np.dtype) -> dict:
    """Write one shard's three files from its documents, in the order given; returns its manifest entry."""
    directory.mkdir(parents=True, exist_ok=True)
    value_type = pa.from_numpy_dtype(dtype)
    flat = tokens.flatten().cast(value_type)
    lengths = np.asarray(tokens.value_lengths().fill_null(0), dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    offsets = pa.array(np.concatenate(([0], np.cumsum(lengths))).astype(np.int64))
    documents = pa.table({
        "id": pa.array(ids, pa.string()),
        "n_tokens": pa.array(lengths.astype(np.int32)),
        "tokens": pa.LargeListArray.from_arrays(offsets, flat).cast(pa.list_(value_type)),
    })
    files = {"parquet": f"{name}.parquet", "arrow": f"{name}.arrow", "index": f"{name}.index.arrow"}
    writers = {
        "parquet": lambda path: pq.write_table(documents, path, compression="zstd", row_group_size=8_192),
        "arrow": lambda path: _write_ipc(path, pa.table({"tokens": flat})),
        "index": lambda path: _write_ipc(path, pa.table({"id": documents["id"], "start": pa.array(starts),
                                                         "n_tokens": documents["n_tokens"]})),
    }

    def write_and_hash(kind: str, scratch: str) -> str:
        final = directory / files[kind]
        # written beside the final name on local disk; on this machine's disk first for an object store
        written = temporary_path(final) if isinstance(final, Path) else Path(scratch) / files[kind]
        writers[kind](written)
        checksum = _sha256(written)
        publish_file(written, final)
        return checksum

    # Arrow's writers and hashlib release the GIL: the three files are written (and hashed) at once.
    with tempfile.TemporaryDirectory(prefix="shard-") as scratch, ThreadPoolExecutor(max_workers=len(files)) as pool:
        checksums = dict(zip(files, pool.map(write_and_hash, files, [scratch] * len(files))))
    return {"name": name, "files": files, "documents": len(ids), "tokens": int(lengths.sum()), "sha256": checksums}


def _write_ipc(path: Path, table: pa.Table) -> None:
    """One record batch, so that the whole column is one contiguous buffer in the file."""
    batch = table.combine_chunks().to_batches(max_chunksize=max(1, table.num_rows))
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
        for record_batch in batch or [pa.RecordBatch.from_pylist([], schema=table.schema)]:
            writer.write_batch(record_batch)


def write_manifest(directory: StoragePath, manifest: dict) -> None:
    atomic_write_bytes(directory / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())


def read_manifest(directory: str | StoragePath) -> dict:
    """The manifest; one written before tokenizers had kinds names a sentencepiece model, and says so."""
    manifest = json.loads((storage_path(directory) / MANIFEST).read_text())
    if "tokenizer" in manifest:
        manifest["tokenizer"].setdefault("kind", SENTENCEPIECE)
    return manifest


def local_shards(directory: StoragePath, cache: Path | None = None) -> Path:
    """The shards folder on this machine's disk, for memory maps: itself when local. For a run on an object store,
    a copy under <cache>/runs/<hash of its URI>/shards of the manifest, the .arrow and .index.arrow files (checked
    against the manifest's sha256) and, beside it as in the run, the tokenizer model; fetched once per manifest."""
    if isinstance(directory, Path):
        return directory
    from pipeline.io.download import cache_base

    manifest = read_manifest(directory)
    local = (cache or cache_base()) / "runs" / hashlib.sha256(str(directory).encode()).hexdigest()[:16] / "shards"
    if (local / MANIFEST).exists() and json.loads((local / MANIFEST).read_text()) == manifest:
        return local
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            for kind in ("arrow", "index"):
                target = local_copy(directory / shard["files"][kind], local / shard["files"][kind])
                if _sha256(target) != shard["sha256"][kind]:
                    target.unlink()
                    raise ValueError(f"{directory / shard['files'][kind]}: sha256 differs from the manifest's")
    tokenizer = manifest["tokenizer"]["path"]
    if not tokenizer.startswith(("/", "s3://", "gs://", "gcs://", "hdfs://")):  # relative to the shards folder
        local_copy(directory / tokenizer, (local / tokenizer).resolve())
    write_manifest(local, manifest)  # last: its presence says the copy is whole
    return local


def map_tokens(path: str | Path) -> np.ndarray:
    """The flat tokens of an .arrow shard as a read-only numpy view of the memory-mapped file (no copy)."""
    source = pa.memory_map(str(path), "r")
    reader = ipc.open_file(source)
    if reader.num_record_batches != 1:
        raise ValueError(f"{path}: expected one record batch, found {reader.num_record_batches}")
    return reader.get_batch(0).column(0).to_numpy(zero_copy_only=True)


def read_index(path: str | Path) -> pa.Table:
    """id, start, n_tokens of every document of a shard (from its .index.arrow)."""
    return ipc.open_file(pa.memory_map(str(path), "r")).read_all()  # the table keeps the mapping alive
