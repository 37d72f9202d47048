"""Which input files hold data: by extension and by their first bytes, with a reason for every file that does not.

A folder or glob in `input.paths` often holds more than data: a SOURCE.txt or README, checksums, a Spark or
Hadoop `_SUCCESS` marker, a dataset's metadata JSON. Such a file is skipped, with its reason, instead of being read
as a broken archive. A file found through a folder or glob is read when its extension names one of our formats and
its first bytes agree (a `.gz` name holds gzip, a `.parquet` holds Parquet, the rest begin a WARC/ARC record or JSON
lines, inside gzip where compressed), or when its name names no format and its first bytes show one (`part-00000`).
A file named by its own path is always read: the user asked for it, and a bad one fails where it is read, by
record, instead of vanishing. A zero-byte data file is an empty input: counted and said, not read.

Also: a capture given both as WARC and as WET (`X.warc.gz` and `X.warc.wet.gz`, Common Crawl's names) has its pages
read twice, once from each; `warc_and_wet_warning` says so.
"""

from __future__ import annotations

import json
import os
from typing import Literal

from pipeline.io.gzip_members import GZIP_MAGIC
from pipeline.io.ranged import input_size, open_input, plain_location
from pipeline.io.units import COMPRESSIONS, Format, content_head, format_by_name, sniff_format

Use = Literal["read", "skipped", "empty"]

_FORMAT_NAMES = {"warc": "WARC or ARC", "jsonl": "JSON lines", "parquet": "Parquet"}
# Names that hold JSON lines or one JSON document (a dataset's metadata): the first line tells which.
_JSON_DOCUMENT_SUFFIXES = (".json", ".json.gz", ".json.gzip")
# Compressions the readers do not read: such a file is named for what it is, not reported as an unknown format.
_OTHER_COMPRESSIONS = {b"\x28\xb5\x2f\xfd": "zstd", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz"}


def input_use(path: str, named: bool, size: int | None = None) -> tuple[Use, str]:
    """How a run uses an input file, and why it skips one ("" unless skipped). `named`: the file was given by its
    own path in input.paths, not found through a folder or glob; `size`, when known already."""
    reason = "" if named else skip_reason(path)
    if reason:
        return "skipped", reason
    return ("empty", "") if (input_size(path) if size is None else size) == 0 else ("read", "")


def skip_reason(path: str) -> str:
    """Why a file found through a folder or glob is not input data; "" when it is (a zero-byte file is, when its
    extension names a format)."""
    name = _name(path)
    if name.startswith("_"):  # as pyarrow.dataset and Spark skip them: _SUCCESS, _metadata, _committed_...
        return "not a data file: a marker or metadata file (name starts with _)"
    if input_size(path) == 0:
        return "" if format_by_name(path) else f"not a data file: {_unknown_extension(path)}"
    with open_input(path) as fh:
        magic = fh.read(8)
    compression = next((what for start, what in _OTHER_COMPRESSIONS.items() if magic.startswith(start)), None)
    if compression:
        return f"{compression}-compressed, which is not read (decompress it, or compress it with gzip)"
    by_name = format_by_name(path)
    if by_name is None:
        return "" if sniff_format(path) else f"not a data file: {_unknown_extension(path)}"
    return _mismatch(path, by_name, magic)


def _mismatch(path: str, by_name: Format, magic: bytes) -> str:
    """Why a file's first bytes contradict the format its extension names; "" when they agree. Inside gzip, bytes
    that show no format are let through: damage may hide the first record, and the reader recovers what follows."""
    extension = _suffixes(path)
    compressed = _name(path).lower().endswith(COMPRESSIONS)
    if compressed and not magic.startswith(GZIP_MAGIC):
        return f"extension {extension} but content is not gzip"
    sniffed = sniff_format(path)
    if sniffed is None and not compressed:
        return f"extension {extension} but content is not {_FORMAT_NAMES[by_name]}"
    if sniffed not in (None, by_name):
        return f"extension {extension} but content is {_FORMAT_NAMES[sniffed]}"
    if extension in _JSON_DOCUMENT_SUFFIXES and not _first_line_is_json(path):
        return f"extension {extension} but content is one JSON document, not JSON lines"
    return ""


def _first_line_is_json(path: str) -> bool:
    """Whether the first line parses as JSON (a pretty-printed document's `{` does not); True when that line is
    longer than the bytes looked at."""
    head = content_head(path).lstrip()
    end = head.find(b"\n")
    if end < 0:
        return True
    try:
        json.loads(head[:end])
    except ValueError:
        return False
    return True


def _unknown_extension(path: str) -> str:
    suffixes = _suffixes(path)
    return f"unknown extension {suffixes}" if suffixes else "no extension"


def _suffixes(path: str) -> str:
    """The suffixes that name a file's format: `.warc.wet.gz` of `x.warc.wet.gz`, `.json` of `x.dev.json`, `.tar.gz`
    of `x.tar.gz`."""
    name = _name(path).lower()
    compression = next((suffix for suffix in COMPRESSIONS if name.endswith(suffix)), "")
    stem, suffix = os.path.splitext(name.removesuffix(compression))
    if suffix in (".wet", ".wat") and stem.endswith(".warc"):
        suffix = ".warc" + suffix
    return suffix + compression


def capture_of(path: str) -> tuple[str, str] | None:
    """(capture name, "warc" or "wet") of a WARC or WET file, else None: `X.warc.gz` and `X.warc.wet.gz` (or
    `X.wet`) are both capture `x`."""
    name = _name(path).lower()
    for compression in COMPRESSIONS:
        name = name.removesuffix(compression)
    if name.endswith(".wet"):
        return name.removesuffix(".wet").removesuffix(".warc"), "wet"
    if name.endswith(".warc"):
        return name.removesuffix(".warc"), "warc"
    return None


def _name(path: str) -> str:
    """A file's name, of a path or of a URI (without its query)."""
    return os.path.basename(plain_location(path))


def warc_and_wet_pairs(paths: list[str]) -> list[tuple[str, str]]:
    """(WARC file, WET file) of every capture among `paths` given in both forms, in the order of `paths`."""
    found: dict[tuple[str, str], str] = {}
    for path in paths:
        capture = capture_of(path)
        if capture is not None:
            found.setdefault(capture, path)
    return [(warc, found[(name, "wet")]) for (name, kind), warc in found.items()
            if kind == "warc" and (name, "wet") in found]


def warc_and_wet_warning(paths: list[str]) -> str:
    """One line saying that pages are read twice because captures come as both WARC and WET; "" when none do."""
    pairs = warc_and_wet_pairs(paths)
    if not pairs:
        return ""
    warc, wet = pairs[0]
    captures = "1 capture is" if len(pairs) == 1 else f"{len(pairs):,} captures are"
    return (f"{captures} given both as WARC and as WET (e.g. {warc} and {wet}): their pages are read twice, once "
            "from each; keep one of the two in input.paths")
