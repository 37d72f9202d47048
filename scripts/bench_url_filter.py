"""Benchmark: URLs/s of the url_filter stage on one core, on realistic URLs against lists of a realistic size.

URLs: those of every response record in the WARC files of ../shared/data/warc (real hosts and paths), multiplied to
`--urls` with varied paths: each copy keeps a real URL's scheme and host (sometimes under another subdomain) and gets
a path of real path segments from the other URLs, a slug of words from them, sometimes a query. Two sets, each timed:
the real hosts, whose registered domain the stage finds in the cache after their first URL (in a run, the reader has
just looked up every row's host: lineage's `domain` column), and a new host for every URL (a random label before a
real host, new in every pass), so that every URL pays tldextract's look-up. Lists, generated
here (the project ships none): `--domains` random domains on common suffixes (`.com`, `.de`, `.co.uk`...) plus the
registered domains of 2% of the real hosts, so that some URLs are blocked; a tenth as many listed URLs; and the real
word lists datatrove's URL filter uses (../shared/data/toxicity/nsfw_wordlists: banned words, subwords and soft
words, some hundred). The stage is built as a worker builds it (set-up timed apart), then timed over all URLs in
batches of 256 rows (the runner's `batch_rows`) in this one process; each pass is reported, with the spread.

    python scripts/bench_url_filter.py [--urls N] [--domains N] [--repeat K]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import string
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
from warcio.archiveiterator import ArchiveIterator

from stages.url_filter import UrlFilter

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT.parent / "shared" / "data"
WORDS = DATA / "toxicity" / "nsfw_wordlists"
BATCH = 256
SUFFIXES = ("com", "com", "com", "net", "org", "de", "ru", "info", "xyz", "top", "co.uk", "com.br", "fr", "nl", "pl")
SUBDOMAINS = ("www", "m", "blog", "shop", "news", "en", "de")


def real_urls() -> list[str]:
    """The target URLs of the response records of every readable WARC file in the shared data."""
    urls = []
    for path in sorted((DATA / "warc").rglob("*.warc*")):
        try:
            with open(path, "rb") as stream:
                urls += [record.rec_headers.get_header("WARC-Target-URI") for record in ArchiveIterator(stream)
                         if record.rec_type == "response"]
        except Exception:  # the robustness set's damaged files: what was read before the damage counts
            continue
    return sorted({url for url in urls if url and urlsplit(url).hostname})


def multiplied(urls: list[str], count: int, rng: random.Random, new_hosts: bool = False) -> list[str]:
    """`count` URLs on the real hosts (`new_hosts`: each under a new random label) with varied paths built from the
    real URLs' own segments and words."""
    segments = [segment for url in urls for segment in urlsplit(url).path.split("/") if segment]
    words = [word for segment in segments for word in segment.replace("_", "-").split("-") if word.isalpha()]
    made = []
    for _ in range(count):
        parts = urlsplit(rng.choice(urls))
        host = parts.hostname
        if new_hosts:
            host = f"{''.join(rng.choices(string.ascii_lowercase, k=8))}.{host.removeprefix('www.')}"
        elif rng.random() < 0.2:
            host = f"{rng.choice(SUBDOMAINS)}.{host.removeprefix('www.')}"
        path = "/".join(rng.sample(segments, rng.randint(0, 3)) + ["-".join(rng.sample(words, rng.randint(1, 6)))])
        query = f"?id={rng.randrange(100_000)}&page={rng.randrange(20)}" if rng.random() < 0.25 else ""
        made.append(f"{parts.scheme}://{host}/{path}{query}")
    return made


def random_domain(rng: random.Random) -> str:
    label = "".join(rng.choices(string.ascii_lowercase + string.digits + "-", k=rng.randint(4, 18))).strip("-")
    return f"{label or 'x'}.{rng.choice(SUFFIXES)}"


def write_lists(directory: Path, urls: list[str], domains: int, rng: random.Random) -> dict[str, list[str]]:
    """The generated domain and URL lists as files, and the settings that name them with the real word lists."""
    from pipeline.io.lineage import host_and_domain

    real_domains = sorted({host_and_domain(url)[1] for url in urls})
    blocked = [random_domain(rng) for _ in range(domains)] + rng.sample(real_domains, max(1, len(real_domains) // 50))
    listed_urls = [f"{random_domain(rng)}/{rng.choice(('', 'videos/', 'gallery/'))}{rng.randrange(10**6)}.html"
                   for _ in range(domains // 10)]
    (directory / "domains").write_text("\n".join(blocked) + "\n")
    (directory / "urls").write_text("\n".join(listed_urls) + "\n")
    return {"domain_lists": [str(directory / "domains")], "url_lists": [str(directory / "urls")],
            "banned_word_lists": [str(WORDS / "banned_words.txt")],
            "banned_subword_lists": [str(WORDS / "banned_subwords.txt")],
            "soft_banned_word_lists": [str(WORDS / "soft_banned_words.txt")]}


def resident_mib() -> float:
    """This process's resident memory now (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def as_batches(urls: list[str]) -> list[pa.Table]:
    return [pa.table({"url": pa.array(urls[start:start + BATCH], pa.string())}) for start in range(0, len(urls), BATCH)]


def timed_pass(stage: UrlFilter, batches: list[pa.Table]) -> tuple[float, Counter]:
    """CPU seconds of one pass (this process, one core) and its decisions."""
    started = time.process_time()
    outcomes = [stage(batch) for batch in batches]
    seconds = time.process_time() - started
    return seconds, Counter(reason for outcome in outcomes for reason in outcome.column("drop_reason").to_pylist())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--urls", type=int, default=500_000, help="URLs to filter in each set (default 500,000)")
    parser.add_argument("--domains", type=int, default=100_000, help="generated blocked domains (default 100,000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes of each set (default 3)")
    args = parser.parse_args(argv)
    rng = random.Random(0)
    real = real_urls()
    crawl_hosts = as_batches(multiplied(real, args.urls, rng))
    with tempfile.TemporaryDirectory(prefix="bench-url-filter-") as tmp:
        settings = write_lists(Path(tmp), real, args.domains, rng)
        resident_before = resident_mib()
        started = time.perf_counter()
        config = UrlFilter.prepare(UrlFilter.Config.model_validate(settings), Path(tmp))
        stage = UrlFilter(config)
        set_up = time.perf_counter() - started
        held_mib = resident_mib() - resident_before
    print(f"{args.urls:,} URLs a set, from {len(real):,} real ones; lists: {args.domains:,} generated domains and "
          f"{args.domains // 10:,} URLs, datatrove's word lists; set-up {set_up:.2f} s (driver check + worker "
          f"build); the stage holds {held_mib:,.0f} MiB")
    for name, make in (("real hosts", lambda: crawl_hosts),
                       ("a new host for every URL", lambda: as_batches(multiplied(real, args.urls, rng, True)))):
        rates = []
        for attempt in range(args.repeat):
            seconds, reasons = timed_pass(stage, make())
            rates.append(args.urls / seconds)
            print(f"{name}, pass {attempt + 1}: {rates[-1]:,.0f} URLs/s ({seconds:.2f} CPU s); "
                  + ", ".join(f"{reason or 'kept'} {count:,}" for reason, count in reasons.most_common()))
        print(f"{name}: URLs/s on one core, median {statistics.median(rates):,.0f}, "
              f"spread {min(rates):,.0f}-{max(rates):,.0f}")


if __name__ == "__main__":
    main()
