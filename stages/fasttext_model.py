"""A fastText model loaded once, predicting one document at a time through the C++ binding.

fasttext-wheel 0.9.2 is the fastText build that trains reliably here (0.9.3 and its forks fail at random with
"Encountered NaN"), but its Python `predict` breaks under numpy 2: on one string it raises, on a list with k > 1 it
returns wrong probabilities. The binding underneath (`model.f.predict`) is correct and as fast, so we call it.
Text goes through `fasttext_line`, the same preparation at training and at prediction time.
"""

from __future__ import annotations

from pathlib import Path

LABEL_PREFIX = "__label__"


def fasttext_line(text: str, lower: bool = True) -> str:
    """The document on one line (fastText reads a document per line and splits words on any other whitespace);
    lower-cased for our classifiers, whose small training sets generalise better without case, but not for
    lid.176, which was trained on cased text."""
    line = text.replace("\n", " ")
    return line.lower() if lower else line


class FastTextModel:
    def __init__(self, path: str | Path):
        import fasttext

        fasttext.FastText.eprint = lambda *args, **kwargs: None  # its load_model prints a deprecation note
        self._model = fasttext.load_model(str(path))
        self.labels = [label.removeprefix(LABEL_PREFIX) for label in self._model.labels]

    def top(self, text: str) -> tuple[str, float]:
        """The most likely label and its probability."""
        scored = self._model.f.predict(text + "\n", 1, 0.0, "replace")
        if not scored:
            return "", 0.0
        probability, label = scored[0]
        return label.removeprefix(LABEL_PREFIX), min(1.0, float(probability))

    def probability(self, text: str, label: str) -> float:
        """Probability of one label (0 when the model ranks it nowhere)."""
        wanted = LABEL_PREFIX + label
        for probability, candidate in self._model.f.predict(text + "\n", -1, 0.0, "replace"):
            if candidate == wanted:
                return min(1.0, float(probability))
        return 0.0

    def best_of(self, text: str, labels: set[str], floor: float) -> float:
        """The highest probability among `labels`, or 0 when none reaches `floor`: fastText ranks only the labels
        at or above it, which is cheaper than ranking all of them."""
        best = 0.0
        for probability, candidate in self._model.f.predict(text + "\n", -1, floor, "replace"):
            if candidate.removeprefix(LABEL_PREFIX) in labels:
                best = max(best, min(1.0, float(probability)))
        return best
