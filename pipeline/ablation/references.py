"""Reference sets: held-out text every model of an ablation is scored on, read from files once.

A text file (.txt, or each .txt member of a .zip) is cut into pieces at blank lines, none longer than
`piece_chars` (a paragraph longer than that is a piece of its own, cut at the limit); a JSONL or Parquet file gives
one piece per record (its `field`). Of all pieces, a uniform sample up to `max_bytes` UTF-8 bytes is kept: the
pieces in the order of a fixed hash of their text, so the sample does not depend on the files' order and the same
files always give the same sample.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq

from pipeline.ablation.settings import ReferenceSettings
from pipeline.config import ConfigError

TEXT_SUFFIXES = (".txt", ".text")


def reference_files(settings: ReferenceSettings) -> list[Path]:
    files: list[Path] = []
    for pattern in settings.paths:
        matches = sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True)) or [pattern]
        for match in matches:
            path = Path(match)
            if path.is_dir():
                files += sorted(p for p in path.rglob("*") if p.is_file() and _readable(p))
            elif path.is_file():
                files.append(path)
            else:
                raise ConfigError(f"reference set {settings.name}: {pattern} matches no file")
    if not files:
        raise ConfigError(f"reference set {settings.name}: no .txt, .zip, .jsonl or .parquet file in {settings.paths}")
    return files


def _readable(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return name.endswith((*TEXT_SUFFIXES, ".zip", ".jsonl", ".json", ".parquet"))


def pieces_of(path: Path, settings: ReferenceSettings) -> Iterator[str]:
    """Every piece of text in one file."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        table = pq.read_table(path, columns=[settings.field])
        yield from (text for text in table.column(settings.field).to_pylist() if isinstance(text, str))
        return
    if name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            for member in sorted(archive.namelist()):
                if member.lower().endswith(TEXT_SUFFIXES):
                    yield from text_pieces(archive.read(member).decode("utf-8", "replace"), settings.piece_chars)
        return
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rb") as raw:
        data = raw.read().decode("utf-8", "replace")
    if name.removesuffix(".gz").endswith((".jsonl", ".json")):
        for number, line in enumerate(io.StringIO(data), 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line).get(settings.field)
            except (ValueError, AttributeError):
                raise ConfigError(f"reference set {settings.name}: {path} line {number} is not a JSON object") from None
            if isinstance(text, str):
                yield text
        return
    yield from text_pieces(data, settings.piece_chars)


def text_pieces(text: str, piece_chars: int) -> Iterator[str]:
    """Paragraphs (blank-line separated) joined up to `piece_chars` characters."""
    piece: list[str] = []
    size = 0
    for paragraph in text.replace("\r\n", "\n").split("\n\n"):
        paragraph = paragraph.strip("\n")
        if not paragraph.strip():
            continue
        while len(paragraph) > piece_chars:
            if piece:
                yield "\n\n".join(piece)
                piece, size = [], 0
            yield paragraph[:piece_chars]
            paragraph = paragraph[piece_chars:]
        if piece and size + len(paragraph) + 2 > piece_chars:
            yield "\n\n".join(piece)
            piece, size = [], 0
        piece.append(paragraph)
        size += len(paragraph) + 2
    if piece:
        yield "\n\n".join(piece)


def read_reference(settings: ReferenceSettings) -> list[str]:
    """The set's sample: pieces in fixed-hash order up to max_bytes (at least one piece)."""
    keyed = []
    for path in reference_files(settings):
        for text in pieces_of(path, settings):
            if text.strip():
                keyed.append((hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), text))
    if not keyed:
        raise ConfigError(f"reference set {settings.name}: its files hold no text")
    keyed.sort()
    chosen, size = [], 0
    for _, text in keyed:
        length = len(text.encode("utf-8"))
        if chosen and size + length > settings.max_bytes:
            break
        chosen.append(text)
        size += length
    return chosen
