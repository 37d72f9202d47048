"""`pipeline report`: one self-contained HTML file whose numbers are the run's counters, whose histograms carry the
configured thresholds and colour each document by what its stage did to it, whose plots are readable at their own
size, and which a real headless Chromium renders with every plot, offline."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import json

import numpy as np
import pytest
import yaml
from matplotlib.text import Text
from PIL import Image

from conftest import pipeline_cli
from pipeline import inspect, report
from pipeline.config import load_config
from pipeline.runner import run_pipeline
from stages import STAGES

pytestmark = pytest.mark.slow

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
PAGE_COLUMN_PX = 1224  # the page's max-width less its padding: a plot wider than this is shrunk by the browser


class _Page(HTMLParser):
    """The tags, attributes and table rows of a page, and its text."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def written(quickstart_run, tmp_path_factory):
    output, _ = quickstart_run
    target = tmp_path_factory.mktemp("report") / "quickstart.html"
    completed = pipeline_cli("report", str(output), "--output", str(target))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == str(target)
    return inspect.load_run(output), target


def test_the_report_is_one_self_contained_file_with_the_runs_numbers(written):
    run, target = written
    page = _Page()
    page.feed(target.read_text())
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    # funnel, one grid per filtering stage with signals, languages, domains, clusters, shards, training, speed
    with_signals = {"html_langid", "langid", "gopher_repetition", "gopher_quality", "c4", "fineweb", "toxic_words",
                    "toxicity_classifier", "quality_classifier", "pii", "decontaminate"}
    assert len(images) == 7 + len(with_signals)
    assert {image["alt"] for image in images} >= {f"signals of {stage}" for stage in with_signals}
    for image in images:  # every plot is an embedded PNG that decodes, shown at its own size in the page's column
        assert image["src"].startswith("data:image/png;base64,")
        picture = Image.open(io.BytesIO(base64.b64decode(image["src"].split(",", 1)[1])))
        assert picture.format == "PNG" and 500 <= picture.width <= PAGE_COLUMN_PX and picture.height >= 200
    # nothing is fetched: no stylesheet, script or image from anywhere else
    for tag, attrs in page.tags:
        for name in ("src", "href"):
            assert not attrs.get(name, "data:").startswith(("http", "//", "file:")), (tag, attrs)
        assert not (tag == "link" and attrs.get("rel") == "stylesheet")

    funnel = run.funnel()
    header = next(row for row in page.rows if row[:2] == ["stage", "in"])
    rows = page.rows[page.rows.index(header) + 1:][:len(funnel)]
    shown = {row[0]: [int(cell.replace(",", "")) for cell in row[1:5]] for row in rows}
    summary = run.summary
    assert list(shown) == [stage["stage"] for stage in summary["stages"]]
    for stage in summary["stages"]:  # the table is the run's own counters
        dropped, failed = sum(stage["dropped"].values()), sum(stage["failed"].values())
        assert shown[stage["stage"]] == [stage["rows_in"], stage["kept"], dropped, failed]
    assert shown["read"][0] == summary["records_read"]
    cards = re.findall(r"<div class='card'><b>([^<]+)</b><span>([^<]+)</span>", target.read_text())
    assert dict((label, value) for value, label in cards)["documents kept"] == f"{summary['documents']:,}"
    [evaluation_set] = [row for row in page.rows if row[:1] == ["demo_eval"]]  # the contamination table
    found = run.contamination().iloc[0]
    assert evaluation_set[1:3] == [f"{found['items']:,}", f"{found['items_found']:,}"]


def test_each_histogram_draws_its_configured_threshold_and_the_share_its_rule_removed(written):
    run, _ = written
    figures = dict(report.signal_figures(run))
    reasons = run.reasons()
    rows_in = run.funnel().set_index("stage")["rows_in"]
    settings = {next(iter(entry)): entry[next(iter(entry))] for entry in run.config["stages"]
                if isinstance(entry, dict)}
    checked = 0
    for stage, figure in figures.items():
        by_signal = {}
        for decision in STAGES[stage].thresholds(settings.get(stage, {})):
            by_signal.setdefault(decision.signal, []).append(decision)
        for axes in figure.axes:
            name = axes.get_title(loc="left").splitlines()[0]
            signal = next((s for s in by_signal if s in (name, f"{stage}_{name}")), None)
            if signal is None:
                continue
            lines = {line.get_xdata()[0]: line for line in axes.get_lines()}
            labels = {text.get_text() for text in axes.texts}
            for decision in by_signal[signal]:
                if "(off axis)" not in axes.get_title(loc="left"):  # on top of the bars, its value beside it
                    assert decision.limit in lines, (stage, signal, decision)
                    assert lines[decision.limit].get_zorder() > max(p.get_zorder() for p in axes.patches)
                    assert f"{decision.limit:g}" in labels
            count = int(reasons[(reasons["stage"] == stage)
                                & reasons["reason"].isin({d.reason for d in by_signal[signal]})]["count"].sum())
            assert f"{count:,} removed ({count / rows_in[stage]:.1%})" in axes.get_title(loc="left")
            checked += 1
    assert checked >= 20  # the rest of the quickstart's 33 rules are on signals with one value: listed, not drawn
    # the langid limit and the quality classifier's drops are the quickstart's, not defaults
    langid_axes = figures["langid"].axes[0]
    assert 0.65 in {line.get_xdata()[0] for line in langid_axes.get_lines()}
    quality = reasons[(reasons["stage"] == "quality_classifier")]["count"].sum()
    assert quality > 0 and f"{quality} removed" in figures["quality_classifier"].axes[0].get_title(loc="left")


def _chromium() -> str | None:
    found = next((shutil.which(name) for name in CHROMIUM_NAMES if shutil.which(name)), None)
    if found is None and os.environ.get("CCPIPELINE_REQUIRE_CHROMIUM"):
        pytest.fail("CCPIPELINE_REQUIRE_CHROMIUM is set but no Chromium is installed (apt-get install chromium)")
    if found is None:
        pytest.skip("no Chromium here; .ci/run installs it and sets CCPIPELINE_REQUIRE_CHROMIUM")
    return found


def _headless(browser: str, page: Path, *options: str) -> subprocess.CompletedProcess:
    """Chromium on the file, with every network request sent to a closed port: the page must not need any."""
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--no-first-run",
         "--disable-extensions", "--disable-background-networking", *options, page.as_uri()],
        capture_output=True, text=True, timeout=120)


def test_the_report_renders_in_headless_chromium(written, tmp_path):
    """A real browser draws every plot at its own size (none shrunk to fit), and the page says what it shows."""
    browser = _chromium()
    run, target = written
    shot = tmp_path / "report.png"
    completed = _headless(browser, target, "--window-size=1280,7000", f"--screenshot={shot}")
    assert completed.returncode == 0 and shot.exists(), completed.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (7000, 1280)
    # not blank: text, tables and plots, not one colour
    assert (pixels.reshape(-1, 3).std(axis=0) > 20).all()
    assert len(np.unique(pixels[::4, ::4].reshape(-1, 3), axis=0)) > 200

    def share_of(colour: str) -> float:
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        return float((np.abs(pixels - rgb).max(axis=2) <= 12).mean())

    # the plots are there: the page's own styles use none of the plot colours, so these pixels are plots
    assert share_of(report.KEPT) > 0.01 and share_of(report.DROPPED) > 0.001  # about 9,000 pixels
    blank_band = (pixels[:2000].std(axis=(1, 2)) < 1).mean()  # the first screen is mostly not empty rows
    assert blank_band < 0.6

    dom = _headless(browser, target, "--window-size=1280,7000", "--virtual-time-budget=10000", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout).group(1)
    marks = dict(re.findall(r'data-([a-z-]+)="(\d+)"', body))
    assert int(marks["plots"]) == int(marks["plots-rendered"]) == target.read_text().count("<img class='plot'") > 10
    assert marks["plots-shrunk"] == "0"  # every plot at its own size: its text as large as drawn
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom.stdout))
    summary = run.summary
    for expected in ("Signals against their thresholds", "removed by another rule of the stage",
                     f"leaving the {summary['documents']:,} documents the run kept", "steps/s", "tokens/s",
                     "the same for all", "documents kept", f"{summary['records_read']:,}"):
        assert expected in text, expected


def test_a_run_without_training_or_rejects_still_reports(quickstart_run, tmp_path):
    """Sections without data are left out, and the histograms say they show kept documents only."""
    output, _ = quickstart_run
    copy = tmp_path / "run"
    shutil.copytree(output, copy, ignore=shutil.ignore_patterns("rejects", "train", "shards"))
    html = report.render_report(inspect.load_run(copy))
    assert "the run did not keep rejects" in html
    assert "alt='training loss'" not in html and "alt='tokens per shard'" not in html
    assert "alt='funnel'" in html and "alt='signals of langid'" in html


def local_run(directory: Path, documents: list[dict], stages: list, rejects: bool = False) -> Path:
    """A run of `documents` (id, url, text) through `stages`, in this process."""
    corpus = directory / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(document) + "\n" for document in documents))
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump({"name": "local", "input": {"paths": [str(corpus)]}, "stages": stages,
                                      "rejects": rejects}))
    result = run_pipeline(load_config(config, output=str(directory / "run")), show_progress=False)
    assert result.ok
    return result.run_dir


def kept_run(directory: Path, urls: list[str]) -> Path:
    """A run of one prose document per URL through gopher_quality, which keeps them all (in this process)."""
    text = "The boats rocked in the harbour and the tide came in with the wind. " * 8
    run_dir = local_run(directory, [{"id": f"d{i}", "url": url, "text": text} for i, url in enumerate(urls)],
                        ["gopher_quality"])
    assert inspect.load_run(run_dir).funnel().iloc[-1]["kept"] == len(urls)
    return run_dir


def prose(seed: int, words: int = 160) -> str:
    """Text that repeats no line and no 5-gram: it passes every Gopher repetition rule."""
    vocabulary = [f"{a}{b}" for a in ("har", "tid", "win", "boa", "sal", "mer", "lan", "riv") for b in
                  ("bour", "e", "d", "t", "ter", "cy", "ding", "er", "ow", "ing")]
    picked = np.random.default_rng(seed).choice(vocabulary, words)
    return "\n".join(" ".join(picked[i:i + 16]) + "." for i in range(0, words, 16))


def test_a_run_that_dropped_and_failed_nothing_reports(tmp_path):
    run_dir = kept_run(tmp_path, [f"https://site{i}.example.org/" for i in range(3)])
    page = report.write_report(run_dir).read_text()
    assert "<p>Nothing was dropped.</p>" in page and "alt='funnel'" in page


def test_a_hostname_with_dollar_signs_is_drawn_as_written_not_as_math(tmp_path):
    hosts = ["$x^2$.com", "$a_$.com"]  # matplotlib would draw the first as x squared and fail on the second
    run_dir = kept_run(tmp_path, [f"https://{host}/page" for host in hosts])
    assert "alt='domains'" in report.write_report(run_dir).read_text()
    labels = report.domains_figure(inspect.load_run(run_dir)).axes[0].get_yticklabels()
    assert sorted(label.get_text() for label in labels) == sorted(hosts)
    assert not any(label.get_parse_math() for label in labels)


def test_a_document_an_earlier_rule_dropped_is_grey_in_a_later_rules_histogram(tmp_path):
    """A page of one repeated line fails gopher_repetition's dup_line_frac and, further down its rule list,
    dup_5gram_frac. The stage names the first failing rule, so in dup_5gram_frac's histogram the page is "removed by
    another rule", not "passed" (blue, as the report drew it before) nor counted as that rule's removal."""
    spam = {"id": "spam", "url": "https://spam.example.org/", "text": "Buy cheap boats at the harbour today.\n" * 12}
    documents = [{"id": f"d{i}", "url": f"https://site{i}.example.org/", "text": prose(i)} for i in range(3)]
    run = inspect.load_run(local_run(tmp_path, documents + [spam], ["gopher_repetition"], rejects=True))
    assert run.reasons()[["reason", "count"]].values.tolist() == [["dup_line_frac", 1]]
    signals = run.signals()
    is_spam = (signals["id"] == "spam").to_numpy()
    assert signals.loc[is_spam, "gopher_repetition_dup_5gram_frac"].item() > 0.15  # past this rule's limit too

    later = report.rule_outcomes(signals, "gopher_repetition", {"dup_5gram_frac"})
    assert later[is_spam].tolist() == [report.BY_OTHER_RULE] and (later[~is_spam] == report.PASSED).all()
    first = report.rule_outcomes(signals, "gopher_repetition", {"dup_line_frac"})
    assert first[is_spam].tolist() == [report.BY_RULE] and (first[~is_spam] == report.PASSED).all()

    figure = dict(report.signal_figures(run))["gopher_repetition"]
    axes = {a.get_title(loc="left").splitlines()[0]: a for a in figure.axes}
    assert axes["dup_5gram_frac"].get_title(loc="left").splitlines()[1:] == ["drop above 0.15",
                                                                            "0 removed (0.0%), 1 by other rules"]
    assert axes["dup_line_frac"].get_title(loc="left").splitlines()[1:] == ["drop above 0.3", "1 removed (25.0%)"]
    assert _drawn(axes["dup_5gram_frac"]) == {report.PASSED: 3, report.BY_OTHER_RULE: 1}
    assert _drawn(axes["dup_line_frac"]) == {report.PASSED: 3, report.BY_RULE: 1}
    assert [t.get_text() for t in figure.legends[0].get_texts()][:3] == list(report.OUTCOME_COLOURS)


def _drawn(axes) -> dict[str, int]:
    """How many documents each coloured layer of a stacked histogram holds."""
    counts = {}
    for patch in axes.patches:
        values, _, baseline = patch.get_data()
        counts[patch.get_label()] = int(round((values - baseline).sum()))
    return counts


def test_counts_get_integer_bins_and_signals_with_one_value_are_listed_not_drawn(written):
    run, target = written
    figures = dict(report.signal_figures(run))
    axes = {a.get_title(loc="left").splitlines()[0]: a for a in figures["c4"].axes}
    for name in ("lines_removed", "lines_kept", "sentence_count"):
        edges = np.concatenate([patch.get_data()[1] for patch in axes[name].patches])
        assert (np.mod(edges, 1) == 0.5).all() and set(np.diff(np.unique(edges))) == {1.0}, name  # one per integer
        ticks = [t for t in axes[name].get_xticks() if axes[name].get_xlim()[0] <= t <= axes[name].get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), (name, ticks)
    signals = run.signals()
    constant = [c for c in run.signal_columns() if c.startswith("c4_") and signals[c].nunique() == 1]
    assert constant and not {c.removeprefix("c4_") for c in constant} & set(axes)
    line = re.search(r"<p class='constants'><b>c4</b>, the same for all ([\d,]+) documents[^<]*</p>",
                     target.read_text())
    assert int(line.group(1).replace(",", "")) == signals["c4_lines_kept"].notna().sum()
    for column in constant:
        assert f"{column.removeprefix('c4_')} = {signals[column].dropna().iloc[0]:g}" in line.group(0)


def test_every_plot_labels_its_axes_in_text_of_at_least_9_points(written):
    run, _ = written
    figures = [figure for _, figure in report.signal_figures(run)] + [
        make(run) for make in (report.funnel_figure, report.speed_figure, report.languages_figure,
                               report.domains_figure, report.cluster_sizes_figure, report.shards_figure,
                               report.training_figure)]
    for figure in figures:
        assert figure.dpi == report.DPI
        for axes in figure.axes:
            assert axes.get_xlabel() and axes.get_ylabel(), axes.get_title(loc="left")
        figure.canvas.draw()  # tick labels exist once drawn
        texts = [t for t in figure.findobj(Text) if t.get_visible() and t.get_text().strip()]
        assert texts and min(t.get_fontsize() for t in texts) >= 9


def test_the_language_and_domain_charts_say_which_documents_they_count(written):
    run, target = written
    page = target.read_text()
    languages = run.languages()
    unlabelled = int(languages.loc[languages["lang"] == report.NO_VALUE, ["kept", "dropped"]].sum().sum())
    funnel = run.funnel().set_index("stage")
    blocked, screened = funnel.loc["url_filter", "dropped"], funnel.loc["html_langid", "dropped"]
    assert unlabelled == blocked + screened and blocked > 0 and screened > 0  # never reached langid
    drawn = [label.get_text() for label in report.languages_figure(run).axes[0].get_yticklabels()]
    assert drawn == [lang for lang in languages["lang"] if lang != report.NO_VALUE][:len(drawn)]
    assert (f"{unlabelled:,} documents have none and are not shown: they were dropped before langid "
            f"(url_filter {blocked:,}, html_langid {screened:,}). Kept means kept after the last per-document stage "
            f"({funnel.loc['decontaminate', 'kept']:,} documents); the global stages then removed "
            f"{funnel.loc['dedup', 'dropped']:,} of them, leaving the {run.summary['documents']:,} documents") in page

    domains = report.domains_figure(run).axes[0]
    kept = run.domains(report.DEFAULT_TOP)
    shown = sorted(label.get_text() for label in domains.get_yticklabels())
    assert shown == sorted(kept.loc[kept["kept"] > 0, "domain"]) and len(shown) < len(kept)
    assert domains.get_title(loc="left").startswith(f"The {len(shown)} domains with the most kept documents")


def test_global_stages_show_wall_time_and_a_throughput_in_their_own_unit(written):
    run, _ = written
    speeds = report.stage_speeds(run).set_index("stage")
    funnel = run.funnel().set_index("stage")
    steps = int(run.training()["step"].max())
    assert speeds.loc["train", "throughput"].startswith(
        f"{steps / funnel.loc['train', 'seconds']:,.1f} steps/s ({steps:,} steps)")
    tokens = int(run.shards()["tokens"].sum())
    assert speeds.loc["tokenize", "throughput"] == \
        f"{tokens / funnel.loc['tokenize', 'seconds']:,.0f} tokens/s ({tokens:,} tokens)"
    assert speeds.loc["dedup", "throughput"] == f"{funnel.loc['dedup', 'rows_in']:,} documents"
    assert set(speeds.loc[["dedup", "tokenizer", "tokenize", "train"], "clock"]) == {"wall"}
    assert speeds.loc["c4", "clock"] == "worker" and speeds.loc["c4", "throughput"].endswith("documents/s per worker")
    labels = [text.get_text() for text in report.speed_figure(run).axes[0].texts]
    assert any(label.endswith(speeds.loc["train", "throughput"]) for label in labels)


def test_write_report_says_what_it_is_doing(quickstart_run, tmp_path):
    output, _ = quickstart_run
    heard = []
    target = report.write_report(output, tmp_path / "report.html", log=heard.append)
    drawn = sum(len(figure.axes) for _, figure in report.signal_figures(inspect.load_run(output)))
    assert heard[0] == "reading stats" and f"signal histograms ({drawn})" in heard
    assert heard[-1] == "writing report.html" and target.exists()
