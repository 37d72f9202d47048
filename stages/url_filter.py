"""URL filter: drop documents whose URL is on a blocklist or names banned words, before anything reads the page.

The cheapest decision of a run (microseconds a URL, no payload read), so it comes first; datatrove, NeMo Curator,
Dolma and DCLM all filter URLs before extraction, and FineWeb drops the domains and URLs of the UT1 `adult` list.
Modelled on datatrove's URLFilter. The lists are files, one entry per line (`#` starts a comment line; gzip when the
name ends in `.gz`); the project ships none. The first rule that matches decides:

1. `blocked_domain`: the host, or a parent of it down to its registered domain (eTLD+1 by tldextract's bundled
   public-suffix snapshot, never the network), is a domain-list entry. `example.com` blocks `www.example.com` and
   `a.b.example.com`, not `notexample.com` nor `example.com.evil.org`; `shop.example.co.uk` blocks that host and its
   subdomains, not `example.co.uk`. An entry is never matched above a registered domain, so `co.uk` blocks nothing.
   An IP address is matched whole; a host on no known suffix (`.example`) as if its last label were one.
2. `blocked_url`: the URL as blocklists write it (no scheme, no leading `www.`, no port, no fragment:
   `example.com/path?q`) is a URL-list entry or lies under one, at a `/` or `?` (squidGuard's convention, which
   UT1's `urls` files follow).
3. `banned_word`: a token of the lower-cased URL (a run of ASCII letters and digits) is a banned word.
4. `soft_banned_words`: more than `max_soft_banned_words` distinct tokens are soft-banned words.
5. `banned_subword`: a banned subword occurs anywhere in the URL reduced to its letters and digits
   (`freexxxvideos`), found with an Aho-Corasick automaton over all of them at once.

Word entries are reduced the same way ("2 girls 1 cup" -> "2girls1cup"), as datatrove does. Signals: `url_match`,
what decided (the listed domain or URL, the word, the soft-banned words found, the subword), and
`url_soft_banned_words`, the distinct soft-banned words in the URL. A row without a URL is kept with both null:
nothing can block it.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
from pydantic import Field

from stages.base import Decision, Stage, StageConfig, StageSetupError, set_columns, with_outcome

URL = "url"
MATCH = "url_match"
SOFT_COUNT = "url_soft_banned_words"

_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_WWW = re.compile(r"^www\d*\.")
_PORT = re.compile(r":\d*$")


class UrlFilterConfig(StageConfig):
    domain_lists: list[str] = Field(
        default_factory=list, description="Files of blocked domains or hosts, one a line (UT1's `domains`); each "
        "blocks its subdomains too.",
    )
    url_lists: list[str] = Field(
        default_factory=list, description="Files of blocked URLs, one a line, scheme and `www.` optional (UT1's "
        "`urls`); each blocks the URLs under it.",
    )
    banned_word_lists: list[str] = Field(
        default_factory=list, description="Files of words; a URL with one of them as a token is dropped.",
    )
    banned_subword_lists: list[str] = Field(
        default_factory=list, description="Files of words; a URL holding one anywhere in its letters and digits "
        "is dropped.",
    )
    soft_banned_word_lists: list[str] = Field(
        default_factory=list, description="Files of words that only count together: see max_soft_banned_words.",
    )
    max_soft_banned_words: int = Field(
        1, ge=0, description="A URL with more distinct soft-banned words as tokens is dropped (datatrove's "
        "soft_word_threshold of 2).",
    )


LIST_SETTINGS = ("domain_lists", "url_lists", "banned_word_lists", "banned_subword_lists", "soft_banned_word_lists")


def list_entries(paths: Iterable[str | Path]) -> Iterator[str]:
    """The entries of list files, in order: stripped non-empty lines not starting with `#`; a file is read as gzip
    when its name ends in `.gz`. Streamed, so that a list of millions of domains is never held twice."""
    for path in paths:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as lines:
            for line in lines:
                entry = line.strip()
                if entry and not entry.startswith("#"):
                    yield entry


def as_domain(entry: str) -> str:
    """A domain-list entry as hosts are compared: lower case, without `*.` or a leading or trailing dot."""
    return entry.lower().lstrip("*.").rstrip(".")


def as_word(entry: str) -> str:
    """A word-list entry, or a URL, reduced to its lower-cased ASCII letters and digits."""
    return _NOT_ALNUM.sub("", entry.lower())


def hostname(url: str) -> str | None:
    """The URL's host, lower-cased, without port, credentials or a final dot (None when it has none)."""
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:  # a malformed port or IPv6 address
        return None
    return host.rstrip(".") if host else None


def registered_domain_finder() -> Callable[[str], str]:
    """host -> its registered domain (eTLD+1: `a.b.example.co.uk` -> `example.co.uk`), by tldextract's bundled
    public-suffix snapshot: no network, no cache files. A host on no known suffix (`.example`, an intranet name) is
    taken as if its last label were one; an IP address or a bare suffix is its own. Each host is looked up once."""
    import tldextract

    suffixes = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    @lru_cache(maxsize=1 << 16)
    def registered_domain(host: str) -> str:
        parts = suffixes.extract_str(host)
        if parts.suffix:
            return f"{parts.domain}.{parts.suffix}" if parts.domain else host
        if parts.subdomain:
            return f"{parts.subdomain.rpartition('.')[2]}.{parts.domain}"
        return host

    return registered_domain


def url_key(url: str) -> str:
    """A URL as blocklists write it: no scheme, credentials, leading `www.`, port or fragment; the host lower-cased,
    path and query as they are: `https://www.Example.com:443/a/b?q#top` -> `example.com/a/b?q`."""
    rest = _SCHEME.sub("", url.strip(), count=1).partition("#")[0]
    cut = min((index for index in (rest.find("/"), rest.find("?")) if index >= 0), default=len(rest))
    host = _PORT.sub("", rest[:cut].rpartition("@")[2].lower()).rstrip(".")
    return _WWW.sub("", host) + rest[cut:]


class UrlLists:
    """The loaded lists, and the rules over them (see the module docstring), for one URL at a time."""

    def __init__(self, domains: Iterable[str] = (), urls: Iterable[str] = (), banned_words: Iterable[str] = (),
                 banned_subwords: Iterable[str] = (), soft_banned_words: Iterable[str] = (),
                 max_soft_banned_words: int = 1):
        import ahocorasick

        self._registered_domain = registered_domain_finder()
        self._domains = {as_domain(entry) for entry in domains} - {""}
        self._urls = {url_key(entry).rstrip("/") for entry in urls} - {""}
        self._url_hosts = {re.split(r"[/?]", key, maxsplit=1)[0] for key in self._urls}
        self._banned_words = {as_word(entry) for entry in banned_words} - {""}
        self._soft_banned_words = {as_word(entry) for entry in soft_banned_words} - {""}
        self._max_soft = max_soft_banned_words
        self._subwords = ahocorasick.Automaton()
        for word in {as_word(entry) for entry in banned_subwords} - {""}:
            self._subwords.add_word(word, word)
        if len(self._subwords):
            self._subwords.make_automaton()

    @classmethod
    def from_config(cls, config: UrlFilterConfig) -> "UrlLists":
        return cls(*(list_entries(getattr(config, setting)) for setting in LIST_SETTINGS), config.max_soft_banned_words)

    def judge(self, url: str) -> tuple[str | None, str | None, int]:
        """(drop reason or None, the entry that decided or None, distinct soft-banned words) of one non-empty URL."""
        parts = _NOT_ALNUM.split(url.lower())
        tokens = set(parts)
        soft = tokens & self._soft_banned_words
        host = hostname(url)
        if host and self._domains and (listed := self._listed_domain(host, self._registered_domain(host))):
            return "blocked_domain", listed, len(soft)
        if host and _WWW.sub("", host) in self._url_hosts and (listed := self._listed_url(url_key(url))):
            return "blocked_url", listed, len(soft)
        if banned := tokens & self._banned_words:
            return "banned_word", min(banned), len(soft)
        if len(soft) > self._max_soft:
            return "soft_banned_words", " ".join(sorted(soft)), len(soft)
        if len(self._subwords) and (found := next(self._subwords.iter("".join(parts)), None)):
            return "banned_subword", found[1], len(soft)
        return None, None, len(soft)

    def _listed_domain(self, host: str, domain: str) -> str | None:
        """The host or its nearest parent, down to its registered domain, that the domain lists hold."""
        candidate = host
        while candidate:
            if candidate in self._domains:
                return candidate
            if len(candidate) <= len(domain):
                return None
            candidate = candidate.partition(".")[2]
        return None

    def _listed_url(self, key: str) -> str | None:
        """The URL-list entry that is the key, or the longest one above it at a `/` or `?`."""
        if key in self._urls:
            return key
        for index in range(len(key) - 1, 0, -1):
            if key[index] in "/?" and key[:index] in self._urls:
                return key[:index]
        return None


class UrlFilter(Stage):
    name = "url_filter"
    Config = UrlFilterConfig
    output_fields = (pa.field(MATCH, pa.string()), pa.field(SOFT_COUNT, pa.int32()))
    decisions = (
        Decision(MATCH, "blocked_domain", None, "present"),
        Decision(MATCH, "blocked_url", None, "present"),
        Decision(MATCH, "banned_word", None, "present"),
        Decision(SOFT_COUNT, "soft_banned_words", "max_soft_banned_words", "above"),
        Decision(MATCH, "banned_subword", None, "present"),
    )
    file_settings = LIST_SETTINGS

    @classmethod
    def prepare(cls, config: UrlFilterConfig, workspace: Path) -> UrlFilterConfig:
        if not any(getattr(config, setting) for setting in LIST_SETTINGS):
            raise StageSetupError(LIST_SETTINGS[0], f"no list given: name a file in one of {', '.join(LIST_SETTINGS)}")
        for setting in LIST_SETTINGS:
            for path in getattr(config, setting):
                if not Path(path).is_file():
                    raise StageSetupError(setting, f"{path} does not exist")
                try:  # read to the end here, so that a damaged file stops the run before any worker reads it
                    entries = sum(1 for _ in list_entries([path]))
                except (OSError, EOFError) as exc:  # a damaged or mislabelled gzip file
                    raise StageSetupError(setting, f"{path} cannot be read: {exc}") from None
                if not entries:
                    raise StageSetupError(setting, f"{path} holds no entries")
        return config

    def __init__(self, config: UrlFilterConfig):
        super().__init__(config)
        self._lists = UrlLists.from_config(config)

    def process(self, docs: pa.Table) -> pa.Table:
        rows = docs.num_rows
        drops: list[str | None] = [None] * rows
        matches: list[str | None] = [None] * rows
        soft_counts: list[int | None] = [None] * rows
        for row, url in enumerate(docs.column(URL).to_pylist()):
            if url:
                drops[row], matches[row], soft_counts[row] = self._lists.judge(url)
        docs = set_columns(docs, {MATCH: matches, SOFT_COUNT: soft_counts},
                           {MATCH: pa.string(), SOFT_COUNT: pa.int32()})
        none = [None] * rows
        return with_outcome(docs, drops, none, none)
