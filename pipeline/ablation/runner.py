"""`pipeline ablate`: prepare the variants' data, train every variant x size x seed, score them, write the tables.

The ablation directory holds:

    ablation.json        the resolved config; a rerun with another one is refused (its results would mix)
    pool/, tokenizer/    the documents the variants selected, with their tokens; the shared tokenizer
    variants/<v>/        shards-<tokens>/ (the trainer's input, per budget), validation.parquet (held-out texts
                         scored), data.json
    models/<v>/<size>/<tokens>/seed-<s>/   checkpoint.pt, log.jsonl (as `pipeline train`), result.json once scored
    stats/               ablation.parquet (the table), ablation_runs.parquet (every model and evaluation set),
                         ablation_variants.parquet, ablation_curves.parquet, ablation_scaling.parquet (3+ sizes)
    report.html          the table and the learning curves

Resumable: the data is prepared once (data.json says it is whole), a model with result.json is not trained again
and an interrupted one resumes from its checkpoint (pipeline/train/train.py). Seed s of every variant starts from
the same initialisation and draws its batches with the same random stream, so differences between variants at a
seed are paired (pipeline/ablation/compare.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa

from pipeline.ablation.data import check_sources, prepare_data, shards_folder, variant_folder
from pipeline.ablation.references import read_reference
from pipeline.ablation.settings import AblateConfig, SizeSettings
from pipeline.config import ConfigError, apply_override, read_yaml_mapping, validated
from pipeline.io.atomic import atomic_write_json
from pipeline.run_dir import first_difference
from pipeline.schema import TEXT

CONFIG_FILE = "ablation.json"
DATA_FILE = "data.json"
RESULT_FILE = "result.json"
LOG_FILE = "log.jsonl"  # pipeline/train/train.py LOG: every step's figures
VALIDATION = "validation"  # the evaluation set of each variant's own held-out documents


def load_ablate_config(path: str | Path, overrides: list[str] = ()) -> AblateConfig:
    """Read an ablation config, apply `key.path=value` overrides, validate. Raises ConfigError in one line."""
    raw = read_yaml_mapping(str(path))
    for override in overrides:
        apply_override(raw, override, str(path))
    return validated(AblateConfig, raw, str(path))


def model_folder(output: Path, variant: str, size: str, tokens: int, seed: int) -> Path:
    return output / "models" / variant / size / str(tokens) / f"seed-{seed}"


def run_ablation(config: AblateConfig, log=print) -> Path:
    """Run (or resume) the ablation; returns its directory."""
    output = Path(config.output).expanduser()
    check_sources(config)
    _claim(output, config)
    data_file = output / DATA_FILE
    if data_file.exists():
        prepared = json.loads(data_file.read_text())
        log(f"data prepared already: {prepared['budget']:,} training tokens per variant")
    else:
        started = time.monotonic()
        prepared = prepare_data(config, output, log).to_dict()
        prepared["seconds"] = time.monotonic() - started
        atomic_write_json(data_file, prepared)
    references = {reference.name: read_reference(reference) for reference in config.references}
    evaluations = _Evaluations(output, config, prepared["budget"], references)
    budgets = prepared["budgets"]
    total = len(budgets) * len(config.sizes) * len(config.seeds) * len(config.variants)
    done = 0
    for tokens in budgets:
        for size in config.sizes:
            for seed in config.seeds:
                for variant in config.variants:
                    done += 1
                    if (model_folder(output, variant.name, size.name, tokens, seed) / RESULT_FILE).exists():
                        continue
                    log(f"[{done}/{total}] {variant.name}, {size.name}, {tokens:,} tokens, seed {seed}")
                    _train_and_score(config, output, variant.name, size, tokens / prepared["budget"], tokens, seed,
                                     evaluations, log)
    from pipeline.ablation.tables import write_tables

    write_tables(output, config, prepared)
    from pipeline.ablation.report import write_ablation_report

    write_ablation_report(output)
    return output


def _claim(output: Path, config: AblateConfig) -> None:
    """Write the config into a new ablation directory, or check that it is the one already there (it may change
    until the data is prepared: nothing made with it would mix with the new one's)."""
    saved = output / CONFIG_FILE
    resolved = config.model_dump(mode="json")
    if saved.exists():
        previous = json.loads(saved.read_text())
        difference = first_difference(previous, resolved)
        if difference and not (output / DATA_FILE).exists():  # nothing prepared or trained with the old settings
            atomic_write_json(saved, resolved)
        elif difference:
            raise ConfigError(f"{output} holds an ablation with other settings ({difference}): its results would "
                              "mix with this one's; give another output")
        return
    if output.exists() and any(output.iterdir()):
        raise ConfigError(f"{output} exists and is not an ablation directory: give a new or empty output")
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_json(saved, resolved)


class _Evaluations:
    """The texts every model is scored on, encoded once: the reference sets and each variant's held-out sample."""

    def __init__(self, output: Path, config: AblateConfig, budget: int, references: dict[str, list[str]]):
        import pyarrow.parquet as pq

        from stages.tokens.files import load_tokenizer

        shards = shards_folder(output, config.variants[0].name, budget)
        manifest = json.loads((shards / "manifest.json").read_text())
        self.tokenizer = load_tokenizer((shards / manifest["tokenizer"]["path"]).read_bytes())
        self.eos_id = self.tokenizer.eos_id
        self.sets: dict[str, tuple[list[list[int]], list[str]]] = {
            name: (self.tokenizer.token_ids(texts), texts) for name, texts in references.items()}
        self.validation: dict[str, tuple[list[list[int]], list[str]]] = {}
        for variant in config.variants:
            texts = pq.read_table(variant_folder(output, variant.name) / "validation.parquet",
                                  columns=[TEXT]).column(TEXT).to_pylist()
            self.validation[variant.name] = (self.tokenizer.token_ids(texts), texts)

    def of(self, variant: str) -> dict[str, tuple[list[list[int]], list[str]]]:
        return {**self.sets, VALIDATION: self.validation[variant]}


def training_settings(config: AblateConfig, size: SizeSettings, share: float, seed: int) -> dict:
    """`training` with the size's model and the seed; a budget that is a share of the full one trains that share of
    max_steps (warmup and evaluations scaled alike), so every budget gets the same passes over its data."""
    settings = config.training.model_dump()
    settings["model"] = size.model_dump(exclude={"name"})
    settings["seed"] = seed
    if share < 1:
        steps = max(1, round(share * config.training.max_steps))
        settings.update(max_steps=steps, warmup_steps=round(share * config.training.warmup_steps),
                        eval_interval=max(1, round(share * config.training.eval_interval)),
                        checkpoint_interval=steps)
    return settings


def _train_and_score(config: AblateConfig, output: Path, variant: str, size: SizeSettings, share: float,
                     tokens: int, seed: int, evaluations: _Evaluations, log) -> None:
    import torch

    from pipeline.ablation.bits_per_byte import text_loss
    from pipeline.train.model import GPT, GPTConfig
    from pipeline.train.settings import TrainConfig
    from pipeline.train.train import CHECKPOINT, train

    folder = model_folder(output, variant, size.name, tokens, seed)
    train_config = TrainConfig(**training_settings(config, size, share, seed),
                               shards=str(shards_folder(output, variant, tokens)), out_dir=str(folder))
    started = time.monotonic()
    figures = train(train_config, log=lambda line: log(f"  {line}") if not line.startswith("step ") else None)
    seconds = time.monotonic() - started
    checkpoint = torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=False)
    model = GPT(GPTConfig(**checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    device = "cuda" if torch.cuda.is_available() and config.training.device != "cpu" else "cpu"
    model.to(device)
    scores = {}
    for name, (token_ids, texts) in evaluations.of(variant).items():
        loss = text_loss(model, token_ids, texts, evaluations.eos_id, config.training.block_size, device=device)
        scores[name] = {"bits_per_byte": loss.bits_per_byte, "bits_per_token": loss.bits_per_token,
                        "tokens": loss.tokens, "bytes": loss.bytes, "texts": len(texts)}
    result = {"variant": variant, "size": size.name, "tokens": tokens, "seed": seed,
              "parameters": model.num_parameters(),
              "steps": checkpoint["step"], "train_loss": figures.get("loss"), "val_loss": figures.get("val_loss"),
              "train_seconds": seconds, "scores": scores}
    atomic_write_json(folder / RESULT_FILE, result)
    log("  " + ", ".join(f"{name} {score['bits_per_byte']:.4f}" for name, score in scores.items()) + " bits/byte")


def read_results(output: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted((output / "models").glob(f"*/*/*/seed-*/{RESULT_FILE}"))]


def results_table(results: list[dict]) -> pa.Table:
    """One row per model and evaluation set: `tokens` is the budget trained on; `scored_tokens` and `scored_bytes`
    what the evaluation set holds."""
    rows = [{"variant": result["variant"], "size": result["size"], "tokens": result["tokens"], "seed": result["seed"],
             "evaluation": name, "parameters": result["parameters"], "steps": result["steps"],
             "bits_per_byte": score["bits_per_byte"], "bits_per_token": score["bits_per_token"],
             "scored_tokens": score["tokens"], "scored_bytes": score["bytes"], "texts": score["texts"],
             "train_loss": result["train_loss"], "val_loss": result["val_loss"],
             "train_seconds": result["train_seconds"]}
            for result in results for name, score in result["scores"].items()]
    return pa.Table.from_pylist(rows)

