"""Does our filtering train better models? The ablation of issue 24 on the real pages of
../shared/data/warc/derived_real_html, English kept, in a work directory:

1. A run of the real pages with extraction, language ID (English, score >= 0.65) and every rule stage (Gopher
   repetition and quality, C4, FineWeb), rejects kept.
2. A quality classifier as DCLM trains one: Wikipedia paragraphs (WikiText-2's *test* split, detokenised) against a
   sample of the pool itself (the English documents of run 1, cut into runs of lines), fastText.
3. The same run with the quality classifier last at threshold 0, so that it scores every document and drops none.
4. `pipeline ablate` with three variants of run 3, all chosen by its saved signals: "langid_only" (extraction +
   language ID), "rules" (+ every rule stage), "rules_quality" (+ the quality classifier keeping the better-scored
   half of what the rules keep, as DCLM keeps a top share: the threshold is the median score of run 3's documents,
   fixed by the scores alone, before any model is trained); one tokenizer trained on the three together; every
   variant cut to the smallest one's training tokens; three model sizes, three seeds, about two passes over the
   budget (`--steps`). Reference sets: Wikipedia (WikiText-2's *validation* split, detokenised as for the
   classifier, which never saw it) and English books and speeches (Gutenberg, tiny Shakespeare, NLTK's inaugural
   and state-of-the-union addresses).
5. The scaling view over data for the rules: "langid_only" against "rules" alone, each on the rules' whole 245k
   training tokens and on a half and a quarter of them (nested, the steps scaled with the budget), size m, three
   seeds: fits of bits per byte over training tokens, and the budget from which the rules' fit parts from
   langid_only's by more than the seed spread.

    python scripts/ablate_real_pages.py [--work DIR] [--data ../shared/data] [--steps N]

Prints the ablation's table and scaling fits; the work directory keeps every run, model and report.html.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as pads
import yaml

REPO = Path(__file__).resolve().parents[1]
RULES = ["gopher_repetition", "gopher_quality", "c4", "fineweb"]
LANGID = {"languages": ["en"], "min_score": 0.65}


def pipeline(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pipeline.cli", *args], check=True, cwd=REPO)


def run_config(work: Path, data: Path, name: str, classifier: Path | None) -> Path:
    stages: list = ["extract", {"langid": {**LANGID, "model": str(data / "models/lid176/lid.176.ftz")}}, *RULES]
    if classifier is not None:  # scores every document, drops none: the variant sets the threshold
        stages.append({"quality_classifier": {"model": str(classifier), "threshold": 0.0}})
    config = {"name": name, "output": str(work / name), "rejects": True,
              "input": {"paths": [str(data / "warc/derived_real_html/*.warc.gz")]}, "stages": stages}
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def wikitext_paragraphs(path: Path) -> list[str]:
    """Paragraphs of a tokenised WikiText-2 split, detokenised, without headings and with few <unk> markers."""
    paragraphs = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("=") or line.count("<unk>") > len(line.split()) / 20:
            continue
        line = line.replace("<unk>", "").replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
        line = re.sub(r" ([.,;:!?)%]|'s|n't)", r"\1", line)
        line = re.sub(r"([($]) ", r"\1", line)
        paragraphs.append(re.sub(r" {2,}", " ", line))
    return [paragraph for paragraph in paragraphs if len(paragraph) >= 200]


def english_chunks(run: Path) -> list[str]:
    """The English documents of a run (kept, or dropped after language ID) cut into runs of lines of >= 200
    characters: the pool's own text, the classifier's negatives."""
    chunks = []
    for folder in ("documents", "rejects"):
        table = pads.dataset(str(run / folder)).to_table(columns=["text", "lang"])
        for text, language in zip(table.column("text").to_pylist(), table.column("lang").to_pylist()):
            if not text or language != "en":
                continue
            current = ""
            for line in text.splitlines():
                current = f"{current}\n{line}" if current else line
                if len(current) >= 200:
                    chunks.append(current)
                    current = ""
    return chunks


def train_quality_classifier(work: Path, data: Path) -> Path:
    from stages.fasttext_training import TrainingSettings, train_classifier

    positives = wikitext_paragraphs(data / "quality/wikipedia/wikitext2/test.txt")
    negatives = english_chunks(work / "rules")
    model = work / "quality.bin"
    report = train_classifier([(text, "hq") for text in positives] + [(text, "lq") for text in negatives], model,
                              TrainingSettings(dim=32, bucket=50_000, balance=True))
    print(f"quality classifier: {len(positives)} Wikipedia paragraphs against {len(negatives)} chunks of the pool")
    print(report.format())
    return model


def median_quality(run: Path) -> float:
    """The median quality score of the documents the run keeps (every rule passed; the classifier drops none)."""
    scores = sorted(pads.dataset(str(run / "documents")).to_table(columns=["quality_score"]).column(0).to_pylist())
    return float(scores[len(scores) // 2])


def wikipedia_reference(work: Path, data: Path) -> Path:
    """WikiText-2's validation paragraphs, detokenised, as JSONL (derived data: in the work directory only)."""
    path = work / "wikipedia-valid.jsonl"
    path.write_text("".join(json.dumps({"text": text}) + "\n"
                            for text in wikitext_paragraphs(data / "quality/wikipedia/wikitext2/valid.txt")))
    return path


SELECT_RULES = {"langid": None, **{stage: None for stage in RULES}}


def ablate_config(work: Path, data: Path, steps: int) -> Path:
    threshold = median_quality(work / "rules_quality")
    print(f"quality threshold: {threshold:.4f} (the median score of the documents every rule keeps)")
    config = {
        "output": str(work / "ablation"), "run": str(work / "rules_quality"),
        "variants": [{"name": "langid_only", "select": {"langid": None}},
                     {"name": "rules", "select": SELECT_RULES},
                     {"name": "rules_quality",
                      "select": {**SELECT_RULES, "quality_classifier": {"threshold": threshold}}}],
        "tokenizer": {"vocab_size": 4000}, "tokens": "auto", "validation_fraction": 0.05, "seeds": [0, 1, 2],
        "sizes": [{"name": "s", "n_layer": 2, "n_head": 2, "n_embd": 64},
                  {"name": "m", "n_layer": 3, "n_head": 4, "n_embd": 96},
                  {"name": "l", "n_layer": 4, "n_head": 4, "n_embd": 128}],
        "training": {"block_size": 128, "batch_size": 8, "max_steps": steps, "learning_rate": 2e-3,
                     "min_learning_rate": 2e-4, "warmup_steps": steps // 10, "eval_interval": steps // 4,
                     "eval_batches": 8, "log_interval": steps // 4, "checkpoint_interval": steps},
        "references": [
            {"name": "wikipedia", "paths": [str(wikipedia_reference(work, data))], "max_bytes": 200_000},
            {"name": "books", "paths": [str(data / "text/gutenberg/en-*.zip"), str(data / "text/tinyshakespeare"),
                                        str(data / "text/nltk_public_domain/inaugural.zip"),
                                        str(data / "text/nltk_public_domain/state_union.zip")],
             "max_bytes": 200_000}],
    }
    path = work / "ablate.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def budgets_config(work: Path, base: Path, passes_steps: int) -> Path:
    """Step 5: the rules against langid_only over three nested budgets (the same tokenizer settings, references
    and training as step 4; size m only; steps for the whole budget in proportion to step 4's passes)."""
    config = yaml.safe_load(base.read_text())
    config.update(output=str(work / "ablation-budgets"), tokens="auto", budgets=[0.25, 0.5, 1.0],
                  variants=[{"name": "langid_only", "select": {"langid": None}},
                            {"name": "rules", "select": SELECT_RULES}],
                  sizes=[size for size in config["sizes"] if size["name"] == "m"])
    config["training"].update(max_steps=passes_steps, warmup_steps=passes_steps // 10,
                              eval_interval=passes_steps // 4, log_interval=passes_steps // 4,
                              checkpoint_interval=passes_steps)
    path = work / "ablate-budgets.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/ablate-real-pages"))
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--steps", type=int, default=160, help="training steps of every model, 1,024 tokens each "
                        "(default 160)")
    args = parser.parse_args(argv)
    work, data = args.work.resolve(), args.data.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "rules" / "stats" / "summary.json").exists():
        pipeline("run", "--config", str(run_config(work, data, "rules", None)), "--quiet")
    model = work / "quality.bin"
    if not model.exists():
        model = train_quality_classifier(work, data)
    if not (work / "rules_quality" / "stats" / "summary.json").exists():
        pipeline("run", "--config", str(run_config(work, data, "rules_quality", model)), "--quiet")
    base = ablate_config(work, data, args.steps)
    pipeline("ablate", "--config", str(base))
    from pipeline import inspect

    ablation = inspect.load_ablation(work / "ablation")
    print(json.dumps(ablation.variants().drop(columns=["dropped"]).to_dict("records"), indent=1))
    print(ablation.scaling().to_string(index=False))
    # the same passes over the rules' whole training set as step 4 makes over the smallest variant's
    variants = ablation.variants().set_index("name")
    passes_steps = round(args.steps * variants.loc["rules", "train_tokens"] / variants.loc["rules", "budget_tokens"])
    pipeline("ablate", "--config", str(budgets_config(work, base, passes_steps)))
    print(inspect.load_ablation(work / "ablation-budgets").scaling().to_string(index=False))


if __name__ == "__main__":
    main()
