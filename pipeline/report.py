"""`pipeline report RUN_DIR`: one self-contained HTML file that shows a run at a glance.

The funnel, why documents were dropped, every signal's histogram against its threshold line (each document coloured
by what its stage did to it), languages, top domains, duplicate cluster sizes, tokens per shard, the training curve
and the time of each stage with a throughput in the stage's own unit. Plots are PNGs embedded as data: URIs and the
styles are inline, so the file opens anywhere offline and can be mailed or attached to a ticket.

Every number comes from `pipeline.inspect` (the run's own counters and Parquet parts); the figure functions are
public so that notebooks draw the same plots: `report.signal_figures(run)`, `report.funnel_figure(run)`, ...
Figures are made with matplotlib's object API (no pyplot), so building a report never touches a notebook's
backend and needs no display. The signal grids are laid out by hand (fixed inches per panel) rather than by a
layout engine: they are most of the report's plots, and measuring every label to place them is most of the cost.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from pipeline.inspect import DEFAULT_SAMPLE_ROWS, Run, load_run
from pipeline.io.atomic import atomic_write_bytes
from pipeline.io.storage import StoragePath, storage_path
from pipeline.schema import DROP_REASON
from pipeline.stats import READ_STAGE
from stages import STAGES, GlobalStage

# Colours of the plots. The page's own styles use none of them, so a screenshot shows whether the plots rendered.
KEPT = "#3b7dd8"
DROPPED = "#e4572e"
OTHER_RULE = "#a3a9b1"
FAILED = "#7b52ab"
VALIDATION = "#f2a541"
THRESHOLD = "#1b1b1b"
SIGNALS_PER_ROW = 4
DEFAULT_TOP = 20
REPORT_FILE = "report.html"

# Sizes. At DPI one figure inch is one CSS inch, and no plot is wider than the page's column (1,224 px), so the
# browser shows every plot at its own size and FONT_SIZE points are FONT_SIZE * 4/3 pixels on screen.
DPI = 96
FONT_SIZE = 9
WIDE = 12.5
NARROW = 9.0
# Inches: a bar chart of one or two rows still has room for its title, bars and legend.
MIN_BARS_HEIGHT = 2.4

# What a stage did to a document that has a value of one of its signals, seen from that signal's rule.
BY_RULE = "removed by this rule"
BY_OTHER_RULE = "removed by another rule of the stage"
PASSED = "passed the stage"
OUTCOME_COLOURS = {PASSED: KEPT, BY_OTHER_RULE: OTHER_RULE, BY_RULE: DROPPED}

# How inspect's value counts name documents without a value (a language for those dropped before langid).
NO_VALUE = "(none)"

Log = Callable[[str], None]


# ------------------------------------------------------------------------------------------------ signal panels
@dataclass
class SignalPanel:
    """One signal of one stage: its values over the documents that reached the stage (as sampled), what the stage
    did to each of them, the rules that decide on it, and what those rules and the stage's others removed (from the
    run's counters, so the numbers hold for sampled runs too)."""

    stage: str
    column: str
    values: np.ndarray
    outcomes: np.ndarray
    decisions: list
    removed: int
    removed_by_others: int
    rows_in: int

    @property
    def name(self) -> str:
        return self.column.removeprefix(f"{self.stage}_")

    @property
    def constant(self) -> bool:
        """Every document has the same value: a sentence says it better than a plot."""
        return bool(self.values.min() == self.values.max())

    @property
    def integer(self) -> bool:
        """A count (every value whole): one bin per integer, integer ticks."""
        return bool(np.all(np.mod(self.values, 1) == 0))

    def rules_text(self, off_axis: tuple = ()) -> str:
        """The rules on this signal ("drop above 0.3"), those whose limit is not on the plot's axis marked."""
        return "drop " + ", ".join(f"{d.drop_when} {d.limit:g}" + (" (off axis)" if d in off_axis else "")
                                   for d in self.decisions) if self.decisions else "no threshold"

    def removed_text(self) -> str:
        """What the rule removed and its share of the stage's input, then what the stage's other rules did."""
        text = f"{self.removed:,} removed ({self.removed / self.rows_in if self.rows_in else 0.0:.1%})" \
            if self.decisions else ""
        if self.removed_by_others:
            text += f"{', ' if text else ''}{self.removed_by_others:,} by other rules"
        return text


def rule_outcomes(signals: pd.DataFrame, stage: str, reasons: set[str]) -> pd.Series:
    """What `stage` did to each document of `signals` (run.signals()), seen from the rule that drops for `reasons`:
    BY_RULE when that is the document's drop reason; BY_OTHER_RULE when the stage dropped it (or failed on it) for
    another reason: a stage names the first rule that fails, so a document an earlier rule took never counts against
    a later one, though its value may be far past the later rule's limit too; PASSED when the stage kept it (a later
    stage may still have dropped it)."""
    at_stage = (signals["stage"] == stage).to_numpy()
    by_rule = at_stage & signals[DROP_REASON].isin(reasons).to_numpy()
    return pd.Series(np.select([by_rule, at_stage], [BY_RULE, BY_OTHER_RULE], PASSED), index=signals.index)


def signal_panels(run: Run, max_rows: int = DEFAULT_SAMPLE_ROWS) -> list[SignalPanel]:
    """One panel per numeric signal that has values, grouped by stage in the stage order of the config."""
    signals = run.signals(max_rows=max_rows)
    columns = [c for c in run.signal_columns() if c in signals and signals[c].notna().any()]
    reasons = run.reasons()
    rows_in = run.funnel().set_index("stage")["rows_in"]
    panels = []
    for stage, stage_columns in _columns_by_stage(run, columns).items():
        decisions = _decisions_by_signal(run, stage)
        counts = reasons[reasons["stage"] == stage].groupby("reason")["count"].sum()
        for column in stage_columns:
            rule_reasons = {decision.reason for decision in decisions.get(column, [])}
            reached = signals[signals[column].notna()]
            removed = int(counts[counts.index.isin(rule_reasons)].sum())
            panels.append(SignalPanel(stage, column, reached[column].to_numpy(dtype=float),
                                      rule_outcomes(reached, stage, rule_reasons).to_numpy(),
                                      decisions.get(column, []), removed, int(counts.sum()) - removed,
                                      int(rows_in.get(stage, 0))))
    return panels


def signal_figures(run: Run, max_rows: int = DEFAULT_SAMPLE_ROWS,
                   panels: list[SignalPanel] | None = None) -> list[tuple[str, Figure]]:
    """Per stage, a grid of histograms, one per signal whose values differ (`constant_signals` lists the others):
    documents coloured by what the stage did to them (passed; removed by another of its rules; removed by this
    signal's rule), the configured limit as a dashed line on top with its value beside it, and in the title the
    rule and what it removed."""
    panels = signal_panels(run, max_rows) if panels is None else panels
    return [(stage, _stage_figure(stage, varying)) for stage, varying in _by_stage(panels, constant=False).items()]


def constant_signals(panels: list[SignalPanel]) -> dict[str, list[SignalPanel]]:
    """Per stage, the signals with the same value for every document, which the report lists instead of plotting."""
    return _by_stage(panels, constant=True)


def _by_stage(panels: list[SignalPanel], constant: bool) -> dict[str, list[SignalPanel]]:
    grouped: dict[str, list[SignalPanel]] = {}
    for panel in panels:
        if panel.constant == constant:
            grouped.setdefault(panel.stage, []).append(panel)
    return grouped


def _stage_figure(stage: str, panels: list[SignalPanel]) -> Figure:
    """A stage's histograms in a grid of fixed-size panels, with one legend: in a row above a grid of three or
    more columns, beside a narrower one."""
    column_width, row_height, legend_width = WIDE / SIGNALS_PER_ROW, 2.75, 3.0
    ncols = min(SIGNALS_PER_ROW, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    beside = ncols < 3
    header = 0.4 if beside else 0.75
    width, height = ncols * column_width + (legend_width if beside else 0), header + nrows * row_height
    figure = Figure(figsize=(width, height), dpi=DPI)
    removed = panels[0].removed + panels[0].removed_by_others
    figure.text(0.08 / width, 1 - 0.08 / height, f"{stage}: {panels[0].rows_in:,} documents in, {removed:,} removed",
                va="top", fontsize=FONT_SIZE + 2)
    handles = [Patch(color=colour, label=outcome) for outcome, colour in OUTCOME_COLOURS.items()]
    handles.append(Line2D([], [], color=THRESHOLD, linestyle="--", label="threshold (value beside it)"))
    anchor = (ncols * column_width, height - header - 0.3) if beside else (0.02, height - 0.32)
    figure.legend(handles=handles, loc="upper left", bbox_to_anchor=(anchor[0] / width, anchor[1] / height),
                  ncols=1 if beside else 4, frameon=False, fontsize=FONT_SIZE, handlelength=1.4,
                  columnspacing=1.2, borderaxespad=0)
    left, right, top, bottom = 0.75, 0.2, 0.62, 0.55  # inches around each axes: ticks and labels, title, x label
    for index, panel in enumerate(panels):
        row, column = divmod(index, ncols)
        x0 = column * column_width + left
        y0 = height - header - (row + 1) * row_height + bottom
        axes = figure.add_axes((x0 / width, y0 / height, (column_width - left - right) / width,
                                (row_height - top - bottom) / height))
        _signal_histogram(axes, panel)
    return figure


def _signal_histogram(axes, panel: SignalPanel) -> None:
    bins, on_axis, clipped_at = _bins(panel)
    values = np.clip(panel.values, bins[0], bins[-1])
    stacked = np.zeros(len(bins) - 1)
    for outcome, colour in OUTCOME_COLOURS.items():
        counts, _ = np.histogram(values[panel.outcomes == outcome], bins)
        if counts.any():
            axes.stairs(stacked + counts, bins, baseline=stacked.copy(), fill=True, color=colour, label=outcome)
        stacked += counts
    pad = 0.03 * (bins[-1] - bins[0])
    axes.set_xlim(bins[0] - pad, bins[-1] + pad)  # a limit at the edge of the data stays visible
    axes.set_ylim(0, max(stacked.max(), 1) * 1.12)  # room for the threshold's label
    for decision in on_axis:
        _threshold(axes, decision.limit, right_half=decision.limit > (bins[0] + bins[-1]) / 2)
    off_axis = tuple(d for d in panel.decisions if d not in on_axis)
    axes.set_title("\n".join([panel.name, panel.rules_text(off_axis), panel.removed_text()]), fontsize=FONT_SIZE,
                   loc="left")
    axes.set_xlabel(panel.name if clipped_at is None else f"{panel.name} (over {clipped_at:.3g}: last bar)",
                    fontsize=FONT_SIZE)
    axes.set_ylabel("documents", fontsize=FONT_SIZE)
    axes.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    axes.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=panel.integer))
    axes.tick_params(labelsize=FONT_SIZE)
    _tidy(axes)


def _bins(panel: SignalPanel) -> tuple[np.ndarray, list, float | None]:
    """Bin edges, the decisions whose limits are on the axis, and where a long tail was cut (None: it was not).

    A long tail squeezes everything into one bar, so the axis ends at the 99.5th percentile when the rest lies far
    beyond it (the last bar counts the rest). A limit far from every value would squeeze the data too: it is left
    off the axis and named in the title. Counts get one bin per integer (or per few integers, for wide ranges)."""
    low, high = float(panel.values.min()), float(panel.values.max())
    p995 = float(np.percentile(panel.values, 99.5))
    clipped_at = p995 if low < p995 < high and high - low > 20 * (p995 - low) else None
    high = p995 if clipped_at is not None else high
    on_axis = []
    for decision in panel.decisions:
        span = high - low
        if low - 3 * span <= decision.limit <= high + 3 * span:
            low, high = min(low, decision.limit), max(high, decision.limit)
            on_axis.append(decision)
    if not panel.integer:
        return np.linspace(low, high, 31), on_axis, clipped_at
    step = max(1, math.ceil((high - low) / 40))
    return np.arange(math.floor(low), math.ceil(high) + step + 1, step) - 0.5, on_axis, clipped_at


def _threshold(axes, limit: float, right_half: bool) -> None:
    """A limit as a dashed line drawn over the bars, its value written beside it (inside the axes)."""
    axes.axvline(limit, color=THRESHOLD, linestyle="--", linewidth=1.2, zorder=5)
    axes.annotate(f"{limit:g}", xy=(limit, 1), xycoords=("data", "axes fraction"),
                  xytext=(-3 if right_half else 3, -1), textcoords="offset points",
                  ha="right" if right_half else "left", va="top", fontsize=FONT_SIZE, zorder=6,
                  bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})


def _signal_parts(run: Run, panels: list[SignalPanel]) -> list[str]:
    """Per stage in order: its histograms as one image, then the line that lists its constant signals."""
    figures = dict(signal_figures(run, panels=panels))
    constants = constant_signals(panels)
    parts = []
    for stage in dict.fromkeys(panel.stage for panel in panels):
        parts.append(_image(figures.get(stage), f"signals of {stage}"))
        if stage in constants:
            parts.append(_constants_html(stage, constants[stage]))
    return parts


def _constants_html(stage: str, panels: list[SignalPanel]) -> str:
    """One line for a stage's signals that had one value for every document."""
    items = [f"{panel.name} = {panel.values[0]:g}"
             + (f" ({panel.rules_text()}: {panel.removed:,} removed)" if panel.decisions else "") for panel in panels]
    return (f"<p class='constants'><b>{html.escape(stage)}</b>, the same for all {len(panels[0].values):,} "
            f"documents (not plotted): {html.escape('; '.join(items))}</p>")


# ------------------------------------------------------------------------------------------------ other figures
def funnel_figure(run: Run) -> Figure:
    """Documents into each stage, split into kept, dropped and failed, with the kept share written on each bar."""
    funnel = run.funnel()
    figure, axes = _plot(0.42 * len(funnel) + 1.3)
    rows = np.arange(len(funnel))[::-1]
    axes.barh(rows, funnel["kept"], color=KEPT, label="kept")
    axes.barh(rows, funnel["dropped"], left=funnel["kept"], color=DROPPED, label="dropped")
    axes.barh(rows, funnel["failed"], left=funnel["kept"] + funnel["dropped"], color=FAILED, label="failed")
    for row, (_, stage) in zip(rows, funnel.iterrows()):
        share = f"{stage['kept_share']:.1%} kept" if stage["rows_in"] else "no input"
        axes.text(stage["rows_in"], row, f"  {stage['rows_in']:,} in, {share}", va="center", fontsize=FONT_SIZE)
    axes.set_yticks(rows, funnel["stage"])
    axes.set_ylabel("stage")
    axes.set_xlabel("documents (records for read)")
    axes.set_xlim(0, max(1, funnel["rows_in"].max()) * 1.4)
    axes.legend(loc="lower right", frameon=False)
    axes.set_title("Funnel: what each stage received and kept", loc="left")
    _tidy(axes)
    return figure


def stage_speeds(run: Run) -> pd.DataFrame:
    """Per stage that took time: seconds, their clock ("worker": summed over the workers of a per-document stage;
    "wall": a global stage's own time) and what the stage did per second in its own unit: documents per worker
    second for the per-document stages, tokens for tokenize, steps for train; the other global stages say what they
    handled, as their time is mostly fixed costs on a small run."""
    rows = []
    for _, stage in run.funnel().iterrows():
        if stage["seconds"] <= 0:
            continue
        if _is_global(stage["stage"]):
            clock, throughput = "wall", _GLOBAL_THROUGHPUT.get(stage["stage"], _documents_handled)(run, stage)
        else:
            unit = "records" if stage["stage"] == READ_STAGE else "documents"
            clock, throughput = "worker", f"{stage['docs_per_s']:,.0f} {unit}/s per worker"
        rows.append({"stage": stage["stage"], "seconds": float(stage["seconds"]), "clock": clock,
                     "throughput": throughput})
    return pd.DataFrame(rows, columns=["stage", "seconds", "clock", "throughput"])


def speed_figure(run: Run) -> Figure:
    """Seconds of each stage on a log axis (worker seconds of the per-document stages, wall seconds of the global
    ones, in two colours), each with its throughput written beside the chart."""
    speeds = stage_speeds(run)
    figure, axes = _plot(0.36 * max(len(speeds), 1) + 1.6, width=WIDE)
    rows = np.arange(len(speeds))[::-1]
    colours = speeds["clock"].map({"worker": KEPT, "wall": VALIDATION})
    axes.barh(rows, speeds["seconds"], color=colours)
    for row, (_, stage) in zip(rows, speeds.iterrows()):
        axes.annotate(f"{stage['seconds']:,.2f} s · {stage['throughput']}", xy=(1, row),
                      xycoords=("axes fraction", "data"), xytext=(8, 0), textcoords="offset points",
                      va="center", fontsize=FONT_SIZE, annotation_clip=False)
    axes.set_yticks(rows, speeds["stage"])
    axes.set_ylabel("stage")
    axes.set_xscale("log")
    axes.set_xlabel("seconds (log scale)")
    figure.legend(handles=[Patch(color=KEPT, label="per-document stage: seconds summed over workers"),
                           Patch(color=VALIDATION, label="global stage: wall seconds")],
                  loc="outside lower left", ncols=2, frameon=False, fontsize=FONT_SIZE)
    axes.set_title("Time per stage, and what it did per second", loc="left")
    _tidy(axes)
    return figure


def languages_figure(run: Run, top: int = DEFAULT_TOP) -> Figure | None:
    """Documents per language langid gave them, the `top` languages: kept after the last per-document stage
    (before the global stages, e.g. dedup), and dropped by langid or a later per-document stage. Documents dropped
    before langid have no language and are left out (`languages_caption` counts them)."""
    languages = run.languages()
    labelled = languages[languages["lang"] != NO_VALUE].head(top)
    return _kept_dropped_bars(labelled, "lang", "language (langid)",
                              f"Languages of the documents that reached langid (top {top})",
                              ("kept after the per-document stages", "dropped by langid or a later stage"))


def domains_figure(run: Run, top: int = DEFAULT_TOP) -> Figure | None:
    """The registered domains with the most documents kept after the per-document stages (at most `top`, none
    with no kept document), with their documents dropped by any per-document stage."""
    domains = run.domains(top)
    domains = domains[domains["kept"] > 0]
    return _kept_dropped_bars(domains, "domain", "registered domain",
                              f"The {len(domains)} domains with the most kept documents (before the global stages)",
                              ("kept after the per-document stages", "dropped"))


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
    figure, axes = _plot(3.4)
    colours = shards["split"].map({"train": KEPT}).fillna(VALIDATION)
    axes.bar(np.arange(len(shards)), shards["tokens"], color=colours)
    if len(shards) <= 24:
        axes.set_xticks(np.arange(len(shards)), shards["name"], rotation=45, ha="right")
    axes.set_xlabel("shard")
    axes.set_ylabel("tokens")
    tokens = shards.groupby("split")["tokens"].sum()
    axes.legend(handles=[Patch(color=colour, label=f"{split}: {int(tokens.get(split, 0)):,}")
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
                 max_rows: int = DEFAULT_SAMPLE_ROWS, log: Log | None = None) -> StoragePath:
    """Write the run's report (default `<run>/report.html`, written atomically) and return where it went; `log`,
    when given, hears each step as it starts (a line of text), for a command line to show progress."""
    say = log or (lambda message: None)
    say("reading stats")
    run = load_run(run_path)
    target = storage_path(str(output)) if output is not None else run.run_dir.root / REPORT_FILE
    page = render_report(run, max_rows=max_rows, log=say)
    say(f"writing {target.name}")
    atomic_write_bytes(target, page.encode("utf-8"))
    return target


def render_report(run: Run, max_rows: int = DEFAULT_SAMPLE_ROWS, log: Log | None = None) -> str:
    """The report as one HTML string."""
    say = log or (lambda message: None)
    say("reading per-document signals")
    panels = signal_panels(run, max_rows)
    say(f"signal histograms ({sum(not panel.constant for panel in panels)})")
    signal_parts = _signal_parts(run, panels)
    say("funnel, languages, domains, duplicates, evaluation sets, tokens, training and speed")
    sections = [
        _section("Funnel", _image(funnel_figure(run), "funnel"), _funnel_table(run)),
        _section("Why documents were dropped", _reasons_table(run)),
        _section("Signals against their thresholds", _signals_intro(run, panels, max_rows), *signal_parts),
        _section("Languages", _image(languages_figure(run), "languages"), _languages_caption(run)),
        _section("Domains", _image(domains_figure(run), "domains")),
        _section("Duplicates", _image(cluster_sizes_figure(run), "duplicate cluster sizes"), _clusters_table(run)),
        _section("Evaluation sets in the data", _contamination_table(run)),
        _section("Tokens", _image(shards_figure(run), "tokens per shard")),
        _section("Training", _image(training_figure(run), "training loss")),
        _section("Speed", _image(speed_figure(run), "time and throughput per stage")),
        _section("Config", "<details><summary>The resolved config of the run</summary><pre>"
                 + html.escape(yaml.safe_dump(run.config, sort_keys=False)) + "</pre></details>"),
    ]
    return _PAGE.format(title=html.escape(f"{run.summary.get('name', 'run')}: run report"),
                        body=_header(run) + "".join(s for s in sections if s))


def _header(run: Run) -> str:
    """The title and the summary cards."""
    summary = run.summary
    shards = run.shards()
    training = run.training()
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
    return (f"<h1>Run report: {html.escape(str(summary.get('name', '')))}</h1>"
            f"<p class='muted'>{html.escape(str(run.run_dir.root))} · made {time.strftime('%Y-%m-%d %H:%M')}</p>"
            "<div class='cards'>" + "".join(f"<div class='card'><b>{value}</b><span>{label}</span></div>"
                                            for label, value in cards) + "</div>" + problems)


# ----------------------------------------------------------------------------------------------------- helpers
def _columns_by_stage(run: Run, columns: list[str]) -> dict[str, list[str]]:
    """Signal columns grouped by the configured stage that wrote them, in stage order: a column belongs to the
    stage whose decisions name it, else to the stage that lists it among its output fields, else to the stage its
    name starts with."""
    stages = _configured_stages(run)
    owners = {}
    for stage in stages:
        for signal in _decisions_by_signal(run, stage):
            owners.setdefault(signal, stage)
    for stage in stages:
        for field in getattr(STAGES.get(stage), "output_fields", ()):
            owners.setdefault(field.name, stage)
    grouped: dict[str, list[str]] = {}
    for column in columns:
        owner = owners.get(column) or next((s for s in sorted(stages, key=len, reverse=True)
                                            if column.startswith(f"{s}_")), "other signals")
        grouped.setdefault(owner, []).append(column)
    order = {stage: index for index, stage in enumerate(stages)}
    return dict(sorted(grouped.items(), key=lambda item: order.get(item[0], len(order))))


def _configured_stages(run: Run) -> list[str]:
    return [next(iter(entry)) if isinstance(entry, dict) else entry for entry in run.config.get("stages", [])]


def _decisions_by_signal(run: Run, stage: str) -> dict[str, list]:
    settings = next((entry[stage] for entry in run.config.get("stages", [])
                     if isinstance(entry, dict) and stage in entry), {}) or {}
    stage_class = STAGES.get(stage)
    found: dict[str, list] = {}
    for decision in stage_class.thresholds(settings) if stage_class is not None else []:
        found.setdefault(decision.signal, []).append(decision)
    return found


def _is_global(stage: str) -> bool:
    stage_class = STAGES.get(stage)
    return stage_class is not None and issubclass(stage_class, GlobalStage)


def _documents_handled(run: Run, stage: pd.Series) -> str:
    return f"{int(stage['rows_in']):,} documents"


def _tokenizer_sample(run: Run, stage: pd.Series) -> str:
    marker = run.run_dir.tokenizer / "_done.json"
    if not marker.exists():
        return _documents_handled(run, stage)
    done = json.loads(marker.read_text())
    return (f"trained on {done.get('sample_characters', 0):,} characters "
            f"of {done.get('sample_documents', 0):,} documents")


def _tokens_per_second(run: Run, stage: pd.Series) -> str:
    tokens = int(run.shards()["tokens"].sum())
    if not tokens:
        return _documents_handled(run, stage)
    return f"{tokens / stage['seconds']:,.0f} tokens/s ({tokens:,} tokens)"


def _steps_per_second(run: Run, stage: pd.Series) -> str:
    """Steps per wall second (evaluations and start-up included), and the trainer's own tokens/s while stepping."""
    log = run.training()
    if log.empty:
        return _documents_handled(run, stage)
    text = f"{log['step'].max() / stage['seconds']:,.1f} steps/s ({int(log['step'].max()):,} steps)"
    if "tokens_per_s" in log:
        text += f", {log['tokens_per_s'].median():,.0f} tokens/s stepping"
    return text


# What each global stage did per second (or handled), in its own unit; the others say how many documents they saw.
_GLOBAL_THROUGHPUT: dict[str, Callable[[Run, pd.Series], str]] = {
    "tokenizer": _tokenizer_sample,
    "tokenize": _tokens_per_second,
    "train": _steps_per_second,
}


def _kept_dropped_bars(frame: pd.DataFrame, column: str, ylabel: str, title: str,
                       labels: tuple[str, str]) -> Figure | None:
    if frame.empty:
        return None
    figure, axes = _plot(max(0.3 * len(frame) + 1.4, MIN_BARS_HEIGHT))
    rows = np.arange(len(frame))[::-1]
    axes.barh(rows, frame["kept"], color=KEPT, label=f"{labels[0]}: {int(frame['kept'].sum()):,}")
    axes.barh(rows, frame["dropped"], left=frame["kept"], color=DROPPED,
              label=f"{labels[1]}: {int(frame['dropped'].sum()):,}")
    # The labels are crawled text (hostnames): drawn as written, never as matplotlib math between "$" signs.
    axes.set_yticks(rows, frame[column].astype(str), parse_math=False)
    axes.set_ylabel(ylabel)
    axes.set_xlabel("documents")
    axes.legend(loc="lower right", frameon=False)
    axes.set_title(title, loc="left")
    _tidy(axes)
    return figure


def _plot(height: float, width: float = NARROW) -> tuple[Figure, object]:
    """A figure with one axes, laid out by matplotlib: its labels (stage names, hostnames) vary in length."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    axes.tick_params(labelsize=FONT_SIZE)
    return figure, axes


def _tidy(axes) -> None:
    axes.spines[["top", "right"]].set_visible(False)


def _image(figure: Figure | None, alt: str) -> str:
    """The figure as an embedded PNG, one figure inch to one CSS inch (empty when there is nothing to plot)."""
    if figure is None:
        return ""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
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


def _funnel_table(run: Run) -> str:
    """The funnel's counts, each stage's seconds with their clock, and its throughput in its own unit."""
    funnel = run.funnel()[["stage", "rows_in", "kept", "dropped", "failed", "kept_share", "seconds"]]
    speeds = stage_speeds(run).set_index("stage")
    shown = funnel.assign(clock=funnel["stage"].map(speeds["clock"]),
                          throughput=funnel["stage"].map(speeds["throughput"]))
    table = _table(shown.rename(columns={"rows_in": "in", "kept_share": "kept %"}),
                   {"in": ",", "kept": ",", "dropped": ",", "failed": ",", "kept %": ".1%", "seconds": ",.2f"})
    return table + ("<p class='muted'>Seconds: summed over the workers for a per-document stage (clock: worker), "
                    "the stage's own time for a global one (clock: wall).</p>")


def _contamination_table(run: Run) -> str:
    """Per evaluation set of the decontaminate stage: items found in the run's documents, documents holding them,
    top domains (nothing when the run has no such stage)."""
    sets = run.contamination()
    if sets.empty:
        return ""
    shown = sets.assign(top_domains=sets["top_domains"].map(
        lambda domains: ", ".join(f"{entry['domain']} ({entry['documents']:,})" for entry in domains[:5])))
    action = next(((settings or {}).get("action", "drop") for stage in run.config.get("stages", [])
                   for name, settings in stage.items() if name == "decontaminate"), "drop")
    return _table(shown.rename(columns={"items_found": "found", "found_share": "found %"}),
                  {"items": ",", "found": ",", "found %": ".1%", "documents": ",", "kept": ",", "dropped": ","}) + (
        f"<p class='muted'>Items: of each evaluation set; found: those whose n-grams a document of the run holds "
        f"(action: {html.escape(str(action))}); documents: those holding any, kept (flagged or redacted) or dropped. "
        "Per item: <code>run.contaminated_items()</code>.</p>")


def _signals_intro(run: Run, panels: list[SignalPanel], max_rows: int) -> str:
    rejects = "" if run.parquet_paths()["rejects"] else \
        " <b>Removed documents are missing</b>: the run did not keep rejects (<code>rejects: true</code> keeps " \
        "them), so the histograms show the kept documents only."
    documents = max((len(panel.values) for panel in panels), default=0)
    sample = f", a sample: whole Parquet parts up to --max-rows {max_rows:,}" if documents >= max_rows else ""
    return (f"<p>One histogram per signal, over the documents that reached its stage ({documents:,} at most{sample}). "
            "Each document is coloured by what its stage did to it, seen from the panel's rule: <b>blue</b>, passed "
            "the stage (a later stage may still drop it); <b>grey</b>, removed by another rule of the stage: a stage "
            "names the first rule a document fails, so a document an earlier rule took is never counted against "
            "this one, however far past its limit it lies; <b>red</b>, removed by this rule. The dashed line is the "
            "configured threshold, with its value beside it. Titles give the rule, what it removed and its share of "
            "the stage's input, and what the stage's other rules removed (from the run's counters). Signals with one "
            f"value for every document are listed under their stage instead of plotted.{rejects}</p>")


def _languages_caption(run: Run) -> str:
    """Which documents the languages chart counts: those dropped before langid have no language, and the kept ones
    are counted before the global stages (dedup) removed theirs."""
    languages = run.languages()
    if languages.empty or (languages["lang"] == NO_VALUE).all():
        return ""
    funnel = run.funnel()
    per_document = funnel[~funnel["stage"].map(_is_global)]
    unlabelled = int(languages.loc[languages["lang"] == NO_VALUE, ["kept", "dropped"]].sum().sum())
    before = per_document.iloc[:_first_stage_writing(per_document, "lang")]
    droppers = ", ".join(f"{s['stage']} {int(s['dropped'] + s['failed']):,}" for _, s in before.iterrows()
                         if s["stage"] != READ_STAGE and s["dropped"] + s["failed"])
    kept = int(per_document["kept"].iloc[-1])
    later = int(funnel[funnel["stage"].map(_is_global)]["dropped"].sum())
    text = (f"The language is langid's label, given after extraction. {unlabelled:,} documents have none and are "
            "not shown" + (f": they were dropped before langid ({droppers})" if droppers else "") + ". "
            f"Kept means kept after the last per-document stage ({kept:,} documents)")
    if later:
        text += (f"; the global stages then removed {later:,} of them, leaving the {run.summary['documents']:,} "
                 "documents the run kept")
    return f"<p>{html.escape(text, quote=False)}.</p>"


def _first_stage_writing(stages: pd.DataFrame, column: str) -> int:
    """The position in `stages` of the first stage whose output has `column` (len(stages) when none has)."""
    return next((index for index, name in enumerate(stages["stage"])
                 if column in {field.name for field in getattr(STAGES.get(name), "output_fields", ())}),
                len(stages))


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
    clusters = run.clusters(columns=["size", "kept_url", "kept_id"])
    if clusters.empty:
        return ""
    largest = clusters.sort_values("size", ascending=False, kind="stable").head(top)
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
.constants {{ color: #444; font-size: 13px; margin: 4px 0 18px; }}
table {{ border-collapse: collapse; font-size: 12px; margin: 8px 0; }}
th, td {{ border-bottom: 1px solid #eee; padding: 3px 10px; text-align: left; vertical-align: top; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
th {{ background: #f6f6f6; }}
pre {{ background: #f6f6f6; padding: 10px; overflow-x: auto; font-size: 12px; }}
</style></head>
<body>{body}
<script>
// Marks how many plots decoded, and how many the browser had to shrink to fit (their text would be smaller than
// drawn), for checks in headless browsers; the page needs no script to show.
addEventListener("load", () => {{
  const plots = [...document.querySelectorAll("img.plot")];
  document.body.dataset.plots = plots.length;
  document.body.dataset.plotsRendered = plots.filter(p => p.complete && p.naturalWidth > 0).length;
  document.body.dataset.plotsShrunk = plots.filter(p => p.width < p.naturalWidth).length;
}});
</script>
</body></html>
"""
