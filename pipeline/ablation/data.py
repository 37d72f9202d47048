"""An ablation's data: every variant's documents, tokenized with one tokenizer and cut to one token budget, as token
shards the trainer reads (pipeline/token_shards.py), plus a sample of each variant's held-out documents.

Four passes over the parts, one part in memory at a time; the driver keeps per-variant counts, a histogram of
tokens over 65,536 hash buckets and the tokenizer's bounded sample, never a list of all documents:

1. pool: each part of the run (documents/ and rejects/) and of every other run a variant names; each variant's
   selection (pipeline/ablation/select.py); the documents any variant selected go to pool/<part>.parquet with
   their id hash, split and a column per variant saying whether it selected them.
2. tokens: the tokenizer (given, or trained on a uniform sample of the pool: the documents with the smallest
   seeded id hash, each once); each pool part gets every document's tokens, and each variant's training tokens are
   counted by hash bucket.
3. budget: the budget (`tokens`, or the smallest variant's training tokens) is each variant's first documents in
   hash order (a seeded random order), the last one cut short so that every variant trains on exactly the budget;
   each smaller budget (`budgets`: shares of it) is a prefix of the same order. The bucket where a budget ends is
   read again to find the exact document.
4. shards: per variant, budget and part, a training shard of its documents under the budget and a validation shard
   of all its held-out documents (the split is a fixed hash of the id, as the tokenize stage's: a document is held
   out in every variant that has it), then the manifest, in variants/<variant>/shards-<tokens>/.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.ablation.select import Selection, Variant, VariantError, make_variant, select
from pipeline.ablation.settings import AblateConfig
from pipeline.config import ON_WORKER, ConfigError, RunConfig
from pipeline.io.atomic import atomic_write_bytes, atomic_write_json, atomic_write_parquet
from pipeline.run_dir import RunDir
from pipeline.schema import TEXT
from pipeline.token_shards import FORMAT, shard_name, write_manifest, write_shard
from stages.tokens.files import load_tokenizer
from stages.tokens.tokenize import splits_of
from stages.tokens.tokenizer import TokenizerConfig, id_hashes, train_model, training_lines

BUCKET_BITS = 16
TOKENIZER_SAMPLE_CHARS = 20_000  # characters of each sampled document the tokenizer trains on
TOKENIZER_FILE = "tokenizer.model"


@dataclass
class VariantData:
    """What one variant holds, for the tables."""

    name: str
    candidates: int = 0
    selection: Selection = field(default_factory=Selection)
    train_documents: int = 0  # before the budget
    train_tokens: int = 0  # before the budget
    budget_documents: dict[int, int] = field(default_factory=dict)  # tokens -> documents under it (the last cut)
    validation_documents: int = 0
    validation_tokens: int = 0

    def to_dict(self) -> dict:
        return {"name": self.name, "candidates": self.candidates, "selected": self.selection.selected,
                "dropped": dict(sorted(self.selection.dropped.items())), "undecidable": self.selection.undecidable,
                "train_documents": self.train_documents, "train_tokens": self.train_tokens,
                "budget_documents": {str(tokens): count for tokens, count in self.budget_documents.items()},
                "validation_documents": self.validation_documents,
                "validation_tokens": self.validation_tokens}


@dataclass
class PreparedData:
    budget: int
    budgets: list[int]  # in tokens, smallest first; the last is `budget`
    tokenizer: Path
    variants: dict[str, VariantData]

    def to_dict(self) -> dict:
        return {"budget": self.budget, "budgets": self.budgets, "tokenizer": str(self.tokenizer),
                "variants": [data.to_dict() for data in self.variants.values()]}


def variant_folder(output: Path, name: str) -> Path:
    return output / "variants" / name


def shards_folder(output: Path, name: str, tokens: int) -> Path:
    """The token shards a variant trains on with a budget of `tokens`."""
    return variant_folder(output, name) / f"shards-{tokens}"


def prepare_data(config: AblateConfig, output: Path, log=print) -> PreparedData:
    pool = output / "pool"
    variants = {variant.name: VariantData(variant.name) for variant in config.variants}
    parts = _pool(config, pool, variants, log)
    tokenizer_path = _tokenizer(config, output, parts, log)
    tokenizer = load_tokenizer(tokenizer_path.read_bytes(), source=str(tokenizer_path))
    histograms = _tokens(parts, tokenizer, variants)
    budget = _budget(config, variants)
    budgets = sorted({max(1, round(share * budget)) for share in config.budgets})
    cuts = {name: {tokens: _cut(parts, name, histograms[name], tokens) for tokens in budgets} for name in variants}
    _shards(config, output, parts, variants, cuts, tokenizer, tokenizer_path)
    log(f"budget: {budget:,} training tokens per variant" + (
        f" (and {', '.join(f'{tokens:,}' for tokens in budgets[:-1])})" if len(budgets) > 1 else ""))
    return PreparedData(budget, budgets, tokenizer_path, variants)


# ------------------------------------------------------------------------------------------------------ pool

def _source_parts(config: AblateConfig) -> list[tuple[str, Path, list[str]]]:
    """(label, part file, variants it is a candidate of) for every part, in a fixed order."""
    selecting = [variant.name for variant in config.variants if variant.select is not None]
    parts = []
    if selecting:
        run = RunDir(Path(config.run))
        if not run.documents.exists():
            raise ConfigError(f"run {config.run}: not a run directory (no documents/)")
        if not run.rejects.exists():
            raise ConfigError(f"run {config.run} kept no rejects/: select variants choose among every document the "
                              "run read, so run it with `rejects: true`")
        for folder in (run.documents, run.rejects):
            parts += [("run", path, selecting) for path in sorted(Path(folder).glob("*.parquet"))]
    for variant in config.variants:
        if variant.run is not None:
            documents = Path(RunDir(Path(variant.run)).output_documents)
            files = sorted(documents.glob("*.parquet"))
            if not files:
                raise ConfigError(f"variant {variant.name}: {documents} holds no documents")
            parts += [(variant.name, path, [variant.name]) for path in files]
    return parts


def check_sources(config: AblateConfig) -> None:
    """Every run the variants read is there and every selection can be made: ConfigError before any work."""
    _source_parts(config)
    _variants_of_run(config)


def _variants_of_run(config: AblateConfig) -> tuple[dict[str, Variant], list[str]]:
    if config.run is None:
        return {}, []
    saved = RunDir(Path(config.run)).config_file
    if not saved.exists():
        raise ConfigError(f"run {config.run}: no config.yaml: not a run directory")
    resolved = (yaml.safe_load(saved.read_text()) or {}).get("config", {})
    stages = RunConfig.model_validate(resolved, context={ON_WORKER: True}).document_stages()
    try:
        return ({variant.name: make_variant(variant.name, stages, variant.select) for variant in config.variants
                 if variant.select is not None}, [name for name, _ in stages])
    except VariantError as exc:
        raise ConfigError(str(exc)) from None


def _pool(config: AblateConfig, pool: Path, variants: dict[str, VariantData], log) -> list[Path]:
    """Pass 1: pool/<NNNNN>.parquet per source part with documents any variant selected."""
    selections, run_order = _variants_of_run(config)
    written = []
    names = [variant.name for variant in config.variants]
    for number, (label, path, candidates_of) in enumerate(_source_parts(config)):
        table = pq.read_table(path)
        masks = {}
        for name in candidates_of:
            variants[name].candidates += table.num_rows
            if label == "run":
                chosen, counts = select(table, selections[name], run_order)
            else:
                chosen = pc.is_valid(table.column(TEXT)).to_numpy(zero_copy_only=False)
                counts = Selection(selected=int(chosen.sum()))
            variants[name].selection.add(counts)
            masks[name] = chosen
        any_chosen = np.logical_or.reduce(list(masks.values()))
        rows = np.flatnonzero(any_chosen)
        ids = table.column("id").take(pa.array(rows, pa.int64())).to_pylist()
        columns = {"id": pa.array(ids, pa.string()),
                   TEXT: table.column(TEXT).take(pa.array(rows, pa.int64())),
                   "hash": pa.array(id_hashes(ids, config.seed)),
                   "validation": pa.array(splits_of(ids, config.validation_fraction))}
        for name in names:
            columns[f"in_{name}"] = pa.array(masks[name][rows] if name in masks else np.zeros(len(rows), bool))
        target = pool / f"{number:05d}.parquet"
        atomic_write_parquet(target, pa.table(columns))
        written.append(target)
    log("selected: " + ", ".join(f"{name} {data.selection.selected:,} of {data.candidates:,}"
                                 for name, data in variants.items()))
    for name, data in variants.items():
        if not data.selection.selected:
            raise ConfigError(f"variant {name} selects no document")
    return written


# ---------------------------------------------------------------------------------------------------- tokens

def _tokenizer(config: AblateConfig, output: Path, parts: list[Path], log) -> Path:
    """The given tokenizer, copied, or one trained on the pool's `sample_documents` smallest id hashes (with the
    tokenizer's seed): uniform over the union of the variants, each document once."""
    target = output / "tokenizer" / TOKENIZER_FILE
    settings = config.tokenizer
    if settings.model is not None:
        data = Path(settings.model).expanduser().read_bytes()
        load_tokenizer(data, source=settings.model)  # fails here when it is not a tokenizer
        target = output / "tokenizer" / Path(settings.model).name
        atomic_write_bytes(target, data)
        return target
    heap: list[tuple[int, str, str]] = []  # (-hash, id, text): the k smallest hashes
    for path in parts:
        table = pq.read_table(path, columns=["id", TEXT])
        ids = table.column("id").to_pylist()
        for key, identifier, text in zip(id_hashes(ids, settings.seed).tolist(), ids, table.column(TEXT).to_pylist()):
            item = (-key, identifier, (text or "")[:TOKENIZER_SAMPLE_CHARS])
            if len(heap) < settings.sample_documents:
                heapq.heappush(heap, item)
            elif item > heap[0]:
                heapq.heapreplace(heap, item)
    texts = [text for _, _, text in sorted(heap, reverse=True)]
    log(f"tokenizer: training on {len(texts):,} documents")
    try:
        model = train_model(training_lines(texts, TOKENIZER_SAMPLE_CHARS),
                            TokenizerConfig(vocab_size=settings.vocab_size, seed=settings.seed))
    except RuntimeError as exc:  # sentencepiece: fewer pieces than the characters it must cover
        raise ConfigError(f"tokenizer.vocab_size {settings.vocab_size:,}: sentencepiece could not train on the "
                          f"sample ({str(exc).splitlines()[0].split('] ')[-1]}); raise vocab_size") from None
    atomic_write_bytes(target, model)
    return target


def _tokens(parts: list[Path], tokenizer, variants: dict[str, VariantData]) -> dict[str, np.ndarray]:
    """Pass 2: each pool part gets `tokens` and `n_tokens`; per variant, its training tokens by hash bucket."""
    histograms = {name: np.zeros(1 << BUCKET_BITS, dtype=np.int64) for name in variants}
    for path in parts:
        table = pq.read_table(path)
        encoded = tokenizer.encode([text or "" for text in table.column(TEXT).to_pylist()])
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
        flat = np.concatenate(encoded) if encoded else np.zeros(0, tokenizer.dtype)
        tokens = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(flat.astype(tokenizer.dtype)))
        table = table.append_column("n_tokens", pa.array(lengths)).append_column("tokens", tokens)
        atomic_write_parquet(path, table)
        validation = table.column("validation").to_numpy(zero_copy_only=False)
        buckets = (table.column("hash").to_numpy() >> np.uint64(64 - BUCKET_BITS)).astype(np.int64)
        for name, data in variants.items():
            chosen = table.column(f"in_{name}").to_numpy(zero_copy_only=False)
            train = chosen & ~validation
            data.train_documents += int(train.sum())
            data.train_tokens += int(lengths[train].sum())
            data.validation_documents += int((chosen & validation).sum())
            data.validation_tokens += int(lengths[chosen & validation].sum())
            np.add.at(histograms[name], buckets[train], lengths[train])
    return histograms


def _budget(config: AblateConfig, variants: dict[str, VariantData]) -> int:
    smallest = min(variants.values(), key=lambda data: data.train_tokens)
    if config.tokens == "auto":
        return smallest.train_tokens
    if smallest.train_tokens < config.tokens:
        raise ConfigError(f"tokens {config.tokens:,}: variant {smallest.name} has {smallest.train_tokens:,} "
                          "training tokens: lower tokens (or `auto`: the smallest variant's)")
    return config.tokens


@dataclass(frozen=True)
class Cut:
    """Where a variant's budget ends: every training document in a bucket below `bucket`, the documents of
    `bucket` listed in `whole`, and `last` (its id) cut to `last_tokens` tokens (None when the budget ends on a
    document's end)."""

    bucket: int
    whole: frozenset[str]
    last: str | None
    last_tokens: int


def _cut(parts: list[Path], name: str, histogram: np.ndarray, budget: int) -> Cut:
    """Pass 3, for one variant: the bucket where the budget ends, then that bucket's documents in (hash, id) order."""
    cumulative = np.cumsum(histogram)
    bucket = int(np.searchsorted(cumulative, budget))  # the first bucket whose end reaches the budget
    if bucket >= len(histogram):
        return Cut(len(histogram), frozenset(), None, 0)
    left = budget - (int(cumulative[bucket - 1]) if bucket else 0)
    rows = []
    for path in parts:
        table = pq.read_table(path, columns=["id", "hash", "validation", "n_tokens", f"in_{name}"])
        buckets = (table.column("hash").to_numpy() >> np.uint64(64 - BUCKET_BITS)).astype(np.int64)
        train = (table.column(f"in_{name}").to_numpy(zero_copy_only=False)
                 & ~table.column("validation").to_numpy(zero_copy_only=False) & (buckets == bucket))
        for index in np.flatnonzero(train):
            rows.append((int(table.column("hash")[index].as_py()), table.column("id")[index].as_py(),
                         int(table.column("n_tokens")[index].as_py())))
    whole = []
    for _, identifier, tokens in sorted(rows):
        if tokens > left:  # the budget ends inside this document
            return Cut(bucket, frozenset(whole), identifier, left)
        whole.append(identifier)
        left -= tokens
        if not left:
            return Cut(bucket, frozenset(whole), None, 0)
    raise AssertionError(f"variant {name}: bucket {bucket} holds fewer tokens than its histogram says")


# ---------------------------------------------------------------------------------------------------- shards

def _shards(config: AblateConfig, output: Path, parts: list[Path], variants: dict[str, VariantData],
            cuts: dict[str, dict[int, Cut]], tokenizer, tokenizer_path: Path) -> None:
    """Pass 4: per variant and budget, its shards and manifest; per variant, its validation sample."""
    entries: dict[tuple[str, int], dict[str, list]] = {(name, tokens): {"train": [], "validation": []}
                                                       for name in variants for tokens in cuts[name]}
    samples: dict[str, list] = {name: [] for name in variants}  # (-hash, id, text) heaps
    value_type = pa.from_numpy_dtype(tokenizer.dtype)
    for number, path in enumerate(parts):
        table = pq.read_table(path)
        hashes = table.column("hash").to_numpy()
        buckets = (hashes >> np.uint64(64 - BUCKET_BITS)).astype(np.int64)
        ids = table.column("id").to_pylist()
        validation = table.column("validation").to_numpy(zero_copy_only=False)
        order = np.lexsort((np.array(ids, dtype=object).astype(str), hashes))
        for name, data in variants.items():
            chosen = table.column(f"in_{name}").to_numpy(zero_copy_only=False)
            for tokens, cut in cuts[name].items():
                under = buckets < cut.bucket
                for row in np.flatnonzero(buckets == cut.bucket):  # the bucket where the budget ends
                    under[row] = ids[row] in cut.whole or ids[row] == cut.last
                for split, rows in (("train", chosen & ~validation & under), ("validation", chosen & validation)):
                    picked = order[rows[order]]
                    if not len(picked):
                        continue
                    shard = table.column("tokens").take(pa.array(picked, pa.int64())).combine_chunks()
                    picked_ids = [ids[i] for i in picked]
                    if split == "train" and cut.last in picked_ids:
                        shard = _shortened(shard, picked_ids.index(cut.last), cut.last_tokens, value_type)
                    if split == "train":
                        data.budget_documents[tokens] = data.budget_documents.get(tokens, 0) + len(picked)
                    entries[(name, tokens)][split].append(write_shard(
                        shards_folder(output, name, tokens), shard_name(split, number), picked_ids, shard,
                        tokenizer.dtype))
            held_out = np.flatnonzero(chosen & validation)
            texts = table.column(TEXT).take(pa.array(held_out, pa.int64())).to_pylist()
            for index, text in zip(held_out, texts):
                item = (-int(hashes[index]), ids[index], text)
                if len(samples[name]) < config.validation_documents:
                    heapq.heappush(samples[name], item)
                elif item > samples[name][0]:
                    heapq.heapreplace(samples[name], item)
    for (name, tokens), splits in entries.items():
        if not splits["validation"]:
            raise ConfigError(f"variant {name}: no held-out document: raise validation_fraction")
        folder = shards_folder(output, name, tokens)
        manifest = {
            "format": FORMAT, "dtype": tokenizer.dtype.name, "vocab_size": tokenizer.vocab_size,
            "eos_id": tokenizer.eos_id,
            "tokenizer": {"path": str(Path("..") / ".." / ".." / tokenizer_path.relative_to(output)),
                          "kind": tokenizer.kind, "sha256": _sha256_bytes(tokenizer_path.read_bytes())},
            "seed": config.seed, "validation_fraction": config.validation_fraction,
            "documents": sum(entry["documents"] for split in splits.values() for entry in split),
            "tokens": sum(entry["tokens"] for split in splits.values() for entry in split),
            "splits": {split: {"documents": sum(entry["documents"] for entry in found),
                               "tokens": sum(entry["tokens"] for entry in found), "shards": found}
                       for split, found in splits.items()},
        }
        write_manifest(folder, manifest)
    for name in variants:
        sample = sorted(samples[name], reverse=True)
        atomic_write_parquet(variant_folder(output, name) / "validation.parquet",
                             pa.table({"id": [identifier for _, identifier, _ in sample],
                                       TEXT: [text for _, _, text in sample]}))
        atomic_write_json(variant_folder(output, name) / "data.json", variants[name].to_dict())


def _shortened(tokens: pa.LargeListArray, index: int, keep: int, value_type: pa.DataType) -> pa.LargeListArray:
    """`tokens` with row `index` cut to its first `keep` tokens."""
    rows = [np.asarray(row.values.to_numpy(zero_copy_only=False)) for row in tokens]
    rows[index] = rows[index][:keep]
    offsets = np.concatenate(([0], np.cumsum([len(row) for row in rows]))).astype(np.int64)
    flat = np.concatenate(rows).astype(value_type.to_pandas_dtype())
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(flat, value_type))


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_prepared(output: Path) -> dict | None:
    path = output / "data.json"
    return json.loads(path.read_text()) if path.exists() else None

