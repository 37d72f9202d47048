"""Benchmark: MinHash signatures/s of our vectorised numpy code (stages/dedup/minhash.py) against datasketch's
MinHash, on the same documents, in the same run. The issue's target: ours at least 10x faster.

Documents: `--documents` (default 20,000) windows of 300 to 1,500 whitespace-separated words (uniform), cut at random
offsets from the real public-domain texts in ../shared/data/text, read in place: Project Gutenberg books (English,
French, German, Italian), NLTK's inaugural and State of the Union addresses and its web text (forum posts, chat,
reviews), and tinyshakespeare. The windows keep the raw text (case, punctuation, line breaks). The corpus holds about
1.4M words, so windows overlap; that does not matter for timing signatures.

Both sides start from the same raw texts and end with one signature of bands x rows = 112 values per document:
- ours: `signatures(batch, settings)` over batches of `--batch` texts (normalisation, shingles, permutations);
- datasketch: our normalisation (`normalize_texts`, per batch), then per document: the shingle list built in Python
  (5 words joined by spaces, UTF-8 encoded), `MinHash(num_perm=112, seed=1, scheme="affine64", permutations=...)`
  with the permutations drawn once and shared, and `update_batch(shingles)` with datasketch's default hash for
  affine64 (sha1_hash64), one document at a time.
The two sides take turns batch by batch, so that a busier stretch of a shared machine falls on both alike. One
process, one thread: OpenMP/BLAS thread counts are pinned to 1 before numpy loads (numpy's element-wise loops are
single-threaded anyway); the script prints the process's OS thread count (2: the second is pyarrow's, started when
stages.base imports it, and idle) and each side's CPU time over wall time (1.0 = one busy core; more would mean a
second core helped).

    python scripts/bench_minhash.py [--documents N] [--batch B] [--json PATH]
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse
import json
import random
import re
import sys
import time
import zipfile
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from stages.dedup.minhash import MinHashSettings, normalize_texts, signatures

REPO_ROOT = Path(__file__).resolve().parents[1]
TEXT_DATA = REPO_ROOT.parent / "shared" / "data" / "text"


def corpus_texts(root: Path = TEXT_DATA) -> list[str]:
    """The real texts under ../shared/data/text, one string per file: books, speeches, web text, Shakespeare
    (the NLTK stop-word lists and READMEs left out). Files that are not UTF-8 are read as cp1252."""
    texts = []
    for archive_path in sorted(root.glob("*/*.zip")):
        if archive_path.stem == "stopwords":
            continue
        with zipfile.ZipFile(archive_path) as archive:
            for name in archive.namelist():
                if not name.endswith("/") and not name.endswith("README"):
                    texts.append(_decoded(archive.read(name)))
    texts.append((root / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8"))
    return texts


def _decoded(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def load_documents(count: int, min_words: int = 300, max_words: int = 1500, seed: int = 0) -> list[str]:
    """`count` raw windows of min_words..max_words words (uniform), each from one text at a random offset, texts
    chosen in proportion to their word counts."""
    texts = corpus_texts()
    word_spans = [[match.span() for match in re.finditer(r"\S+", text)] for text in texts]
    rng = random.Random(seed)
    documents = []
    chosen = rng.choices(range(len(texts)), [len(spans) for spans in word_spans], k=count)
    for index in chosen:
        spans = word_spans[index]
        words = min(rng.randint(min_words, max_words), len(spans))
        first = rng.randrange(len(spans) - words + 1)
        documents.append(texts[index][spans[first][0]:spans[first + words - 1][1]])
    return documents


class Timing(NamedTuple):
    documents: int
    wall_s: float
    cpu_s: float

    @property
    def docs_per_s(self) -> float:
        return self.documents / self.wall_s

    def __add__(self, other: Timing) -> Timing:
        return Timing(*(mine + theirs for mine, theirs in zip(self, other)))


Signer = Callable[[list[str]], np.ndarray]


def our_signer(settings: MinHashSettings) -> Signer:
    """Raw texts -> signatures, with stages.dedup.minhash.signatures (the whole batch at once)."""
    return lambda texts: signatures(texts, settings)


def datasketch_signer(settings: MinHashSettings) -> Signer:
    """Raw texts -> signatures as a datasketch user would compute them: our normalisation of the batch, then per
    document the shingle list in Python and MinHash.update_batch, the permutations drawn once and shared."""
    from datasketch import MinHash

    num_perm, ngram = settings.num_perm, settings.ngram
    shared = MinHash(num_perm=num_perm, seed=settings.seed, scheme="affine64").permutations

    def sign(texts: list[str]) -> np.ndarray:
        hashvalues = []
        for text in normalize_texts(texts, settings.normalization):
            words = text.split(" ") if text else []
            shingles = [" ".join(words[i:i + ngram]).encode() for i in range(len(words) - ngram + 1)]
            if words and not shingles:
                shingles = [text.encode()]
            minhash = MinHash(num_perm=num_perm, seed=settings.seed, scheme="affine64", permutations=shared)
            minhash.update_batch(shingles)
            hashvalues.append(minhash.hashvalues)
        return np.stack(hashvalues)

    return sign


def time_signers(texts: list[str], signers: dict[str, Signer], batch: int) -> dict[str, Timing]:
    """Wall and CPU time of each signer over `texts`, in batches of `batch`. The signers take turns batch by batch,
    so that a slower or busier stretch of the machine's time falls on all of them alike."""
    timings = {name: Timing(0, 0.0, 0.0) for name in signers}
    for start in range(0, len(texts), batch):
        texts_batch = texts[start:start + batch]
        for name, sign in signers.items():
            wall, cpu = time.perf_counter(), time.process_time()
            signed = sign(texts_batch)
            timings[name] += Timing(len(texts_batch), time.perf_counter() - wall, time.process_time() - cpu)
            assert signed.shape == (len(texts_batch), signed.shape[1])
    return timings


def os_threads() -> int | None:
    """Threads of this process as the OS counts them (Linux), to show that no library runs a thread pool."""
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    return int(next(line for line in status.read_text().splitlines() if line.startswith("Threads:")).split()[1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=20_000, help="documents to sign (default 20,000)")
    parser.add_argument("--batch", type=int, default=1024, help="texts per signatures() call (default 1,024)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    settings = MinHashSettings()
    texts = load_documents(args.documents)
    words = sum(len(text.split()) for text in texts)
    print(f"{len(texts):,} documents, {words / len(texts):,.0f} words and {sum(map(len, texts)) / len(texts):,.0f} "
          f"characters on average; {settings.bands} bands x {settings.rows} rows, {settings.ngram}-word shingles")
    signers = {"ours": our_signer(settings), "datasketch": datasketch_signer(settings)}
    time_signers(texts[:64], signers, 64)  # warm-up: permutations, character tables
    timings = time_signers(texts, signers, args.batch)
    ours, theirs = timings["ours"], timings["datasketch"]
    figures = {
        "documents": len(texts),
        "mean_words": words / len(texts),
        "ours_docs_per_s": ours.docs_per_s,
        "ours_cpu_per_wall": ours.cpu_s / ours.wall_s,
        "datasketch_docs_per_s": theirs.docs_per_s,
        "datasketch_cpu_per_wall": theirs.cpu_s / theirs.wall_s,
        "speedup": ours.docs_per_s / theirs.docs_per_s,
    }
    print(f"ours (numpy, vectorised):          {ours.docs_per_s:7,.0f} docs/s  "
          f"({ours.wall_s:.1f} s, CPU/wall {figures['ours_cpu_per_wall']:.2f})")
    print(f"datasketch (update_batch per doc): {theirs.docs_per_s:7,.0f} docs/s  "
          f"({theirs.wall_s:.1f} s, CPU/wall {figures['datasketch_cpu_per_wall']:.2f})")
    print(f"speed-up: {figures['speedup']:.1f}x (target: 10x); OS threads in this process: {os_threads()}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
