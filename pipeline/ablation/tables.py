"""The ablation's tables in <ablation>/stats/, from the models' result.json and log.jsonl files (written atomically;
`inspect.load_ablation` reads them):

- ablation.parquet: per variant, budget, size and evaluation set: documents and tokens trained on, bits per byte as
  mean and standard deviation over seeds, the difference to the baseline and the paired t-test's p-value over seeds;
- ablation_runs.parquet: per model (variant, size, budget, seed) and evaluation set: bits per byte and per token,
  losses;
- ablation_variants.parquet: per variant: candidates, selected, dropped by reason, undecidable, tokens before and
  under the budget;
- ablation_curves.parquet: per model and step: training loss, and the validation loss where it was measured;
- ablation_scaling.parquet (3 or more sizes, or budgets): per variant and evaluation set, the fit
  L(N) = E + A / N^alpha over the sizes' parameter counts (at each budget) or over the budgets' tokens (at each
  size), and the N from which it parts from the baseline's fit by more than the seed spread.
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
    documents = {(entry["name"], int(tokens)): count for entry in prepared["variants"]
                 for tokens, count in entry["budget_documents"].items()}
    atomic_write_parquet(stats / VARIANTS, pa.Table.from_pylist([
        {**{key: value for key, value in entry.items() if key not in ("dropped", "budget_documents")},
         "dropped": json.dumps(entry["dropped"]), "budget_tokens": prepared["budget"],
         "budget_documents": documents[(entry["name"], prepared["budget"])]}
        for entry in prepared["variants"]]))
    summary = summary_rows(results, config.baseline_name, [v.name for v in config.variants], documents,
                           [size.name for size in config.sizes])
    atomic_write_parquet(stats / SUMMARY, pa.Table.from_pylist(summary))
    curves = []
    for result in results:
        log_path = model_folder(output, result["variant"], result["size"], result["tokens"], result["seed"]) / LOG_FILE
        for line in log_path.read_text().splitlines():
            entry = json.loads(line)
            curves.append({"variant": result["variant"], "size": result["size"], "tokens": result["tokens"],
                           "seed": result["seed"], "step": entry["step"], "loss": entry["loss"],
                           "val_loss": entry.get("val_loss")})
    atomic_write_parquet(stats / CURVES, pa.Table.from_pylist(curves, schema=pa.schema([
        ("variant", pa.string()), ("size", pa.string()), ("tokens", pa.int64()), ("seed", pa.int64()),
        ("step", pa.int64()), ("loss", pa.float64()), ("val_loss", pa.float64())])))
    scaling = scaling_rows(results, config.baseline_name)
    if scaling:
        atomic_write_parquet(stats / SCALING, pa.Table.from_pylist(scaling))
    else:
        (stats / SCALING).unlink(missing_ok=True)  # this ablation's own stats/: a table of an earlier size list


def summary_rows(results: list[dict], baseline: str, variants: list[str], documents: dict[tuple[str, int], int],
                 sizes: list[str]) -> list[dict]:
    """Per budget, size (in the config's order) and evaluation set (the reference sets, then each variant's own
    held-out documents), every variant against the baseline over seeds."""
    losses: dict[tuple[int, str, str], dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    parameters = {}
    for result in results:
        parameters[result["size"]] = result["parameters"]
        for name, score in result["scores"].items():
            losses[(result["tokens"], result["size"], name)][result["variant"]][result["seed"]] = score["bits_per_byte"]

    def order(key: tuple[int, str, str]) -> tuple:
        tokens, size, evaluation = key
        return -tokens, sizes.index(size) if size in sizes else len(sizes), evaluation == VALIDATION

    rows = []
    for (tokens, size, evaluation), by_variant in sorted(losses.items(), key=lambda item: order(item[0])):
        if baseline not in by_variant:
            continue
        ordered = {name: by_variant[name] for name in variants if name in by_variant}
        for comparison in compare_to_baseline(ordered, baseline):
            rows.append({"variant": comparison.variant, "size": size, "parameters": parameters[size],
                         "evaluation": evaluation, "documents": documents[(comparison.variant, tokens)],
                         "tokens": tokens, "seeds": comparison.seeds, "bits_per_byte": comparison.mean,
                         "bits_per_byte_std": comparison.std, "difference": comparison.difference,
                         "p_value": comparison.p_value, "baseline": comparison.variant == baseline})
    return rows


def scaling_rows(results: list[dict], baseline: str) -> list[dict]:
    """Fits of the mean over seeds, where 3 or more points differ in one dimension: over parameters (sizes) at each
    budget, and over training tokens (budgets) at each size; per variant and evaluation set, with where the fit parts
    from the baseline's by more than the largest standard deviation over seeds at any point."""
    rows = []
    for over, fixed in (("parameters", "tokens"), ("tokens", "size")):
        points: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for result in results:
            for name, score in result["scores"].items():
                points[(result["variant"], name, result[fixed])][result[over]].append(score["bits_per_byte"])
        fits, spreads = {}, {}
        for key, by_point in points.items():
            if len(by_point) < 3:
                continue
            xs = sorted(by_point)
            means = [sum(by_point[x]) / len(by_point[x]) for x in xs]
            fits[key] = (fit_scaling(xs, means), xs)
            spreads[key] = max((_std(by_point[x]) for x in xs), default=0.0)
        for (variant, evaluation, at), (fit, xs) in fits.items():
            base = fits.get((baseline, evaluation, at))
            margin = max(spreads[(variant, evaluation, at)], spreads.get((baseline, evaluation, at), 0.0))
            separates = (size_to_separate(fit, base[0], margin, xs) if base is not None and variant != baseline
                         else None)
            rows.append({"variant": variant, "evaluation": evaluation, "over": over, "at": f"{fixed} {at}",
                         "irreducible": fit.irreducible, "scale": fit.scale, "exponent": fit.exponent,
                         "points": len(xs), "margin": margin, "parts_from_baseline_at": separates})
    return rows


def _std(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return (sum((value - mean) ** 2 for value in values) / (len(values) - 1)) ** 0.5
