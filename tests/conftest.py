"""Shared fixtures: the repository root, the real third-party test data, and a local Ray for end-to-end tests.

The data is read-only and lives outside the repository (../shared/data from the repo root); tests read it in place
and never copy it into the repository. Damaged variants are written under pytest's tmp_path.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data; a missing folder is a failure, not a skip, so a broken checkout cannot pass silently."""
    assert DATA.is_dir(), f"real test data not found at {DATA}"
    return DATA


@pytest.fixture(scope="session")
def warc_dir(data_dir: Path) -> Path:
    return data_dir / "warc"


@pytest.fixture(scope="session")
def local_ray():
    """One embedded local Ray for the whole session (the runner joins it instead of starting its own)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = False
    if not ray.is_initialized():
        ray.init(
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            object_store_memory=512 * 1024 * 1024,
            logging_level=logging.WARNING,
        )
        started = True
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def lid_model(data_dir: Path) -> Path:
    """The real lid.176.ftz from ../shared/data (the same file the default resolution fetches)."""
    return data_dir / "models" / "lid176" / "lid.176.ftz"


def documents_table(texts: list[str]):
    """A batch of documents as stages receive them: reader columns, with the given texts."""
    import pyarrow as pa

    from pipeline.schema import RECORD_SCHEMA, empty_row

    rows = []
    for index, text in enumerate(texts):
        row = empty_row()
        row.update(id=f"doc{index}", url=f"https://example.org/{index}", offset=index, text=text)
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)


BAD_INPUTS = {
    "empty": "",
    "no_letters": "12345 !!! ??? 678 --- *** 90 ... ### 2024-01-01 $$$ 42",
    "giant_single_line": "word " * 1_000_000,  # 5 MB, one line
    "mixed_scripts": "English words, Deutsche Wörter, русские слова, 中文字符, العربية, 😀🎉 emoji " * 20,
    "replacement_chars": "text with \ufffd\ufffd broken \ufffd bytes " * 30,
}


@pytest.fixture(scope="session")
def real_page_texts(data_dir: Path) -> list[dict]:
    """Texts extracted by our extract stage from the 879 real pages of derived_real_html, with their language.

    Computed once per test session (about 20 s): {"record_id", "url", "text", "lang"} per page with text.
    """
    import pyarrow as pa

    from pipeline.io.archive_reader import ReadOptions, probe_layout, read_archive
    from pipeline.schema import RECORD_SCHEMA
    from stages.extract import Extract, ExtractConfig
    from stages.fasttext_model import FastTextModel, fasttext_line

    rows = []
    for path in sorted((data_dir / "warc" / "derived_real_html").glob("*.warc.gz")):
        with open(path, "rb") as fh:
            rows += [row for row in read_archive(fh, str(path), probe_layout(fh), 0, path.stat().st_size,
                                                 ReadOptions()) if row["html"] is not None]
    extract = Extract(ExtractConfig())
    try:
        table = extract(pa.Table.from_pylist(rows, schema=RECORD_SCHEMA))
    finally:
        extract.close()
    lid = FastTextModel(data_dir / "models" / "lid176" / "lid.176.ftz")
    pages = []
    for row in table.select(["record_id", "url", "text"]).to_pylist():
        if row["text"]:
            row["lang"] = lid.top(fasttext_line(row["text"], lower=False))[0]
            pages.append(row)
    return pages


@pytest.fixture(scope="session")
def english_words(data_dir: Path) -> list[str]:
    """About 300,000 words of real English prose (Dracula, Frankenstein, Alice, US inaugural addresses), in order."""
    import zipfile

    words: list[str] = []
    for name in ("en-dracula", "en-frankenstein", "en-alice"):
        with zipfile.ZipFile(data_dir / "text" / "gutenberg" / f"{name}.zip") as archive:
            book = archive.read(f"{name}.txt").decode("utf-8", "replace")
        # Without Project Gutenberg's header and licence, which every book repeats word for word.
        book = book.split("*** START OF", 1)[-1].split("\n", 1)[-1].split("*** END OF", 1)[0]
        words += book.split()
    with zipfile.ZipFile(data_dir / "text" / "nltk_public_domain" / "inaugural.zip") as archive:
        for member in sorted(archive.namelist()):
            if member.endswith(".txt"):
                words += archive.read(member).decode("utf-8", "replace").split()
    return words


def best_seconds(action, repeats: int = 3) -> float:
    """The fastest of a few runs of `action`: what the work costs, with the noise of a shared machine taken out
    (for tests that compare two timings made in the same test, never against a number of seconds)."""
    import time

    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return min(timings)


def pipeline_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """The `pipeline` command in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})


def interrupted_cli(args: list[str], ready, wait_s: float = 60) -> tuple[int, str, str]:
    """`pipeline ARGS` in a fresh process, sent SIGINT (Ctrl-C) once `ready(process)` holds: (status, stdout,
    stderr). Only the process started here is signalled, by its pid. The process starts with SIGINT's default
    action, as a terminal's foreground command has it, even when the tests run as a background job of a
    non-interactive shell (which ignores SIGINT, and Python then installs no KeyboardInterrupt handler)."""
    import signal
    import time

    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], cwd=REPO, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + wait_s
        while not ready(process):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"pipeline {' '.join(args)} was not ready in {wait_s} s"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, stdout, stderr


ABLATION_LANGID = {"languages": ["en"], "min_score": 0.65}


def ablation_stages(classifier: Path, threshold: float = 0.05) -> list[dict]:
    """The rule stages at their defaults, English kept, and a quality classifier (trained on the demo's labelled
    examples) that drops little at `threshold`: the run ablation variants select from."""
    return [{"gopher_repetition": {}}, {"gopher_quality": {}}, {"langid": ABLATION_LANGID}, {"fineweb": {}},
            {"quality_classifier": {"model": str(classifier), "threshold": threshold}}]


def pages_run(directory: Path, pages: Path, stages: list[dict], lid_model: Path) -> Path:
    """A run (in this process, rejects kept) of `stages` over the pages JSONL; returns its config file, beside
    which the run directory `run` is."""
    import json

    stages = [{"langid": {**stage["langid"], "model": str(lid_model)}} if "langid" in stage else stage
              for stage in stages]
    config = directory / "run.yaml"
    config.write_text(json.dumps({"name": directory.name, "output": str(directory / "run"), "rejects": True,
                                  "ray": {"in_process_max_mb": 50}, "input": {"paths": [str(pages)]},
                                  "stages": stages}))
    result = pipeline_cli("run", "--config", str(config), "--quiet")
    assert result.returncode == 0, result.stderr
    return config


@pytest.fixture(scope="session")
def pages_jsonl(tmp_path_factory, real_page_texts) -> Path:
    """The real pages' extracted texts as a JSONL input (id, url, text)."""
    import json

    path = tmp_path_factory.mktemp("pages") / "pages.jsonl"
    path.write_text("".join(json.dumps({"id": page["record_id"], "url": page["url"], "text": page["text"]}) + "\n"
                            for page in real_page_texts))
    return path


@pytest.fixture(scope="session")
def quality_model(tmp_path_factory) -> Path:
    """A fastText quality classifier trained on the demo's labelled examples (hq prose against junk)."""
    from pipeline.demo_crawl import write_demo_labels
    from stages.fasttext_training import TrainingSettings, read_labelled_file, train_classifier

    directory = tmp_path_factory.mktemp("quality-model")
    labels = write_demo_labels(directory)["quality"]
    train_classifier(read_labelled_file(str(labels)), str(directory / "quality.bin"), TrainingSettings())
    return directory / "quality.bin"


@pytest.fixture(scope="session")
def ablation_base(tmp_path_factory, pages_jsonl, lid_model, quality_model) -> Path:
    """The run ablation variants select from (see ablation_stages); its config file."""
    return pages_run(tmp_path_factory.mktemp("ablation-base"), pages_jsonl, ablation_stages(quality_model), lid_model)


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`pipeline run --config configs/quickstart.yaml` once per session (every stage, offline), for the tests
    of its output, of the report and of the example notebook."""
    output = tmp_path_factory.mktemp("quickstart") / "run"
    completed = timed_pipeline_cli("run", "--config", "configs/quickstart.yaml", "--output", str(output))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return output, completed


class TimedRun(subprocess.CompletedProcess):
    """A finished command, with the time (seconds after its start) at which each line of its stderr arrived."""

    stderr_lines: list[tuple[float, str]]


def timed_pipeline_cli(*args: str, cwd: Path = REPO, timeout: float = 600) -> TimedRun:
    """The `pipeline` command as pipeline_cli runs it (stdout and stderr pipes, not a terminal), noting when each
    stderr line arrives, for the tests of what a job log shows while a run goes."""
    import threading
    import time

    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    lines: list[tuple[float, str]] = []
    stdout: list[str] = []
    readers = [threading.Thread(target=lambda: lines.extend((time.monotonic() - started, line)
                                                            for line in process.stderr)),
               threading.Thread(target=lambda: stdout.append(process.stdout.read()))]
    for reader in readers:
        reader.start()
    try:
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
        for reader in readers:
            reader.join()
    completed = TimedRun(process.args, process.returncode, "".join(stdout), "".join(line for _, line in lines))
    completed.stderr_lines = lines
    return completed


@pytest.fixture(scope="session")
def shakespeare_shards(tmp_path_factory, data_dir, local_ray) -> Path:
    """tinyshakespeare as documents of about 2,000 characters (whole speeches), through the pipeline's tokenizer
    (1,000 pieces) and tokenize stages: the shards folder, once per session (the trainer's tests share it)."""
    import json

    import yaml

    from pipeline.config import load_config
    from pipeline.runner import run_pipeline

    tmp_path = tmp_path_factory.mktemp("shakespeare")
    speeches = (data_dir / "text" / "tinyshakespeare" / "input.txt").read_text().split("\n\n")
    documents, current = [], ""
    for speech in speeches:
        current = f"{current}\n\n{speech}" if current else speech
        if len(current) >= 2_000:
            documents.append(current)
            current = ""
    corpus = tmp_path / "shakespeare.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"s{i:04d}", "text": t}) + "\n" for i, t in enumerate(documents)))
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump({
        "name": "shakespeare", "input": {"paths": [str(corpus)]},
        "stages": [{"tokenizer": {"vocab_size": 1000}}, {"tokenize": {"validation_fraction": 0.1}}],
    }))
    result = run_pipeline(load_config(config_file, output=str(tmp_path / "run")), show_progress=False)
    assert result.ok
    return result.run_dir / "shards"
