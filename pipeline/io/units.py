"""Cut the input into units of work: a whole file, or a byte range of one.

A unit is what a worker reads, processes and writes as one output part with one completion marker. Units depend
only on the input files and the unit size, so a re-run maps to the same units and skips the finished ones. Big
record-per-gzip-member archives (Common Crawl's 1 GB WARCs) and plain JSONL are cut into byte ranges so that one
file keeps every worker busy; a record belongs to the range holding its first byte.
"""

from __future__ import annotations

import glob
import hashlib
import math
import os
import re
from dataclasses import asdict, dataclass
from typing import Iterator, Literal

from pipeline.io.archive_reader import Layout, MemberSpan, ReadOptions, probe_layout, read_archive
from pipeline.io.gzip_members import ConcatenatedGzipReader, is_gzip
from pipeline.io.ranged import input_size, is_remote, open_input, plain_location
from pipeline.io.record_framing import looks_like_record_start
from pipeline.io.text_reader import TextFields, parquet_row_group_sizes, read_jsonl, read_parquet

Format = Literal["warc", "jsonl", "parquet"]
FORMATS: tuple[str, ...] = ("warc", "jsonl", "parquet")

_SUFFIX_FORMATS: tuple[tuple[str, Format], ...] = (
    (".warc", "warc"),
    (".arc", "warc"),
    (".wet", "warc"),
    (".wat", "warc"),
    (".jsonl", "jsonl"),
    (".ndjson", "jsonl"),
    (".json", "jsonl"),
    (".parquet", "parquet"),
)


@dataclass(frozen=True)
class Unit:
    """One unit of work. `start`/`end` are byte offsets (archives, JSONL) or row-group indexes (Parquet)."""

    id: str
    path: str
    format: Format
    layout: str
    start: int
    end: int
    # Record-per-member archives: where the first record is, once proven by the previous unit (see MemberSpan);
    # None: found by scanning from `start`.
    first_member: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Unit":
        return cls(**values)


def expand_paths(pattern: str) -> list[str]:
    """Absolute paths of the files matching a path, a glob, or every file under a directory, sorted.

    A path that exists is taken literally: `crawl[1].warc.gz` is that file, not a glob for `crawl1.warc.gz`.
    """
    if os.path.isfile(pattern):
        found = [pattern]
    elif os.path.isdir(pattern):
        found = []
        for root, directories, names in os.walk(pattern):
            directories[:] = sorted(d for d in directories if not d.startswith("."))  # as ** globs do
            found += [os.path.join(root, name) for name in names if not name.startswith(".")]
    else:
        found = [path for path in glob.glob(pattern, recursive=True) if os.path.isfile(path)]
    return sorted(os.path.abspath(path) for path in found)


COMPRESSIONS: tuple[str, ...] = (".gz", ".gzip")
_SNIFF_BYTES = 1 << 14  # room for an ARC file's first line


def format_by_name(path: str) -> Format | None:
    """The format a file's name says, compression suffixes aside; None when the name says none."""
    name = plain_location(path).lower()
    for compression in COMPRESSIONS:
        name = name.removesuffix(compression)
    return next((fmt for suffix, fmt in _SUFFIX_FORMATS if name.endswith(suffix)), None)


def content_head(path: str) -> bytes:
    """A file's first bytes, decompressed when it is gzip (damaged data gives fewer bytes, never an exception)."""
    with open_input(path) as fh:
        return ConcatenatedGzipReader(fh).read(_SNIFF_BYTES) if is_gzip(fh) else fh.read(_SNIFF_BYTES)


def sniff_format(path: str) -> Format | None:
    """The format a file's first bytes show (inside gzip), or None when they show none of ours."""
    head = content_head(path)
    if head.startswith(b"PAR1"):
        return "parquet"
    head = head.lstrip()
    if head.startswith(b"{"):
        return "jsonl"
    return "warc" if looks_like_record_start(head) else None


def detect_format(path: str) -> Format:
    """Format from the file name, else from the first bytes; archives are the default."""
    return format_by_name(path) or sniff_format(path) or "warc"


def plan_file(path: str, fmt: Format, unit_bytes: int, size: int | None = None,
              layout: Layout | None = None) -> list[Unit]:
    """The units of one file (a path or a URI: planning reads its size and first bytes, no more; neither when the
    caller knows them, as for Common Crawl's archives, whose records are one gzip member each)."""
    size = input_size(path) if size is None else size
    if fmt == "warc" and layout is not None:
        ranges = _byte_ranges(size, unit_bytes) if layout == "gzip_members" else [(0, size)]
    else:
        with open_input(path) as fh:
            if fmt == "warc":
                layout = probe_layout(fh)
                ranges = _byte_ranges(size, unit_bytes) if layout == "gzip_members" else [(0, size)]
            elif fmt == "jsonl":
                layout = "gzip" if is_gzip(fh) else "plain"
                ranges = _byte_ranges(size, unit_bytes) if layout == "plain" else [(0, size)]
            else:
                layout = "row_groups"
                ranges = _row_group_ranges(parquet_row_group_sizes(fh), unit_bytes)
    tag = _file_tag(path)
    return [Unit(f"{tag}-{k:04d}", path, fmt, layout, start, end) for k, (start, end) in enumerate(ranges)]


def _byte_ranges(size: int, unit_bytes: int) -> list[tuple[int, int]]:
    count = max(1, math.ceil(size / unit_bytes))
    return [(k * unit_bytes, min(size, (k + 1) * unit_bytes)) for k in range(count)]


def _row_group_ranges(group_bytes: list[int], unit_bytes: int) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    start, filled = 0, 0
    for index, size in enumerate(group_bytes):
        filled += size
        if filled >= unit_bytes:
            ranges.append((start, index + 1))
            start, filled = index + 1, 0
    if start < len(group_bytes) or not ranges:
        ranges.append((start, len(group_bytes)))
    return ranges


def _file_tag(path: str) -> str:
    """Readable and unique: the file's stem plus a hash of its full path, or of a URI without its query (so that
    filesystem options such as an endpoint do not rename the units)."""
    where = plain_location(path) if is_remote(path) else os.path.abspath(path)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(where))[:60]
    return f"{stem}-{hashlib.blake2b(where.encode(), digest_size=3).hexdigest()}"


def read_unit(
    unit: Unit, options: ReadOptions, fields: TextFields, span: MemberSpan | None = None
) -> Iterator[dict]:
    """Every record of a unit as a row, in file order; `span` receives where an archive unit's reading went. A remote
    unit's bytes are read here, by range, by whoever runs the unit."""
    source = plain_location(unit.path)
    with open_input(unit.path) as fh:
        if unit.format == "warc":
            yield from read_archive(
                fh, source, unit.layout, unit.start, unit.end, options, unit.first_member, span
            )
        elif unit.format == "jsonl":
            compressed = unit.layout == "gzip"  # a gzip JSONL is one unit: its offsets are uncompressed
            end = None if compressed else unit.end
            yield from read_jsonl(fh, source, compressed, unit.start, end, fields, options.max_payload_bytes)
        else:
            yield from read_parquet(fh, source, unit.start, unit.end, fields, options.max_payload_bytes)

