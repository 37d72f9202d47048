"""Train a fastText document classifier (toxicity, quality) from labelled text, with a held-out evaluation.

Inputs: a CSV or JSONL(.gz) file with a text and a label field (labels may be mapped, e.g. Davidson's classes
0,1 -> toxic and 2 -> clean), or one folder of text files per label (one document per file). A seeded, hash-based
split holds out a share of the documents; the report gives precision, recall and F1 per label on it, and the F1
that chance would reach (guessing a label at its rate in the held-out set), so "better than chance" is a number.
Training uses one thread and a fixed seed, so the same data gives the same model.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import random
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from stages.fasttext_model import LABEL_PREFIX, FastTextModel, fasttext_line

csv.field_size_limit(sys.maxsize)


@dataclass(frozen=True)
class TrainingSettings:
    epoch: int = 25
    lr: float = 0.5
    word_ngrams: int = 2
    dim: int = 64
    bucket: int = 200_000  # hashed n-gram slots: fastText's 2M default makes a 0.5 GB model at dim 64
    min_count: int = 2
    holdout: float = 0.1
    seed: int = 0
    balance: bool = False  # down-sample every label to the rarest one's count


@dataclass
class LabelScores:
    label: str
    support: int
    precision: float
    recall: float
    f1: float
    chance_f1: float


@dataclass
class ClassifierReport:
    model_path: Path
    train_counts: dict[str, int]
    test_counts: dict[str, int]
    scores: list[LabelScores] = field(default_factory=list)
    accuracy: float = 0.0

    def score(self, label: str) -> LabelScores:
        return next(scores for scores in self.scores if scores.label == label)

    def format(self) -> str:
        lines = [
            f"model: {self.model_path}",
            f"trained on {sum(self.train_counts.values()):,} documents {dict(self.train_counts)}; "
            f"held out {sum(self.test_counts.values()):,} {dict(self.test_counts)}",
            f"{'label':<16}{'support':>9}{'precision':>11}{'recall':>9}{'F1':>8}{'chance F1':>11}",
        ]
        for s in self.scores:
            lines.append(f"{s.label:<16}{s.support:>9,}{s.precision:>11.3f}{s.recall:>9.3f}{s.f1:>8.3f}{s.chance_f1:>11.3f}")
        lines.append(f"accuracy {self.accuracy:.3f}")
        return "\n".join(lines)


class MissingField(ValueError):
    """The labelled file has no field of this name (in its CSV header, or in any JSON record)."""

    def __init__(self, role: str, name: str, path: Path, fields: list[str]):
        self.role, self.name, self.path = role, name, path
        self.present = ", ".join(field or "''" for field in fields) if fields else "none (no records)"
        super().__init__(f"{path}: no {role} field {name!r}; fields: {self.present}")


class UnmappedLabels(ValueError):
    """A label map that leaves labels of the file out: each would silently become a class of its own."""

    def __init__(self, counts: Counter):
        self.counts = counts
        listed = ", ".join(f"{label!r} ({count:,} {'row' if count == 1 else 'rows'})"
                           for label, count in counts.most_common())
        super().__init__(f"labels not in the label map: {listed}")


def read_labelled_file(
    path: str | Path, text_field: str = "text", label_field: str = "label", label_map: dict[str, str] | None = None,
    keep_unmapped: bool = False,
) -> list[tuple[str, str]]:
    """(text, label) pairs from a CSV or JSONL(.gz) file; rows without text or label are skipped.

    A text or label field that the file does not have is a MissingField. With a label map, labels that are neither
    mapped nor a label the map produces are an UnmappedLabels error, unless keep_unmapped keeps them as they are."""
    path = Path(path)
    fields: dict[str, None] = {}  # every field seen, in order of first appearance
    pairs = []
    for record in _records(path):
        fields.update(dict.fromkeys(record))
        text, label = record.get(text_field), record.get(label_field)
        if isinstance(text, str) and label is not None:
            pairs.append((text, str(label)))
    for role, name in (("text", text_field), ("label", label_field)):
        if name not in fields:
            raise MissingField(role, name, path, list(fields))
    if not label_map:
        return pairs
    unmapped = Counter(label for _, label in pairs if label not in label_map and label not in label_map.values())
    if unmapped and not keep_unmapped:
        raise UnmappedLabels(unmapped)
    return [(text, label_map.get(label, label)) for text, label in pairs]


def _records(path: Path) -> Iterator[dict]:
    """The records of a CSV or JSONL(.gz) file."""
    name = path.name.lower().removesuffix(".gz")
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        if name.endswith(".csv"):
            yield from csv.DictReader(fh)
        else:
            yield from (json.loads(line) for line in fh if line.strip())


def read_labelled_folders(folders: dict[str, str | Path]) -> list[tuple[str, str]]:
    """(text, label) pairs: every file under each label's folder is one document."""
    pairs = []
    for label, folder in folders.items():
        for root, _, names in sorted(os.walk(folder)):
            for name in sorted(names):
                if not name.startswith("."):
                    pairs.append((Path(root, name).read_text(encoding="utf-8", errors="replace"), label))
    return pairs


def split_holdout(pairs: list[tuple[str, str]], holdout: float, seed: int) -> tuple[list, list]:
    """Deterministic split by a hash of the text, so the same document is always on the same side."""
    train, test = [], []
    for pair in pairs:
        digest = hashlib.blake2b(f"{seed}:{pair[0]}".encode("utf-8", "replace"), digest_size=8).digest()
        (test if int.from_bytes(digest, "big") / 2**64 < holdout else train).append(pair)
    return train, test


def _balanced(pairs: list[tuple[str, str]], seed: int) -> list[tuple[str, str]]:
    by_label: dict[str, list] = {}
    for pair in pairs:
        by_label.setdefault(pair[1], []).append(pair)
    smallest = min(len(items) for items in by_label.values())
    rng = random.Random(seed)
    return [pair for items in by_label.values() for pair in rng.sample(items, smallest)]


def train_classifier(
    pairs: list[tuple[str, str]], model_path: str | Path, settings: TrainingSettings = TrainingSettings()
) -> ClassifierReport:
    """Train on all but the held-out share, save the model, and evaluate it on the held-out share."""
    import fasttext

    labels = sorted({label for _, label in pairs})
    if len(labels) < 2:
        found = f"only {labels[0]!r}" if labels else "no labelled documents"
        raise ValueError(f"need at least two labels to train a classifier, found {found}")
    train, test = split_holdout(pairs, settings.holdout, settings.seed)
    if settings.balance:
        train = _balanced(train, settings.seed)
    random.Random(settings.seed).shuffle(train)
    model_path = Path(model_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as fh:
        for text, label in train:
            line = fasttext_line(text)
            if line:
                fh.write(f"{LABEL_PREFIX}{label.replace(' ', '_')} {line}\n")
        training_file = fh.name
    try:
        model = fasttext.train_supervised(
            input=training_file, epoch=settings.epoch, lr=settings.lr, wordNgrams=settings.word_ngrams,
            dim=settings.dim, bucket=settings.bucket, minCount=settings.min_count, thread=1, seed=settings.seed,
            verbose=0,
        )
        if model_path.suffix == ".ftz":  # the compressed format: a few MB, slightly less accurate
            model.quantize(input=training_file, retrain=True, qnorm=True, cutoff=100_000, thread=1, verbose=0)
    finally:
        os.unlink(training_file)
    temporary = model_path.with_name(f".{model_path.name}.tmp")
    model.save_model(str(temporary))
    os.replace(temporary, model_path)
    report = ClassifierReport(model_path, dict(Counter(l for _, l in train)), dict(Counter(l for _, l in test)))
    if test:
        _evaluate(report, FastTextModel(model_path), test, labels)
    return report


def _evaluate(report: ClassifierReport, model: FastTextModel, test: list[tuple[str, str]], labels: list[str]) -> None:
    predicted = [model.top(fasttext_line(text))[0] for text, _ in test]
    truth = [label.replace(" ", "_") for _, label in test]
    report.accuracy = sum(p == t for p, t in zip(predicted, truth)) / len(test)
    for label in labels:
        name = label.replace(" ", "_")
        true_positive = sum(p == name and t == name for p, t in zip(predicted, truth))
        predicted_count = sum(p == name for p in predicted)
        support = sum(t == name for t in truth)
        precision = true_positive / predicted_count if predicted_count else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report.scores.append(LabelScores(label, support, precision, recall, f1, chance_f1=support / len(test)))
