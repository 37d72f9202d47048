"""What the heuristic quality rules share: words, sentences, duplicates, and turning signal columns into decisions.

The four rule sets (Gopher quality, Gopher repetition, C4, FineWeb) each measure a document into signal columns, then
compare the signals with thresholds from config. `RuleStage` does the second half for all of them, from the columns
alone, so that a notebook can re-threshold saved signals the same way (see `Rule`).

Words. The published rules count words as a tokenizer sees them, punctuation included: datatrove, FineWeb's reference
implementation, uses spaCy's blank English tokenizer for every language. `split_words` follows the same conventions
without spaCy, many times faster, and splits nearly all whitespace-separated chunks of real extracted web pages as
spaCy does (README, Performance): punctuation, quotes, brackets, currency signs and emoji come off a chunk's edges
one by one; a final "." comes off after a lower-case letter, a digit or punctuation, so that "U.S." and "A." stay
whole; a few marks split a chunk from inside ("well-known" -> "well", "-", "known"; "end.Start"; "a,b"; "km/h";
"1-2"; "a...b"; emoji); English contractions split ("do", "n't"; "John", "'s"); common abbreviations ("Mr.", "e.g.") and URLs stay whole. Web
text repeats its chunks, so each distinct chunk is split once per process (up to `_CACHE_LIMIT` of them).

Sentences (C4's minimum) end where spaCy's rule-based sentencizer ends them: at a token that is a sentence terminal
(".", "!", "?", "。", "।", ...), once a word token follows it.

Tables. trafilatura 2.x writes a table row as one line, "| cell | cell |", and a page laid out with tables puts its
whole article in a cell: a line that ends with "|" fails C4's and FineWeb's punctuation rules, and "|" tokens and
empty cells weigh on Gopher's ratios. With `tables: cells` (the default) the rules measure each cell as a line of its
own (`table_cells_as_lines`); the text a stage keeps is the text as extracted, except that C4, which keeps the
lines that pass, keeps the cells that pass as plain lines.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from itertools import groupby
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from pipeline.schema import TEXT
from stages.base import Decision, Stage, StageConfig, set_columns, with_outcome
from stages.presets import PresetName, with_preset

# Unicode's Sentence_Terminal property (PropList.txt, Unicode 16): the characters that end a sentence in some script.
SENTENCE_TERMINALS = frozenset(
    "!.?\u0589\u061d\u061e\u061f\u06d4\u0700\u0701\u0702\u07f9\u0837\u0839\u083d\u083e\u0964\u0965\u104a\u104b"
    "\u1362\u1367\u1368\u166e\u1735\u1736\u17d4\u17d5\u1803\u1809\u1944\u1945\u1aa8\u1aa9\u1aaa\u1aab\u1b4e\u1b4f"
    "\u1b5a\u1b5b\u1b5e\u1b5f\u1b7d\u1b7e\u1b7f\u1c3b\u1c3c\u1c7e\u1c7f\u2024\u203c\u203d\u2047\u2048\u2049\u2cf9"
    "\u2cfa\u2cfb\u2e2e\u2e3c\u2e53\u2e54\u2e60\u2e61\u3002\ua4ff\ua60e\ua60f\ua6f3\ua6f7\ua876\ua877\ua8ce\ua8cf"
    "\ua92f\ua9c8\ua9c9\uaa5d\uaa5e\uaa5f\uaaf0\uaaf1\uabeb\ufe12\ufe15\ufe16\ufe52\ufe56\ufe57\uff01\uff0e\uff1f"
    "\uff61\U00010a56\U00010a57\U00010f55\U00010f56\U00010f57\U00010f58\U00010f59\U00010f86\U00010f87\U00010f88"
    "\U00010f89\U00011047\U00011048\U000110be\U000110bf\U000110c0\U000110c1\U00011141\U00011142\U00011143"
    "\U000111c5\U000111c6\U000111cd\U000111de\U000111df\U00011238\U00011239\U0001123b\U0001123c\U000112a9"
    "\U000113d4\U000113d5\U0001144b\U0001144c\U000115c2\U000115c3\U000115c9\U000115ca\U000115cb\U000115cc"
    "\U000115cd\U000115ce\U000115cf\U000115d0\U000115d1\U000115d2\U000115d3\U000115d4\U000115d5\U000115d6"
    "\U000115d7\U00011641\U00011642\U0001173c\U0001173d\U0001173e\U00011944\U00011946\U00011a42\U00011a43"
    "\U00011a9b\U00011a9c\U00011c41\U00011c42\U00011ef7\U00011ef8\U00011f43\U00011f44\U00016a6e\U00016a6f"
    "\U00016af5\U00016b37\U00016b38\U00016b44\U00016d6e\U00016d6f\U00016e98\U0001bc9f\U0001da88"
)

# Characters split off either edge of a chunk, one at a time: punctuation, quotes and brackets, long dashes.
_EDGE = frozenset(
    ",:;!?¿¡()[]{}<>_#*&…·。？！，、；：～।،۔؛٪؟" "'\"”“`‘´’‚„»«「」『』（）〔〕【】《》〈〉〈〉⟦⟧" "—–"
)
_CURRENCY = frozenset("$£€¥฿₽﷼₴₠₡₢₣₤₥₦₧₨₩₪₫₭₮₯₰₱₲₳₵₶₷₸₹₺₻₼₾₿")
_PREFIXES = _EDGE | _CURRENCY | frozenset("§%=")
_DIGITS = frozenset("0123456789")
_QUOTES = frozenset("'\"”“`‘´’‚„»«")
_HYPHENS = frozenset(("-", "--", "---", "–", "—", "——", "~"))
# Split off the end of a number: "10km" -> "10", "km".
_UNIT_SUFFIX = re.compile(
    r"(?<=[0-9])(?:km/h|mbar|km²|km³|m/s|kmh|mph|hPa|cm²|cm³|mm²|mm³|km|m²|m³|cm|mm|dm|ha|µm|nm|yd|in|ft|kg|mg|µg|lb|oz"
    r"|Pa|mb|MB|kb|KB|gb|GB|tb|TB|m|g|t|T|G|M|K|%)\Z"
)
# Kept as one token: abbreviations, single letters with a period, emoticons.
_KEEP_WHOLE = frozenset(
    "Mr. Mrs. Ms. Dr. Prof. Rev. Sen. Rep. Gov. Gen. Adm. Capt. Col. Lt. Sgt. Jr. Sr. St. Mt. Messrs. Ph.D. "
    "Inc. Ltd. Co. co. Corp. Bros. vs. v.s. e.g. E.g. E.G. i.e. I.e. I.E. a.m. p.m. D.C. "
    "Jan. Feb. Mar. Apr. Jun. Jul. Aug. Sep. Sept. Oct. Nov. Dec. "
    "Ala. Ariz. Ark. Calif. Colo. Conn. Del. Fla. Ga. Ill. Ind. Kan. Ky. La. Mass. Md. Mich. Minn. Miss. Mo. "
    "Mont. Neb. Nev. Okla. Ore. Pa. Tenn. Va. Wash. Wis. "
    "a. b. c. d. e. f. g. h. i. j. k. l. m. n. o. p. q. r. s. t. u. v. w. x. y. z. ä. ö. ü. "
    ":) :-) :( :-( ;) ;-) :D :-D :P :-P :p :/ :-/ :| :o :O =) =( (= <3 </3 (: ): 8) ^_^ -_- '' C++ and/or w/o".split()
)
_KEEP_WHOLE_LONGEST = max(map(len, _KEEP_WHOLE))
# Split although they hold no apostrophe (spaCy's English exceptions do the same; "im" is also German "in the").
_SPLIT_WHOLE = {
    word: parts
    for base, parts in {
        "im": ("i", "m"), "id": ("i", "d"), "ive": ("i", "ve"), "cannot": ("can", "not"), "dont": ("do", "nt"),
        "cant": ("ca", "nt"), "wont": ("wo", "nt"), "isnt": ("is", "nt"), "doesnt": ("does", "nt"),
        "didnt": ("did", "nt"), "wasnt": ("was", "nt"), "arent": ("are", "nt"), "couldnt": ("could", "nt"),
        "wouldnt": ("would", "nt"), "shouldnt": ("should", "nt"), "hasnt": ("has", "nt"), "havent": ("have", "nt"),
        "thats": ("that", "s"), "whats": ("what", "s"), "youre": ("you", "re"), "theyre": ("they", "re"),
        "gonna": ("gon", "na"), "gotta": ("got", "ta"),
    }.items()
    for word, parts in ((base, parts), (base.capitalize(), (parts[0].capitalize(), *parts[1:])))
}
_CONTRACTION = re.compile(r"([A-Za-z]+?)(n['’]t|['’](?:m|re|ve|ll|d|M|RE|VE|LL|D))|(1[0-2]|[1-9])([ap]m)")
_URL = re.compile(
    r"(?:[A-Za-z][A-Za-z0-9+.-]*://|www\.)\S+"  # scheme or www
    r"|(?:[\w-]+\.)+[a-z]{2,}(?::\d+)?(?:[/?#]\S*)?"  # host.tld[/path]
)
# The common shapes of chunks: a word or a number with punctuation around it: "(word),", "word.", "2020)."
_SIMPLE_CHUNK = re.compile(
    rf"([{re.escape(''.join(sorted(_PREFIXES)))}]*)([^\W\d_]+|[0-9]+)([{re.escape(''.join(sorted(_EDGE)))}]*)(\.?)"
)
_LONG_RUN = 16  # edge runs this long are peeled in one go (they cannot touch a kept-whole token)

_CACHE_LIMIT = 500_000  # distinct chunks (and tokens) remembered; forgotten all at once when full

SYMBOLS_ONLY, HAS_LETTER, _TERMINAL, _PUNCTUATION = 1, 2, 4, 8
# A token's part in sentence splitting: Terminal, other Punctuation, Word; a new sentence starts at each T[TP]*W.
_SENTENCE_MARK = ["T" if kind & _TERMINAL else "P" if kind & _PUNCTUATION else "W" for kind in range(16)]
_NEW_SENTENCE = re.compile("T[TP]*W")


def _is_icon(char: str) -> bool:
    return unicodedata.category(char) == "So"


def _lower(char: str) -> bool:
    """A lower-case letter, or a letter of a script without case (it counts as both, as in spaCy)."""
    return char.isalpha() and not char.isupper()


def _upper(char: str) -> bool:
    return char.isalpha() and not char.islower()


@cache
def _category_runs() -> tuple[tuple[int, int, str], ...]:
    """Unicode as runs of code points with the same general category: (first, last, category)."""
    categories = map(unicodedata.category, map(chr, range(sys.maxunicode + 1)))
    runs = []
    first = 0
    for category, members in groupby(categories):
        count = sum(1 for _ in members)
        runs.append((first, first + count - 1, category))
        first += count
    return tuple(runs)


def _category_class(predicate) -> str:
    """A regex group matching one character whose general category satisfies `predicate`. Written as a class of the
    Basic Multilingual Plane, which `re` checks in constant time, and a class of the rest behind a cheap guard."""
    planes: dict[bool, list[list[int]]] = {False: [], True: []}
    for first, last, category in _category_runs():
        if category == "Cs" or not predicate(category):
            continue
        for low, high in ((first, min(last, 0xFFFF)), (max(first, 0x10000), last)):
            if low <= high:
                spans = planes[low > 0xFFFF]
                if spans and spans[-1][1] == low - 1:
                    spans[-1][1] = high
                else:
                    spans.append([low, high])
    basic, astral = (
        "".join(re.escape(chr(a)) + (f"-{re.escape(chr(b))}" if b > a else "") for a, b in planes[plane])
        for plane in (False, True)
    )
    return f"(?:[{basic}]|(?=[\U00010000-\U0010FFFF])[{astral}])"


@cache
def _not_punctuation() -> re.Pattern:
    return re.compile(f"(?!{_category_class(lambda category: category.startswith('P'))})(?s:.)")


@cache
def _not_symbol() -> re.Pattern:
    return re.compile(f"(?!{_category_class(lambda category: category[0] in 'PSC')})(?s:.)")


@cache
def _infix_candidates() -> re.Pattern:
    """Marks that may split a chunk from inside, in a context that may allow it (`_is_infix` decides)."""
    letter, maybe_lower, maybe_upper = r"[^\W\d_]", r"[^\W\d_A-Z]", r"[^\W\d_a-z]"
    quote = r"['\"”“`‘´’‚„»«]"
    return re.compile(
        rf"\.{{2,}}|…"  # ellipses
        rf"|(?<=[0-9])[-+*^](?=[0-9-])"  # arithmetic
        rf"|(?<=[^\W_])(?:-{{1,3}}|–|—{{1,2}}|~)(?={letter})"  # hyphens before a letter
        rf"|(?:(?<={maybe_lower})|(?<={quote}))\.(?={maybe_upper}|{quote})"  # "end.Start"
        rf"|(?<={letter}),(?={letter})"  # "a,b"
        rf"|(?<=[^\W_])[:<>=/](?={letter})"  # "and/or", "a:b"
        rf"|{_category_class(lambda category: category == 'So')}"  # emoji and other symbols
    )


_chunk_tokens: dict[str, tuple[str, ...]] = {}
_token_kinds: dict[str, int] = {}


def split_words(text: str) -> list[str]:
    """The words of a text, punctuation tokens included, as spaCy's blank English tokenizer would split them."""
    words: list[str] = []
    extend = words.extend
    known = _chunk_tokens
    for chunk in text.split():
        tokens = known.get(chunk)
        if tokens is None:
            tokens = _split_chunk(chunk)
            if len(known) >= _CACHE_LIMIT:
                known.clear()
            known[chunk] = tokens
        extend(tokens)
    return words


def load_character_tables() -> None:
    """Build the Unicode character classes the tokenizer needs (a quarter of a second, once per process)."""
    _infix_candidates()
    _not_symbol()
    _not_punctuation()


def forget_words() -> None:
    """Empty the per-process memory of split chunks and token kinds (benchmarks use it to time a cold start)."""
    _chunk_tokens.clear()
    _token_kinds.clear()


def _split_chunk(chunk: str) -> tuple[str, ...]:
    """The tokens of a whitespace-free chunk: a fast path for plain words and the common "(word)," shapes, the
    general rounds for the rest."""
    if chunk.isalpha():
        return _SPLIT_WHOLE.get(chunk) or (chunk,)
    simple = _SIMPLE_CHUNK.fullmatch(chunk)
    if simple and len(chunk) <= 64:
        return _split_simple_chunk(*simple.groups())
    return _split_chunk_in_rounds(chunk)


def _split_chunk_in_rounds(chunk: str) -> tuple[str, ...]:
    """Peel prefixes and suffixes off a chunk, one of each per round, until none is left or the rest is a kept-whole
    token, then split the rest at its infixes. Works on positions in the chunk, never on copies, so that a 5 MB chunk
    costs linear time."""
    head: list[str] = []
    tail: list[str] = []
    start, end = _peel_long_runs(chunk, head, tail)
    while start < end and not _kept_whole(chunk, start, end):
        core_start = _prefix_end(chunk, start, end)
        core_end = _suffix_start(chunk, core_start, end)
        if core_start > start and _kept_whole(chunk, core_start, end):
            head.append(chunk[start:core_start])
            start = core_start
            break
        if core_end < end and _kept_whole(chunk, start, core_end):
            tail.append(chunk[core_end:end])
            end = core_end
            break
        if core_start == start and core_end == end:
            break
        if core_start > start:
            head.append(chunk[start:core_start])
        if core_end < end:
            tail.append(chunk[core_end:end])
        start, end = core_start, core_end
    return _merge_kept_pairs([*head, *_split_core(chunk[start:end]), *reversed(tail)])


def _split_simple_chunk(prefixes: str, core: str, suffixes: str, period: str) -> tuple[str, ...]:
    """A word or a number between single-character prefixes and suffixes, maybe with a final period: what the
    general rounds would do, in one step."""
    if not (core.isalpha() or core.isdecimal()):
        return _split_chunk_in_rounds(prefixes + core + suffixes + period)
    splits_off = _lower(core[-1]) or core[-1] in _DIGITS or len(core) > 1 and _upper(core[-1]) and _upper(core[-2])
    if period and not suffixes and (core + period in _KEEP_WHOLE or not splits_off):
        core, period = core + period, ""
    return _merge_kept_pairs([*prefixes, *(_SPLIT_WHOLE.get(core) or (core,)), *suffixes, *period])


def _peel_long_runs(chunk: str, head: list[str], tail: list[str]) -> tuple[int, int]:
    """Split long runs of single-character prefixes / suffixes ("((((((") off in one go; returns what is left."""
    start, end = 0, len(chunk)
    while start < end and chunk[start] in _PREFIXES:
        start += 1
    if start < _LONG_RUN:
        start = 0
    while end > start and (chunk[end - 1] in _EDGE):
        end -= 1
    if len(chunk) - end < _LONG_RUN:
        end = len(chunk)
    head.extend(chunk[:start])
    tail.extend(reversed(chunk[end:]))
    return start, end


def _kept_whole(chunk: str, start: int, end: int) -> bool:
    return end - start <= _KEEP_WHOLE_LONGEST and chunk[start:end] in _KEEP_WHOLE


def _prefix_end(chunk: str, start: int, end: int) -> int:
    """Where the prefix of chunk[start:end] ends (start when it has none)."""
    char = chunk[start]
    if char == ".":
        dots = start
        while dots < end and chunk[dots] == ".":
            dots += 1
        return dots if dots - start >= 2 else start
    if char in _PREFIXES or _is_icon(char):
        return start + 1
    if char == "+":
        return start + 1 if start + 1 == end or chunk[start + 1] not in _DIGITS else start
    for currency in ("US$", "C$", "A$"):
        if chunk.startswith(currency, start, end):
            return start + len(currency)
    return start


def _suffix_start(chunk: str, start: int, end: int) -> int:
    """Where the suffix of chunk[start:end] begins (end when it has none)."""
    if start >= end:
        return end
    char = chunk[end - 1]
    before = chunk[end - 2] if end - 2 >= start else ""
    if char == ".":
        if before == ".":
            dots = end - 2
            while dots > start and chunk[dots - 1] == ".":
                dots -= 1
            return dots
        if before and (before in _DIGITS or before in _EDGE or before in "%²-+" or _lower(before)):
            return end - 1
        earlier = chunk[end - 3] if end - 3 >= start else ""
        if earlier and (_upper(before) and _upper(earlier) or earlier == "°" and before in "FfCcKk"):
            return end - 1
        return end
    if char in "sS" and before in ("'", "’"):
        return end - 2
    if char in _EDGE or _is_icon(char):
        return end - 1
    if before in _DIGITS and (char == "+" or char in _CURRENCY):
        return end - 1
    unit = _UNIT_SUFFIX.search(chunk, max(start, end - 5), end)
    return unit.start() if unit else end


def _split_core(core: str) -> tuple[str, ...]:
    if not core:
        return ()
    if core in _SPLIT_WHOLE:
        return _SPLIT_WHOLE[core]
    if core.isalnum() and not core[0].isdigit() or core in _KEEP_WHOLE or _URL.fullmatch(core):
        return (core,)
    contraction = _CONTRACTION.fullmatch(core)
    if contraction:
        return tuple(part for part in contraction.groups() if part)
    tokens: list[str] = []
    start = 0
    for candidate in _infix_candidates().finditer(core):
        at, after = candidate.span()
        if at == 0 or not _is_infix(candidate.group(), core[at - 1], core[after] if after < len(core) else ""):
            continue
        if at > start:
            tokens.append(core[start:at])
        tokens.append(candidate.group())
        start = after
    if start < len(core):
        tokens.append(core[start:])
    return tuple(tokens)


def _is_infix(infix: str, before: str, after: str) -> bool:
    """Whether a punctuation mark inside a chunk splits it, given its neighbours."""
    if infix == "…" or infix.startswith("..") or _is_icon(infix[0]):
        return True
    if not after:
        return False
    if infix in ("-", "+", "*", "^") and before in _DIGITS and (after in _DIGITS or after == "-"):
        return True
    if infix in _HYPHENS:
        return (before.isalpha() or before in _DIGITS) and after.isalpha()
    if infix == ".":
        return (_lower(before) or before in _QUOTES) and (_upper(after) or after in _QUOTES)
    if infix == ",":
        return before.isalpha() and after.isalpha()
    if infix in (":", "<", ">", "=", "/"):
        return (before.isalpha() or before in _DIGITS) and after.isalpha()
    return False


def _merge_kept_pairs(tokens: list[str]) -> tuple[str, ...]:
    """Join neighbours that together form a kept-whole token: "z", ".", "B." -> "z.", "B.". (Not worth it on long
    runs of punctuation.)"""
    if len(tokens) < 2 or len(tokens) > _LONG_RUN:
        return tuple(tokens)
    merged: list[str] = []
    for token in tokens:
        if merged and len(merged[-1]) + len(token) <= _KEEP_WHOLE_LONGEST and merged[-1] + token in _KEEP_WHOLE:
            merged[-1] += token
        else:
            merged.append(token)
    return tuple(merged)


def token_kind(token: str) -> int:
    """Bit flags of a token: SYMBOLS_ONLY (only punctuation, symbols or control characters: "...", "#", "->", "$"),
    HAS_LETTER, and for sentence splitting, whether it is a sentence terminal and whether it is all punctuation."""
    kind = _token_kinds.get(token)
    if kind is None:
        kind = (
            (0 if _not_symbol().search(token) else SYMBOLS_ONLY)
            | (HAS_LETTER if token.isalpha() or any(char.isalpha() for char in token) else 0)
            | (_TERMINAL if token in SENTENCE_TERMINALS else 0)
            | (0 if _not_punctuation().search(token) else _PUNCTUATION)
        )
        if len(_token_kinds) >= _CACHE_LIMIT:
            _token_kinds.clear()
        _token_kinds[token] = kind
    return kind


def count_sentences(text: str) -> int:
    """Sentences in a text: one if it has any token, plus one each time a word follows a terminal token ("." "!"
    "?" ...; punctuation tokens in between, such as closing quotes, do not count as words)."""
    words = split_words(text)
    if not words:
        return 0
    known = _token_kinds.get
    marks = "".join([_SENTENCE_MARK[kind if (kind := known(word)) is not None else token_kind(word)] for word in words])
    return 1 + len(_NEW_SENTENCE.findall(marks))


def duplicates(items: Iterable[str]) -> tuple[int, int]:
    """How many items repeat an earlier one, and how many characters those repeats hold."""
    seen: set[str] = set()
    repeats = repeated_chars = 0
    for item in items:
        if item in seen:
            repeats += 1
            repeated_chars += len(item)
        else:
            seen.add(item)
    return repeats, repeated_chars


def ratio(part: float, whole: float) -> float:
    """part / whole, and 0 for an empty whole (an empty document has no duplicated lines, no bullets...)."""
    return part / whole if whole else 0.0


# A cell border: a "|" that trafilatura did not escape as "\|" (a "|" inside a cell's text).
_CELL_BORDER = re.compile(r"(?<!\\)\|")
_SEPARATOR_ROW = re.compile(r"\|(?:[ \t]*:?-+:?[ \t]*\|)+")
_ROW_END = re.compile(r"\|\s*$", re.MULTILINE)  # a line that ends with a bar: the text may hold table rows


def table_cells_as_lines(text: str) -> str:
    """The text with each table row (a line that starts and ends with a border "|", as trafilatura 2.x writes rows)
    replaced by its non-empty cells, one line each, with "\\|" back to "|". Header separators ("|---|---|") and rows
    of empty cells leave no line; every other line stays as it is."""
    if not _ROW_END.search(text):
        return text
    lines: list[str] = []
    for line in text.split("\n"):
        row = line.strip()
        if len(row) < 2 or row[0] != "|" or row[-1] != "|" or row[-2] == "\\":
            lines.append(line)
        elif not _SEPARATOR_ROW.fullmatch(row):
            cells = (cell.strip() for cell in _CELL_BORDER.split(row[1:-1]))
            lines.extend(cell.replace("\\|", "|") for cell in cells if cell)
    return "\n".join(lines)


@dataclass(frozen=True)
class Rule:
    """One decision on one signal column: drop a document when its signal is `below` or `above` the limit held by
    config field `setting` (None there switches the rule off), or, for `present`, when the signal is true and the
    boolean `setting` is on. The drop reason is the signal's name unless `reason` says otherwise. A rule with no
    setting is always on, with limit `fixed_limit`."""

    signal: str
    setting: str | None
    drop_when: Literal["below", "above", "present"]
    reason: str | None = None
    fixed_limit: float = 0.0


class Measured(NamedTuple):
    """What a rule stage measures in one document: its signals (in `output_fields` order) and, for a stage that
    removes lines (C4), the text that remains."""

    signals: tuple
    text: str | None = None


class RuleConfig(StageConfig):
    """What every rule stage's settings have: a named preset (stages/presets.py) and how table rows are measured.
    Subclasses name their stage in `stage_name`, whose rows of the preset tables apply."""

    stage_name: ClassVar[str]

    preset: PresetName | None = Field(None, description="Every threshold as a published recipe sets it: gopher (Rae "
                                      "et al. 2021), fineweb (datatrove's FineWeb pipeline), c4 (the code that built "
                                      "C4), dclm (DCLM-baseline's Gopher rules); settings given beside it override "
                                      "it. A recipe without rules for this stage is an error. Values and sources: "
                                      "stages/presets.py; none: the defaults below.")
    tables: Literal["cells", "as_written"] = Field("cells", description="cells: a table row as trafilatura writes it "
                                                   "(one line, its cells between bars) is measured as its cells, one "
                                                   "line each, so that an article laid out in a table is judged as "
                                                   "prose; the kept text keeps the table (c4 keeps the cells that "
                                                   "pass, as lines). as_written: rows are measured as written, as "
                                                   "datatrove does.")

    @model_validator(mode="before")
    @classmethod
    def _preset_values(cls, data: Any) -> Any:
        return with_preset(cls.stage_name, data)


class RuleStage(Stage):
    """Base of the heuristic rule stages: measure every document into signal columns, then decide from the columns.

    Subclasses set `name`, `Config` (a `RuleConfig`), `output_fields` (the signal columns, named
    `<stage>_<signal>`), `rules` (in the order their drop reasons take precedence) and implement `measure`, which
    sees the text as the rules read it (`tables`).
    """

    rules: ClassVar[tuple[Rule, ...]]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "rules" in cls.__dict__:  # each numeric rule is a decision on its `<stage>_<signal>` column
            cls.decisions = tuple(Decision(f"{cls.name}_{rule.signal}", rule.reason or rule.signal, rule.setting,
                                           rule.drop_when, rule.fixed_limit if rule.setting is None else None)
                                  for rule in cls.rules if rule.drop_when != "present")

    def __init__(self, config: StageConfig):
        super().__init__(config)
        load_character_tables()  # when the worker builds the stage, not in its first batch

    def measure(self, text: str) -> Measured:
        raise NotImplementedError

    def process(self, docs: pa.Table) -> pa.Table:
        texts = docs.column(TEXT).to_pylist()
        width = len(self.output_fields)
        signal_rows: list[tuple] = []
        edited = list(texts)
        errors: list[str | None] = [None] * len(texts)
        details: list[str | None] = [None] * len(texts)
        cells = self.config.tables == "cells"
        for row, text in enumerate(texts):
            try:
                measured = self.measure(table_cells_as_lines(text or "") if cells else text or "")
            except Exception as exc:  # a bug must cost one document, not the unit: it is counted as an error
                errors[row], details[row] = f"{self.name}_{type(exc).__name__}", str(exc)[:500]
                signal_rows.append((None,) * width)
                continue
            signal_rows.append(measured.signals)
            if measured.text is not None:
                edited[row] = measured.text
        columns = {field.name: list(values) for field, values in zip(self.output_fields, zip(*signal_rows))}
        columns = columns or {field.name: [] for field in self.output_fields}
        reasons = decide(self.rules, self.name, columns, self.config)
        for row, error in enumerate(errors):
            if error is not None:
                reasons[row] = None
        if edited != texts:
            columns[TEXT] = [new if reason is None else old for new, old, reason in zip(edited, texts, reasons)]
        types = {field.name: field.type for field in self.output_fields} | {TEXT: pa.string()}
        return with_outcome(set_columns(docs, columns, types), reasons, errors, details)


def decide(rules: Iterable[Rule], stage: str, columns: dict[str, list], config: StageConfig) -> list[str | None]:
    """Each row's drop reason: the first rule (in order) that its signals fail, or None when it passes them all.
    Works on the saved signal columns alone, so re-thresholding in a notebook gives what a re-run would, e.g.
    `decide(GopherQuality.rules, "gopher_quality", documents.to_pydict(), GopherQualityConfig(min_words=100))`."""
    rows = len(next(iter(columns.values()), []))
    reasons = np.full(rows, None, dtype=object)
    for rule in rules:
        limit = rule.fixed_limit if rule.setting is None else getattr(config, rule.setting)
        if limit is None or limit is False:
            continue
        values = np.array([np.nan if value is None else value for value in columns[f"{stage}_{rule.signal}"]], float)
        if rule.drop_when == "below":
            failed = values < limit
        elif rule.drop_when == "above":
            failed = values > limit
        else:
            failed = values > 0
        reasons[failed & (reasons == None)] = rule.reason or rule.signal  # noqa: E711 (element-wise)
    return reasons.tolist()
