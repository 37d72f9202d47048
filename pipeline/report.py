"""`pipeline report RUN_DIR`: one self-contained HTML file that shows a run at a glance.

The funnel, why documents were dropped, every signal's histogram against its threshold line with the share its
rule removed, languages, top domains, duplicate cluster sizes, tokens per shard, the training curve and documents/s
per stage. Plots are PNGs embedded as data: URIs and the styles are inline, so the file opens anywhere offline and
can be mailed or attached to a ticket.

Every number comes from `pipeline.inspect` (the run's own counters and Parquet parts); the figure functions are
public so that notebooks draw the same plots: `report.signal_figures(run)`, `report.funnel_figure(run)`, ...
Figures are made with matplotlib's object API (no pyplot), so building a report never touches a notebook's
backend and needs no display.
"""

from __future__ import annotations

import base64
import html
import io
import math
import time

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from pipeline.inspect import Run, load_run
from pipeline.io.atomic import atomic_write_bytes
from pipeline.io.storage import StoragePath, storage_path
from pipeline.schema import DROP_REASON

# Colours of the plots. The page's own styles use none of them, so a screenshot shows whether the plots rendered.
KEPT = "#3b7dd8"
DROPPED = "#e4572e"
FAILED = "#7b52ab"
VALIDATION = "#f2a541"
THRESHOLD = "#1b1b1b"
SIGNALS_PER_ROW = 4
DEFAULT_TOP = 20
REPORT_FILE = "report.html"


# ----------------------------------------------------------------------------------------------------- figures
def funnel_figure(run: Run) -> Figure:
    """Documents into each stage, split into kept, dropped and failed, with the kept share written on each bar."""
    funnel = run.funnel()
    figure, axes = _plot(0.42 * len(funnel) + 1.2)
    rows = np.arange(len(funnel))[::-1]
    axes.barh(rows, funnel["kept"], color=KEPT, label="kept")
    axes.barh(rows, funnel["dropped"], left=funnel["kept"], color=DROPPED, label="dropped")
    axes.barh(rows, funnel["failed"], left=funnel["kept"] + funnel["dropped"], color=FAILED, label="failed")
    for row, (_, stage) in zip(rows, funnel.iterrows()):
        share = f"{stage['kept_share']:.1%} kept" if stage["rows_in"] else "no input"
        axes.text(stage["rows_in"], row, f"  {stage['rows_in']:,} in, {share}", va="center", fontsize=8)
    axes.set_yticks(rows, funnel["stage"])
    axes.set_xlabel("documents (records for read)")
    axes.set_xlim(0, max(1, funnel["rows_in"].max()) * 1.35)
    axes.legend(loc="lower right", frameon=False)
    axes.set_title("Funnel: what each stage received and kept", loc="left")
    _tidy(axes)
    return figure


def speed_figure(run: Run) -> Figure:
    """Documents per second of each stage (per worker second for the per-document stages), on a log axis."""
    funnel = run.funnel()
    funnel = funnel[funnel["seconds"] > 0]
    figure, axes = _plot(0.36 * max(len(funnel), 1) + 1.2)
    rows = np.arange(len(funnel))[::-1]
    axes.barh(rows, funnel["docs_per_s"], color=KEPT)
    for row, (_, stage) in zip(rows, funnel.iterrows()):
        axes.text(stage["docs_per_s"], row, f"  {stage['docs_per_s']:,.0f}/s, {stage['seconds']:,.1f} s",
                  va="center", fontsize=8)
    axes.set_yticks(rows, funnel["stage"])
    axes.set_xscale("log")
    if len(funnel):
        axes.set_xlim(right=funnel["docs_per_s"].max() * 30)
    axes.set_xlabel("documents per second (log scale)")
    axes.set_title("Speed: documents per second of stage time", loc="left")
    _tidy(axes)
    return figure


def signal_figures(run: Run, max_rows: int = 200_000) -> list[tuple[str, Figure]]:
    """Per stage, a grid of histograms, one per numeric signal its documents got: the documents its own rule
    dropped in red, the others in blue, the configured limit as a dashed line, and in the title the share of the
    stage's input the rule removed (from the run's counters, so it holds for sampled runs too)."""
    signals = run.signals(max_rows=max_rows)
    columns = [c for c in run.signal_columns() if c in signals and signals[c].notna().any()]
    reasons = run.reasons()
    rows_in = run.funnel().set_index("stage")["rows_in"]
    figures = []
    for stage, stage_columns in _columns_by_stage(run, columns).items():
        decisions = _decisions_by_signal(run, stage)
        count = len(stage_columns)
        ncols = min(SIGNALS_PER_ROW, count)
        nrows = math.ceil(count / ncols)
        figure = Figure(figsize=(3.1 * ncols + 0.4, 2.5 * nrows + 0.5), layout="constrained")
        figure.suptitle(f"{stage}: {int(rows_in.get(stage, 0)):,} documents in", x=0.01, ha="left", fontsize=11)
        stage_reasons = reasons[reasons["stage"] == stage]
        for index, column in enumerate(stage_columns):
            axes = figure.add_subplot(nrows, ncols, index + 1)
            _signal_histogram(axes, signals, column, stage, decisions.get(column, []), stage_reasons,
                              int(rows_in.get(stage, 0)))
        figures.append((stage, figure))
    return figures


def languages_figure(run: Run, top: int = DEFAULT_TOP) -> Figure | None:
    """Documents per language (kept at the end of the per-document stages, and dropped), the `top` languages."""
    return _kept_dropped_bars(run.languages().head(top), "lang", f"Languages (top {top})")


def domains_figure(run: Run, top: int = DEFAULT_TOP) -> Figure | None:
    """The `top` registered domains by kept documents, with their dropped documents."""
    return _kept_dropped_bars(run.domains(top), "domain", f"Top {top} domains by kept documents")


def cluster_sizes_figure(run: Run) -> Figure | None:
    """How many duplicate clusters there are of each size (the kept document included)."""
    sizes = run.cluster_sizes()
    if sizes.empty:
        return None
    figure, axes = _plot(3.2)
    axes.bar(sizes["size"].astype(str), sizes["clusters"], color=DROPPED)
    axes.set_xlabel("documents in the cluster (one kept, the rest removed)")
    axes.set_ylabel("clusters")
    if sizes["clusters"].max() > 50 * max(sizes["clusters"].min(), 1):
        axes.set_yscale("log")
    removed = int(((sizes["size"] - 1) * sizes["clusters"]).sum())
    axes.set_title(f"Duplicate clusters: {int(sizes['clusters'].sum()):,} clusters, {removed:,} documents removed",
                   loc="left")
    _tidy(axes)
    return figure


def shards_figure(run: Run) -> Figure | None:
    """Tokens in each shard, coloured by split."""
    shards = run.shards()
    if shards.empty:
        return None
    figure, axes = _plot(3.2)
    colours = shards["split"].map({"train": KEPT}).fillna(VALIDATION)
    axes.bar(np.arange(len(shards)), shards["tokens"], color=colours)
    if len(shards) <= 24:
        axes.set_xticks(np.arange(len(shards)), shards["name"], rotation=45, ha="right", fontsize=8)
    else:
        axes.set_xlabel("shard")
    axes.set_ylabel("tokens")
    axes.legend(handles=[Patch(color=colour, label=f"{split}: {int(shards.loc[shards['split'] == split, 'tokens'].sum()):,}")
                         for split, colour in (("train", KEPT), ("validation", VALIDATION))], frameon=False)
    axes.set_title(f"Token shards: {int(shards['tokens'].sum()):,} tokens in {len(shards)} shards", loc="left")
    _tidy(axes)
    return figure


def training_figure(run: Run) -> Figure | None:
    """The training loss per step and the validation loss at each evaluation."""
    log = run.training()
    if log.empty:
        return None
    figure, axes = _plot(3.2)
    axes.plot(log["step"], log["loss"], color=KEPT, linewidth=1, label="train loss")
    if "val_loss" in log:
        evaluated = log[log["val_loss"].notna()]
        axes.plot(evaluated["step"], evaluated["val_loss"], "o-", color=VALIDATION, label="validation loss")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.legend(frameon=False)
    axes.set_title("Training", loc="left")
    _tidy(axes)
    return figure


# ------------------------------------------------------------------------------------------------------ report
def write_report(run_path: str | StoragePath, output: str | StoragePath | None = None,
                 max_rows: int = 200_000) -> StoragePath:
    """Write the run's report (default `<run>/report.html`, written atomically) and return where it went."""
    run = load_run(run_path)
    target = storage_path(str(output)) if output is not None else run.run_dir.root / REPORT_FILE
    atomic_write_bytes(target, render_report(run, max_rows=max_rows).encode("utf-8"))
    return target


def render_report(run: Run, max_rows: int = 200_000) -> str:
    """The report as one HTML string."""
    summary = run.summary
    funnel = run.funnel()
    shards = run.shards()
    training = run.training()
    sections = [
        _section("Funnel", _image(funnel_figure(run), "funnel"), _funnel_table(funnel)),
        _section("Why documents were dropped", _reasons_table(run)),
        _section("Signals against their thresholds",
                 "<p>One histogram per signal, over the documents that reached its stage"
                 f"{'' if run.parquet_paths()['rejects'] else ' and were kept (the run did not keep rejects)'}. "
                 "Red: the documents this signal's rule dropped; blue: the others. The dashed line is the configured "
                 "limit; the title gives the share of the stage's input the rule removed.</p>",
                 *(_image(figure, f"signals of {stage}") for stage, figure in signal_figures(run, max_rows))),
        _section("Languages", _image(languages_figure(run), "languages")),
        _section("Domains", _image(domains_figure(run), "domains")),
        _section("Duplicates", _image(cluster_sizes_figure(run), "duplicate cluster sizes"), _clusters_table(run)),
        _section("Tokens", _image(shards_figure(run), "tokens per shard")),
        _section("Training", _image(training_figure(run), "training loss")),
        _section("Speed", _image(speed_figure(run), "documents per second per stage")),
        _section("Config", "<details><summary>The resolved config of the run</summary><pre>"
                 + html.escape(yaml.safe_dump(run.config, sort_keys=False)) + "</pre></details>"),
    ]
    cards = [("records read", f"{summary['records_read']:,}"), ("documents kept", f"{summary['documents']:,}")]
    if not shards.empty:
        cards.append(("tokens", f"{int(shards['tokens'].sum()):,}"))
    if not training.empty and "val_loss" in training and training["val_loss"].notna().any():
        cards.append(("validation loss", f"{training['val_loss'].dropna().iloc[-1]:.3f}"))
    cards += [("units", f"{summary['units']:,}" + (f" ({summary['units_resumed']} resumed)"
                                                    if summary.get("units_resumed") else "")),
              ("wall time", f"{summary.get('wall_seconds', 0):,.1f} s")]
    if summary.get("failed_units"):
        cards.append(("failed units", f"{len(summary['failed_units']):,}"))
    problems = "".join(f"<p class='warn'>accounting: {html.escape(str(p))}</p>"
                       for p in summary.get("accounting_problems", []))
    header = (f"<h1>Run report: {html.escape(str(summary.get('name', '')))}</h1>"
              f"<p class='muted'>{html.escape(str(run.run_dir.root))} · made {time.strftime('%Y-%m-%d %H:%M')}</p>"
              "<div class='cards'>" + "".join(f"<div class='card'><b>{value}</b><span>{label}</span></div>"
                                              for label, value in cards) + "</div>" + problems)
    return _PAGE.format(title=html.escape(f"{summary.get('name', 'run')}: run report"),
                        body=header + "".join(s for s in sections if s))


# ----------------------------------------------------------------------------------------------------- helpers
def _columns_by_stage(run: Run, columns: list[str]) -> dict[str, list[str]]:
    """Signal columns grouped by the configured stage that wrote them, in stage order: a column belongs to the
    stage whose decisions name it, else to the stage its name starts with."""
    stages = [next(iter(entry)) if isinstance(entry, dict) else entry for entry in run.config.get("stages", [])]
    owners = {}
    for stage in stages:
        for signal in _decisions_by_signal(run, stage):
            owners.setdefault(signal, stage)
    grouped: dict[str, list[str]] = {}
    for column in columns:
        owner = owners.get(column) or next((s for s in sorted(stages, key=len, reverse=True)
                                            if column.startswith(f"{s}_")), "other signals")
        grouped.setdefault(owner, []).append(column)
    order = {stage: index for index, stage in enumerate(stages)}
    return dict(sorted(grouped.items(), key=lambda item: order.get(item[0], len(order))))


def _decisions_by_signal(run: Run, stage: str) -> dict[str, list]:
    from stages import STAGES

    settings = next((entry[stage] for entry in run.config.get("stages", [])
                     if isinstance(entry, dict) and stage in entry), {}) or {}
    stage_class = STAGES.get(stage)
    found: dict[str, list] = {}
    for decision in stage_class.thresholds(settings) if stage_class is not None else []:
        found.setdefault(decision.signal, []).append(decision)
    return found


def _signal_histogram(axes, signals: pd.DataFrame, column: str, stage: str, decisions: list,
                      stage_reasons: pd.DataFrame, stage_rows_in: int) -> None:
    values = signals[column].astype(float)
    reached = values.notna()
    rule_reasons = {decision.reason for decision in decisions}
    dropped_here = reached & (signals["stage"] == stage) & signals[DROP_REASON].isin(rule_reasons)
    data = values[reached].to_numpy()
    low, high = float(data.min()), float(data.max())
    if low == high and not decisions:  # nothing to draw a distribution of
        axes.text(0.5, 0.5, f"all {len(data):,} documents: {low:g}", ha="center", va="center",
                  transform=axes.transAxes, fontsize=9)
        axes.set_axis_off()
        axes.set_title(f"{column.removeprefix(f'{stage}_')}\nno threshold\n ", fontsize=8, loc="left")
        return
    # A long tail squeezes everything into one bar: cut the axis at the 99.5th percentile, count the rest there.
    p995 = float(np.percentile(data, 99.5))
    clipped = high > p995 and high - low > 20 * max(p995 - low, 1e-12)
    if clipped:
        high = p995
    off_axis = []
    for decision in decisions:  # a limit far from every value would squeeze the data: say it is off the axis
        span = high - low
        if span == 0 or low - 3 * span <= decision.limit <= high + 3 * span:
            low, high = min(low, decision.limit), max(high, decision.limit)
        else:
            off_axis.append(decision)
    limits = [d.limit for d in decisions if d not in off_axis]
    integer = bool(np.all(np.mod(data, 1) == 0)) and all(limit % 1 == 0 for limit in limits) and high - low <= 60
    if integer:
        bins = np.arange(math.floor(low), math.ceil(high) + 2) - 0.5
    elif low == high:
        bins = np.linspace(low - 0.5, high + 0.5, 31)
    else:
        bins = np.linspace(low, high, 31)
    others = np.clip(values[reached & ~dropped_here].to_numpy(), bins[0], bins[-1])
    removed = np.clip(values[dropped_here].to_numpy(), bins[0], bins[-1])
    axes.hist([others, removed], bins=bins, stacked=True, color=[KEPT, DROPPED], label=["others", "dropped by rule"])
    pad = 0.03 * (bins[-1] - bins[0])
    axes.set_xlim(bins[0] - pad, bins[-1] + pad)  # a limit at the edge of the data stays visible
    for decision in decisions:
        if decision not in off_axis:
            axes.axvline(decision.limit, color=THRESHOLD, linestyle="--", linewidth=1.2)
    removed_count = int(stage_reasons.loc[stage_reasons["reason"].isin(rule_reasons), "count"].sum())
    name = column.removeprefix(f"{stage}_")
    if decisions:
        rules = ", ".join(f"{d.drop_when} {d.limit:g}" + (" (off axis)" if d in off_axis else "") for d in decisions)
        share = removed_count / stage_rows_in if stage_rows_in else 0.0
        subtitle = f"drop {rules}\n{removed_count:,} removed ({share:.1%})"
    else:
        subtitle = "no threshold\n "
    axes.set_title(f"{name}\n{subtitle}", fontsize=8, loc="left")
    if clipped:
        axes.set_xlabel(f"values over {high:.3g} in the last bar", fontsize=7)
    axes.tick_params(labelsize=7)
    _tidy(axes)


def _kept_dropped_bars(frame: pd.DataFrame, column: str, title: str) -> Figure | None:
    if frame.empty:
        return None
    figure, axes = _plot(0.3 * len(frame) + 1.2)
    rows = np.arange(len(frame))[::-1]
    axes.barh(rows, frame["kept"], color=KEPT, label="kept")
    axes.barh(rows, frame["dropped"], left=frame["kept"], color=DROPPED, label="dropped")
    # The labels are crawled text (hostnames): drawn as written, never as matplotlib math between "$" signs.
    axes.set_yticks(rows, frame[column].astype(str), fontsize=8, parse_math=False)
    axes.set_xlabel("documents")
    axes.legend(loc="lower right", frameon=False)
    axes.set_title(title, loc="left")
    _tidy(axes)
    return figure


def _plot(height: float) -> tuple[Figure, object]:
    """A report-wide figure with one axes."""
    figure = Figure(figsize=(9, height), layout="constrained")
    return figure, figure.add_subplot()


def _tidy(axes) -> None:
    axes.spines[["top", "right"]].set_visible(False)


def _image(figure: Figure | None, alt: str) -> str:
    """The figure as an embedded PNG (empty when there is nothing to plot)."""
    if figure is None:
        return ""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<figure><img class='plot' alt='{html.escape(alt)}' src='data:image/png;base64,{encoded}'></figure>"


def _section(title: str, *parts: str) -> str:
    body = "".join(parts)
    return f"<section><h2>{html.escape(title)}</h2>{body}</section>" if body.strip() else ""


def _table(frame: pd.DataFrame, formats: dict[str, str] | None = None) -> str:
    formats = formats or {}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for column in frame.columns:
            value = row[column]
            text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else (
                format(value, formats[column]) if column in formats else str(value))
            numeric = isinstance(value, (int, float, np.integer, np.floating))
            cells.append(f"<td{' class=num' if numeric else ''}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _funnel_table(funnel: pd.DataFrame) -> str:
    shown = funnel[["stage", "rows_in", "kept", "dropped", "failed", "kept_share", "seconds", "docs_per_s"]]
    return _table(shown.rename(columns={"rows_in": "in", "kept_share": "kept %", "docs_per_s": "docs/s"}),
                  {"in": ",", "kept": ",", "dropped": ",", "failed": ",", "kept %": ".1%", "seconds": ",.2f",
                   "docs/s": ",.0f"})


def _reasons_table(run: Run, examples_per_reason: int = 2) -> str:
    reasons = run.reasons()
    if reasons.empty:
        return "<p>Nothing was dropped.</p>"
    examples = run.examples()
    shown = []
    for _, row in reasons.iterrows():
        chosen = (examples[(examples["stage"] == row["stage"]) & (examples["reason"] == row["reason"])]
                  if not examples.empty else examples)
        lines = [" ".join(str(example[key]) for key in ("url", "detail") if key in example and pd.notna(example[key]))
                 for _, example in chosen.head(examples_per_reason).iterrows()]
        shown.append({"stage": row["stage"], "outcome": row["outcome"], "reason": row["reason"],
                      "count": int(row["count"]), "share of stage input": row["share"],
                      "examples": " · ".join(line for line in lines if line)})
    return _table(pd.DataFrame(shown), {"count": ",", "share of stage input": ".1%"})


def _clusters_table(run: Run, top: int = 10) -> str:
    clusters = run.clusters()
    if clusters.empty:
        return ""
    largest = clusters.sort_values("size", ascending=False).head(top)
    columns = [c for c in ("size", "kept_url", "kept_id") if c in largest]
    return f"<p>The {len(largest)} largest clusters:</p>" + _table(largest[columns])


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 0 auto;
       max-width: 1280px; padding: 16px 28px 60px; background: #fff; }}
h1 {{ font-size: 24px; margin: 8px 0 2px; }}
h2 {{ font-size: 18px; margin: 30px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }}
.muted {{ color: #666; margin-top: 0; }}
.warn {{ color: #a00; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0; }}
.card {{ border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 120px; }}
.card b {{ display: block; font-size: 20px; }}
.card span {{ color: #666; font-size: 12px; }}
figure {{ margin: 10px 0; }}
img.plot {{ max-width: 100%; height: auto; display: block; }}
table {{ border-collapse: collapse; font-size: 12px; margin: 8px 0; }}
th, td {{ border-bottom: 1px solid #eee; padding: 3px 10px; text-align: left; vertical-align: top; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
th {{ background: #f6f6f6; }}
pre {{ background: #f6f6f6; padding: 10px; overflow-x: auto; font-size: 12px; }}
</style></head>
<body>{body}
<script>
// Marks how many plots decoded, for checks in headless browsers; the page needs no script to show.
addEventListener("load", () => {{
  const plots = [...document.querySelectorAll("img.plot")];
  document.body.dataset.plots = plots.length;
  document.body.dataset.plotsRendered = plots.filter(p => p.complete && p.naturalWidth > 0).length;
}});
</script>
</body></html>
"""
