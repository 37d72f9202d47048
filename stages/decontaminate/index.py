"""The decontamination index: the n-grams of every evaluation item, and which items hold each.

Built once per run on the driver (`build_index`) and staged for the workers as one file (`write_index`), an
uncompressed .npz of these arrays:

    hashes           uint64, sorted: one entry per (n-gram, item that holds it), so an n-gram of 3 items is there 3
                     times; a document's n-grams are looked up in it with one `np.searchsorted`
    items            uint32: the item of each entry (ties in item order)
    item_ngrams      uint32, per item: its distinct n-grams that count (the denominator of its coverage)
    item_sets        uint16, per item: its evaluation set, an index into set_names
    item_numbers     uint32, per item: its number in its set, from 1, in the order its files were read
    set_names        str, per set
    set_items        uint32, per set: the items read
    set_unmatchable  uint32, per set: items with no n-gram that counts (fewer than n words, or only common n-grams)
    settings         str: JSON of n, the normalisation and max_items_per_ngram

Two kinds of n-gram are left out, so that they match nothing and no item's coverage counts them: one held by more
than `max_items_per_ngram` items (a template sentence, a licence line the set repeats), too common to tell an item;
and one of numbers alone (a calculation), which a table of numbers on any page can hold as well.

The same sets and settings give the same bytes (stable sorts, fixed timestamps in the zip), so that a rebuilt index
is staged under the same name.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.io.atomic import replace, temporary_path
from stages.dedup.minhash import Normalization
from stages.decontaminate.ngrams import numbers_only, text_ngrams

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # every member's timestamp, so that equal arrays give equal bytes


@dataclass(frozen=True, eq=False)
class EvalIndex:
    """An index as built or loaded: the arrays above, its settings, and the look-ups a worker makes."""

    n: int
    normalization: Normalization
    max_items_per_ngram: int | None
    hashes: np.ndarray
    items: np.ndarray
    item_ngrams: np.ndarray
    item_sets: np.ndarray
    item_numbers: np.ndarray
    set_names: list[str]
    set_items: np.ndarray
    set_unmatchable: np.ndarray
    _shift: np.uint64 = field(init=False, repr=False)
    _occupied: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """The screen of `contains`: a bit for each bucket of hashes that share their top bits, set when the index
        holds one of them; about 16 buckets per entry (2 bytes), from 1 KB to 256 MB."""
        bits = int(np.clip(np.ceil(np.log2(max(len(self.hashes), 1) * 16)), 13, 31))
        shift = np.uint64(64 - bits)
        buckets = self.hashes >> shift  # sorted, as the hashes are
        buckets = buckets[_run_starts(buckets)]
        byte_starts = np.flatnonzero(_run_starts(buckets >> np.uint64(3)))
        bits_set = np.left_shift(1, (buckets & np.uint64(7)).astype(np.uint8)).astype(np.uint8)
        occupied = np.zeros(1 << (bits - 3), dtype=np.uint8)
        if len(buckets):
            occupied[buckets[byte_starts] >> np.uint64(3)] = np.bitwise_or.reduceat(bits_set, byte_starts)
        object.__setattr__(self, "_shift", shift)
        object.__setattr__(self, "_occupied", occupied)

    def item_name(self, item: int) -> str:
        """How signals name an item: `<set>:<number>` (gsm8k:17 is the 17th item of the set gsm8k)."""
        return f"{self.set_names[self.item_sets[item]]}:{self.item_numbers[item]}"

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """For each n-gram hash, whether the index holds it. Most n-grams of a document are in no item: a bit per
        bucket of hashes (their top bits) turns nearly all of them away, and only the rest are searched for."""
        held = np.zeros(len(hashes), dtype=bool)
        if not len(self.hashes):
            return held
        buckets = hashes >> self._shift
        bits = self._occupied[buckets >> np.uint64(3)] >> (buckets & np.uint64(7)).astype(np.uint8)
        candidates = np.flatnonzero(bits & 1)
        positions = np.searchsorted(self.hashes, hashes[candidates])
        np.minimum(positions, len(self.hashes) - 1, out=positions)
        held[candidates] = self.hashes[positions] == hashes[candidates]
        return held

    def entries(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(which of `hashes`, item) for every index entry that one of `hashes` finds: an n-gram of k items gives k
        pairs, one that is not in the index none."""
        first = np.searchsorted(self.hashes, hashes, side="left")
        counts = np.searchsorted(self.hashes, hashes, side="right") - first
        which = np.repeat(np.arange(len(hashes)), counts)
        entry = np.repeat(first - (np.cumsum(counts) - counts), counts) + np.arange(counts.sum())
        return which, self.items[entry]


def build_index(sets: Sequence[tuple[str, Sequence[str]]], n: int, normalization: Normalization,
                max_items_per_ngram: int | None) -> EvalIndex:
    """The index of evaluation sets given as (name, item texts)."""
    texts = [text for _, items in sets for text in items]
    set_sizes = np.array([len(items) for _, items in sets], dtype=np.int64)
    item_sets = np.repeat(np.arange(len(sets), dtype=np.uint16), set_sizes)
    set_starts = np.cumsum(set_sizes) - set_sizes
    item_numbers = (np.arange(len(texts)) - np.repeat(set_starts, set_sizes) + 1).astype(np.uint32)
    grams = text_ngrams(texts, n, normalization)
    items = np.repeat(np.arange(len(texts), dtype=np.uint32), np.diff(grams.offsets))
    telling = ~numbers_only(texts, n, normalization)
    hashes, items = grams.hashes[telling], items[telling]
    order = np.lexsort((items, hashes))  # by hash, then item
    hashes, items = hashes[order], items[order]
    distinct = _run_starts(hashes) | _run_starts(items)  # an item's repeated n-gram once
    hashes, items = hashes[distinct], items[distinct]
    if max_items_per_ngram is not None:
        first = np.flatnonzero(_run_starts(hashes))
        holders = np.diff(np.append(first, len(hashes)))
        counted = np.repeat(holders <= max_items_per_ngram, holders)
        hashes, items = hashes[counted], items[counted]
    item_ngrams = np.bincount(items, minlength=len(texts)).astype(np.uint32)
    return EvalIndex(
        n=n, normalization=normalization, max_items_per_ngram=max_items_per_ngram, hashes=hashes, items=items,
        item_ngrams=item_ngrams, item_sets=item_sets, item_numbers=item_numbers, set_names=[name for name, _ in sets],
        set_items=set_sizes.astype(np.uint32),
        set_unmatchable=np.bincount(item_sets[item_ngrams == 0], minlength=len(sets)).astype(np.uint32),
    )


def _run_starts(values: np.ndarray) -> np.ndarray:
    """Whether each value differs from the one before it (the first always does): in a sorted array, the first of
    each run of equal values."""
    starts = np.ones(len(values), dtype=bool)
    starts[1:] = values[1:] != values[:-1]
    return starts


def write_index(index: EvalIndex, path: Path) -> None:
    """Write the index to `path` atomically (a temporary file beside it, flushed to disk, renamed)."""
    settings = {"n": index.n, "normalization": index.normalization.model_dump(),
                "max_items_per_ngram": index.max_items_per_ngram}
    arrays = {
        "hashes": index.hashes, "items": index.items, "item_ngrams": index.item_ngrams,
        "item_sets": index.item_sets, "item_numbers": index.item_numbers, "set_names": np.array(index.set_names),
        "set_items": index.set_items, "set_unmatchable": index.set_unmatchable,
        "settings": np.array(json.dumps(settings, sort_keys=True)),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    try:
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_STORED) as archive:
            for name, array in arrays.items():
                with archive.open(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME), "w", force_zip64=True) as out:
                    np.lib.format.write_array(out, array, allow_pickle=False)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    replace(temporary, path)


def load_index(path: str | Path) -> EvalIndex:
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    settings = json.loads(str(arrays.pop("settings")))
    return EvalIndex(
        n=settings["n"], normalization=Normalization(**settings["normalization"]),
        max_items_per_ngram=settings["max_items_per_ngram"], set_names=[str(name) for name in arrays.pop("set_names")],
        **arrays,
    )
