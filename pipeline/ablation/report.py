"""<ablation>/report.html: the ablation's table, each variant's selection, its learning curves and the scaling view,
in the run report's page and plot style (pipeline/report.py), from the tables alone (`inspect.load_ablation`)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline.inspect import Ablation, load_ablation
from pipeline.io.atomic import atomic_write_bytes
from pipeline.report import _PAGE, DPI, FONT_SIZE, NARROW, _image, _plot, _section, _table, _tidy

REPORT_FILE = "report.html"
# Variant colours, in the variants' order (matplotlib's tab10, which tells 10 apart).
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]


def write_ablation_report(path: str | Path) -> Path:
    ablation = load_ablation(path)
    target = ablation.root / REPORT_FILE
    atomic_write_bytes(target, render_ablation_report(ablation).encode("utf-8"))
    return target


def render_ablation_report(ablation: Ablation) -> str:
    table = ablation.table()
    sections = [
        _section("Bits per byte", _summary_intro(ablation), _summary_table(table)),
        _section("Variants", _variants_table(ablation.variants())),
        _section("Learning curves", *[_image(figure, f"learning curves, {size}")
                                      for size, figure in learning_curve_figures(ablation)]),
        _section("Scaling", _image(scaling_figure(ablation), "bits per byte against parameters"),
                 _scaling_table(ablation.scaling())),
    ]
    name = Path(ablation.config["output"]).name
    return _PAGE.format(title=html.escape(f"{name}: ablation"),
                        body=f"<h1>{html.escape(name)}: ablation</h1>" + "".join(s for s in sections if s))


def _variant_order(ablation: Ablation) -> list[str]:
    return [variant["name"] for variant in ablation.config["variants"]]


def _summary_intro(ablation: Ablation) -> str:
    config = ablation.config
    baseline = config.get("baseline") or config["variants"][0]["name"]
    return (f"<p>Every variant trained on the same number of tokens with the same tokenizer, model, schedule and "
            f"seeds ({', '.join(map(str, config['seeds']))}). Lower is better. <b>difference</b>: the variant's bits "
            f"per byte minus the baseline's ({html.escape(baseline)}), mean over seeds; <b>p</b>: paired t-test over "
            "seeds (a difference smaller than the seeds' spread has a large p). <b>validation</b> is each "
            "variant's own held-out documents: it differs between variants by construction.</p>")


def _summary_table(table: pd.DataFrame) -> str:
    if table.empty:
        return ""
    shown = table[["variant", "tokens", "size", "evaluation", "documents", "seeds", "bits_per_byte",
                   "bits_per_byte_std", "difference", "p_value"]].rename(
        columns={"bits_per_byte": "bits/byte", "bits_per_byte_std": "std", "p_value": "p"})
    return _table(shown, {"bits/byte": ".4f", "std": ".4f", "difference": "+.4f", "p": ".3f", "documents": ",",
                          "tokens": ","})


def _variants_table(variants: pd.DataFrame) -> str:
    if variants.empty:
        return ""
    frame = variants.copy()
    frame["dropped"] = [", ".join(f"{reason} {count:,}" for reason, count in json.loads(text).items()) or "-"
                        for text in frame["dropped"]]
    shown = frame[["name", "candidates", "selected", "undecidable", "dropped", "train_tokens", "budget_tokens",
                   "budget_documents", "validation_documents"]]
    return _table(shown, {column: "," for column in ("candidates", "selected", "undecidable", "train_tokens",
                                                     "budget_tokens", "budget_documents", "validation_documents")})


def learning_curve_figures(ablation: Ablation) -> list[tuple[str, Figure]]:
    """Per budget and size: the training loss per step (mean over seeds, band from lowest to highest seed) and the
    validation loss where measured, one colour per variant."""
    curves = ablation.curves()
    if curves.empty:
        return []
    order = _variant_order(ablation)
    figures = []
    for tokens in sorted(set(curves["tokens"]), reverse=True):
        for size in [size["name"] for size in ablation.config["sizes"]]:
            of_size = curves[(curves["size"] == size) & (curves["tokens"] == tokens)]
            if of_size.empty:
                continue
            figure, axes = _plot(3.4)
            for index, variant in enumerate(name for name in order if name in set(of_size["variant"])):
                colour = COLOURS[index % len(COLOURS)]
                mine = of_size[of_size["variant"] == variant]
                steps = mine.pivot_table(index="step", columns="seed", values="loss")
                axes.plot(steps.index, steps.mean(axis=1), color=colour, linewidth=1, label=f"{variant} (train)")
                axes.fill_between(steps.index, steps.min(axis=1), steps.max(axis=1), color=colour, alpha=0.15,
                                  linewidth=0)
                validation = mine[mine["val_loss"].notna()].groupby("step")["val_loss"].mean()
                if not validation.empty:
                    axes.plot(validation.index, validation.values, "o--", color=colour, markersize=3, linewidth=1,
                              label=f"{variant} (validation)")
            axes.set_xlabel("step")
            axes.set_ylabel("loss (nats per token)")
            axes.set_title(f"Learning curves, size {size}, {tokens:,} tokens: mean over seeds, band from lowest to "
                           "highest", loc="left", fontsize=FONT_SIZE + 1)
            axes.legend(frameon=False, fontsize=FONT_SIZE - 1, ncols=2)
            _tidy(axes)
            figures.append((f"{size}, {tokens:,} tokens", figure))
    return figures


def scaling_figure(ablation: Ablation) -> Figure | None:
    """Bits per byte against parameters or training tokens for each variant (mean over seeds), with the fits: one
    panel per fitted dimension, fixed point and evaluation set."""
    scaling, runs = ablation.scaling(), ablation.runs()
    if scaling.empty:
        return None
    panels = list(dict.fromkeys(zip(scaling["over"], scaling["at"], scaling["evaluation"])))
    figure = Figure(figsize=(NARROW, 3.0 * len(panels)), dpi=DPI, layout="constrained")
    order = _variant_order(ablation)
    for row, (over, at, evaluation) in enumerate(panels):
        axes = figure.add_subplot(len(panels), 1, row + 1)
        fixed, value = at.split(" ", 1)
        for index, variant in enumerate(order):
            points = runs[(runs["variant"] == variant) & (runs["evaluation"] == evaluation)
                          & (runs[fixed].astype(str) == value)]
            fit = scaling[(scaling["variant"] == variant) & (scaling["evaluation"] == evaluation)
                          & (scaling["over"] == over) & (scaling["at"] == at)]
            if points.empty or fit.empty:
                continue
            colour = COLOURS[index % len(COLOURS)]
            means = points.groupby(over)["bits_per_byte"].mean()
            axes.plot(means.index, means.values, "o", color=colour, label=variant)
            grid = np.logspace(np.log10(means.index.min()), np.log10(means.index.max() * 30), 100)
            fitted = fit.iloc[0]
            axes.plot(grid, fitted["irreducible"] + fitted["scale"] / grid ** fitted["exponent"], "-", color=colour,
                      linewidth=1)
        axes.set_xscale("log")
        axes.set_xlabel("parameters (without position embeddings)" if over == "parameters" else "training tokens")
        axes.set_ylabel("bits per byte")
        axes.set_title(f"{evaluation}, {at}: fits L(N) = E + A / N^alpha, drawn to 30x the largest {over}",
                       loc="left", fontsize=FONT_SIZE + 1)
        axes.legend(frameon=False, fontsize=FONT_SIZE - 1)
        axes.tick_params(labelsize=FONT_SIZE)
        _tidy(axes)
    return figure


def _scaling_table(scaling: pd.DataFrame) -> str:
    if scaling.empty:
        return ""
    return _table(scaling.rename(columns={"parts_from_baseline_at": "parts from baseline at N"}),
                  {"irreducible": ".4f", "scale": ".3g", "exponent": ".3f", "margin": ".4f",
                   "parts from baseline at N": ".3g"})
