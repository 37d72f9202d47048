"""Turn an HTML payload into text: find its character encoding the way browsers do, cheapest evidence first.

trafilatura on bytes guesses from the bytes alone; but most pages say what they are, in the HTTP header or a
<meta> tag, and guessing (charset_normalizer) is both slower and wrong on short or mixed pages. Order: byte order
mark; strict UTF-8 (bytes that decode as UTF-8 are UTF-8 whatever the label says: mislabelled UTF-8 pages are
common, legacy text that happens to be valid UTF-8 is not); the HTTP Content-Type charset; <meta charset> in the
first 4 KB; a statistical guess; and finally Windows-1252 with replacement, so that decoding never fails.
"""

from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes

_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
# Labels that browsers map to a superset (WHATWG Encoding Standard): pages labelled Latin-1 are really cp1252.
_BROWSER_ALIASES = {"iso-8859-1": "cp1252", "latin-1": "cp1252", "latin1": "cp1252", "ascii": "cp1252",
                    "us-ascii": "cp1252", "iso8859-1": "cp1252", "gb2312": "gb18030", "gbk": "gb18030",
                    "x-sjis": "shift_jis", "utf8": "utf-8"}


def _codec(label: str | None) -> str | None:
    """A Python codec name for a charset label, or None if unknown."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    label = _BROWSER_ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def decode_html(payload: bytes, declared_charset: str | None = None) -> tuple[str, str]:
    """(text, encoding used). Never raises."""
    for bom, encoding in _BOMS:
        if payload.startswith(bom):
            return payload[len(bom):].decode(encoding, errors="replace"), encoding
    try:
        return payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    meta = _META_CHARSET.search(payload[:4096])
    for label in (declared_charset, meta.group(1).decode("ascii", "ignore") if meta else None):
        encoding = _codec(label)
        if encoding is not None and encoding != "utf-8":
            return payload.decode(encoding, errors="replace"), encoding
    best = from_bytes(payload[:20000]).best()
    encoding = _codec(best.encoding) if best is not None else None
    if encoding is not None:
        return payload.decode(encoding, errors="replace"), encoding
    return payload.decode("cp1252", errors="replace"), "cp1252"
