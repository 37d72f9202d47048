"""The ablation's tables in <ablation>/stats/, from the models' result.json and log.jsonl files (written atomically;
`inspect.load_ablation` reads them):

- ablation.parquet: per variant, size and evaluation set: documents and tokens trained on, bits per byte as mean and
  standard deviation over seeds, the difference to the baseline and the paired t-test's p-value over seeds;
- ablation_runs.parquet: per model (variant, size, seed) and evaluation set: bits per byte and per token, losses;
- ablation_variants.parquet: per variant: candidates, selected, dropped by reason, undecidable, tokens before and
  under the budget;
- ablation_curves.parquet: per model and step: training loss, and the validation loss where it was measured;
- ablation_scaling.parquet (3 or more sizes): per variant and evaluation set, the fit L(N) = E + A / N^alpha over
  the sizes' parameter counts, and the N from which it parts from the baseline's fit by more than the seed spread.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pyarrow as pa

from pipeline.ablation.compare import compare_to_baseline, fit_scaling, size_to_separate
from pipeline.ablation.settings import AblateConfig
from pipeline.io.atomic import atomic_write_parquet

VALIDATION = "validation"  # each variant's own held-out documents (runner.VALIDATION)

SUMMARY, RUNS, VARIANTS, CURVES, SCALING = (
    "ablation.parquet", "ablation_runs.parquet", "ablation_variants.parquet", "ablation_curves.parquet",
    "ablation_scaling.parquet")


def write_tables(output: Path, config: AblateConfig, prepared: dict) -> None:
    from pipeline.ablation.runner import LOG_FILE, model_folder, read_results, results_table

    stats = output / "stats"
    results = read_results(output)
    atomic_write_parquet(stats / RUNS, results_table(results))
    by_variant = {entry["name"]: entry for entry in prepared["variants"]}
    atomic_write_parquet(stats / VARIANTS, pa.Table.from_pylist([
        {**{key: value for key, value in entry.items() if key != "dropped"},
         "dropped": json.dumps(entry["dropped"]), "budget_tokens": prepared["budget"]}
        for entry in prepared["variants"]]))
    summary = summary_rows(results, config.baseline_name, [v.name for v in config.variants], by_variant,
                           prepared["budget"], [size.name for size in config.sizes])
    atomic_write_parquet(stats / SUMMARY, pa.Table.from_pylist(summary))
    curves = []
    for result in results:
        log_path = model_folder(output, result["variant"], result["size"], result["seed"]) / LOG_FILE
        for line in log_path.read_text().splitlines():
            entry = json.loads(line)
            curves.append({"variant": result["variant"], "size": result["size"], "seed": result["seed"],
                           "step": entry["step"], "loss": entry["loss"], "val_loss": entry.get("val_loss")})
    atomic_write_parquet(stats / CURVES, pa.Table.from_pylist(curves, schema=pa.schema([
        ("variant", pa.string()), ("size", pa.string()), ("seed", pa.int64()), ("step", pa.int64()),
        ("loss", pa.float64()), ("val_loss", pa.float64())])))
    scaling = scaling_rows(results, config.baseline_name)
    if scaling:
        atomic_write_parquet(stats / SCALING, pa.Table.from_pylist(scaling))
    else:
        (stats / SCALING).unlink(missing_ok=True)  # this ablation's own stats/: a table of an earlier size list


def summary_rows(results: list[dict], baseline: str, variants: list[str], data: dict[str, dict],
                 budget: int, sizes: list[str]) -> list[dict]:
    """Per size (in the config's order) and evaluation set (the reference sets, then each variant's own held-out
    documents), every variant against the baseline over seeds."""
    losses: dict[tuple[str, str], dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    parameters = {}
    for result in results:
        parameters[result["size"]] = result["parameters"]
        for name, score in result["scores"].items():
            losses[(result["size"], name)][result["variant"]][result["seed"]] = score["bits_per_byte"]
    rows = []
    def order(key: tuple[str, str]) -> tuple:
        return sizes.index(key[0]) if key[0] in sizes else len(sizes), key[1] == VALIDATION

    for (size, evaluation), by_variant in sorted(losses.items(), key=lambda item: order(item[0])):
        if baseline not in by_variant:
            continue
        ordered = {name: by_variant[name] for name in variants if name in by_variant}
        for comparison in compare_to_baseline(ordered, baseline):
            rows.append({"variant": comparison.variant, "size": size, "parameters": parameters[size],
                         "evaluation": evaluation, "documents": data[comparison.variant]["budget_documents"],
                         "tokens": budget, "seeds": comparison.seeds, "bits_per_byte": comparison.mean,
                         "bits_per_byte_std": comparison.std, "difference": comparison.difference,
                         "p_value": comparison.p_value, "baseline": comparison.variant == baseline})
    return rows


def scaling_rows(results: list[dict], baseline: str) -> list[dict]:
    """Per variant and evaluation set with 3 or more sizes: the fitted curve of the mean over seeds, and where it
    parts from the baseline's by more than the largest standard deviation over seeds at any size."""
    points: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for result in results:
        for name, score in result["scores"].items():
            points[(result["variant"], name)][result["parameters"]].append(score["bits_per_byte"])
    fits, spreads = {}, {}
    for key, by_size in points.items():
        if len(by_size) < 3:
            continue
        sizes = sorted(by_size)
        means = [sum(by_size[n]) / len(by_size[n]) for n in sizes]
        fits[key] = (fit_scaling(sizes, means), sizes)
        spreads[key] = max((_std(by_size[n]) for n in sizes), default=0.0)
    rows = []
    for (variant, evaluation), (fit, sizes) in fits.items():
        base = fits.get((baseline, evaluation))
        margin = max(spreads[(variant, evaluation)], spreads.get((baseline, evaluation), 0.0))
        separates = (size_to_separate(fit, base[0], margin, sizes) if base is not None and variant != baseline
                     else None)
        rows.append({"variant": variant, "evaluation": evaluation, "irreducible": fit.irreducible,
                     "scale": fit.scale, "exponent": fit.exponent, "sizes": len(sizes), "margin": margin,
                     "parts_from_baseline_at": separates})
    return rows


def _std(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return (sum((value - mean) ** 2 for value in values) / (len(values) - 1)) ** 0.5
