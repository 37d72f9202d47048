"""`pipeline report`: one self-contained HTML file whose numbers are the run's counters, whose histograms carry the
configured thresholds, and which a real headless Chromium renders with every plot, offline."""

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
from PIL import Image

from conftest import pipeline_cli
from pipeline import inspect, report
from pipeline.config import load_config
from pipeline.runner import run_pipeline
from stages import STAGES

pytestmark = pytest.mark.slow

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


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
                    "toxicity_classifier", "quality_classifier", "pii"}
    assert len(images) == 7 + len(with_signals)
    assert {image["alt"] for image in images} >= {f"signals of {stage}" for stage in with_signals}
    for image in images:  # every plot is an embedded PNG that decodes
        assert image["src"].startswith("data:image/png;base64,")
        picture = Image.open(io.BytesIO(base64.b64decode(image["src"].split(",", 1)[1])))
        assert picture.format == "PNG" and picture.width > 300
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
            lines = {line.get_xdata()[0] for line in axes.get_lines()}
            for decision in by_signal[signal]:
                if "(off axis)" not in axes.get_title(loc="left"):
                    assert decision.limit in lines, (stage, signal, decision)
            count = int(reasons[(reasons["stage"] == stage)
                                & reasons["reason"].isin({d.reason for d in by_signal[signal]})]["count"].sum())
            assert f"{count:,} removed ({count / rows_in[stage]:.1%})" in axes.get_title(loc="left")
            checked += 1
    assert checked >= 30
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
    browser = _chromium()
    _, target = written
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

    dom = _headless(browser, target, "--virtual-time-budget=10000", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout).group(1)
    plots = int(re.search(r'data-plots="(\d+)"', body).group(1))
    rendered = int(re.search(r'data-plots-rendered="(\d+)"', body).group(1))
    assert plots == rendered == target.read_text().count("<img class='plot'") > 10


def test_a_run_without_training_or_rejects_still_reports(quickstart_run, tmp_path):
    """Sections without data are left out, and the histograms say they show kept documents only."""
    output, _ = quickstart_run
    copy = tmp_path / "run"
    shutil.copytree(output, copy, ignore=shutil.ignore_patterns("rejects", "train", "shards"))
    html = report.render_report(inspect.load_run(copy))
    assert "the run did not keep rejects" in html
    assert "alt='training loss'" not in html and "alt='tokens per shard'" not in html
    assert "alt='funnel'" in html and "alt='signals of langid'" in html


def kept_run(directory: Path, urls: list[str]) -> Path:
    """A run of one prose document per URL through gopher_quality, which keeps them all (in this process)."""
    corpus = directory / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "url": url, "text": "The boats rocked in the harbour and "
                                          "the tide came in with the wind. " * 8}) + "\n"
                              for i, url in enumerate(urls)))
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump({"name": "kept", "input": {"paths": [str(corpus)]}, "stages": ["gopher_quality"]}))
    result = run_pipeline(load_config(config, output=str(directory / "run")), show_progress=False)
    assert result.ok and result.funnel[-1].kept == len(urls)
    return result.run_dir


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
