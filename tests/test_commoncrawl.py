"""Common Crawl input from a real HTTP server on 127.0.0.1 serving a crawl-data tree of real WARC files, with a
503, a connection cut half-way and a slow response injected: the run's output equals a run over the local files, and
nothing but the paths manifest is downloaded (the files are read by range where they are)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import yaml

from http_server import FileServer
from pipeline.config import ConfigError, load_config
from pipeline.io import download as download_module
from pipeline.io import ranged
from pipeline.io.commoncrawl import select_paths
from pipeline.runner import run_pipeline
from pipeline.stats import accounting_problems

CRAWL = "CC-MAIN-2024-51"
SEGMENTS = ("1733066035857.23", "1733066046748.1")
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(download_module, "BACKOFF_S", 0.01)
    monkeypatch.setattr(ranged, "BACKOFF_S", 0.01)


def crawl_tree(warc_dir: Path) -> dict[str, bytes]:
    """Four real WARC files under crawl-data/<crawl>/segments/<segment>/warc/, plus warc.paths.gz listing them."""
    sources = [warc_dir / "cc_resiliparse" / "CC-MAIN-2020-34-excerpt.warc.gz",
               warc_dir / "cc_whirlwind" / "whirlwind.warc.gz",
               warc_dir / "dolma_wget" / "sample-0000.warc.gz", warc_dir / "dolma_wget" / "sample-0001.warc.gz"]
    files, paths = {}, []
    for index, source in enumerate(sources):
        path = f"crawl-data/{CRAWL}/segments/{SEGMENTS[index % 2]}/warc/{source.name}"
        paths.append(path)
        files[f"/{path}"] = source.read_bytes()
    files[f"/crawl-data/{CRAWL}/warc.paths.gz"] = gzip.compress(("\n".join(paths) + "\n").encode())
    return files


def run(tmp_path: Path, name: str, input_config: dict):
    config_file = tmp_path / f"{name}.yaml"
    config_file.write_text(yaml.safe_dump({"name": name, "input": input_config, "stages": ["extract"]}))
    return run_pipeline(load_config(config_file, output=str(tmp_path / name)), show_progress=False)


def documents(result) -> list[tuple]:
    table = ds.dataset(result.run_dir / "documents", format="parquet").to_table(columns=["id", "url", "text"])
    return sorted(zip(*(table.column(c).to_pylist() for c in ("id", "url", "text"))))


def test_a_crawl_over_http_with_faults_gives_the_same_output_as_the_local_files(tmp_path, warc_dir, local_ray):
    files = crawl_tree(warc_dir)
    names = sorted(files)
    with FileServer(files, slow_s=1.5) as server:
        warcs = [name for name in names if name.endswith(".warc.gz")]
        server.faults[warcs[0]] = ["503"]
        server.faults[warcs[1]] = ["cut"]
        server.faults[warcs[2]] = ["slow"]
        remote = run(tmp_path, "remote", {"commoncrawl": {"crawl": CRAWL, "base_url": server.base_url,
                                                          "cache_dir": str(tmp_path / "cache")}})
        assert all(not server.faults[name] for name in warcs[:3])  # each fault met, and retried
        assert server.ranges[warcs[1]][:2] == [0, ranged.FIRST_BLOCK // 2]  # the retry after the cut: the rest
    local_dir = tmp_path / "local-files"
    local_dir.mkdir()
    for name in warcs:
        (local_dir / Path(name).name).write_bytes(files[name])
    local = run(tmp_path, "local", {"paths": [str(local_dir)]})
    assert remote.ok and local.ok and not accounting_problems(remote.funnel)
    remote_documents = documents(remote)
    assert len(remote_documents) >= 40 and remote_documents == documents(local)
    assert \
        [(t.stage, t.rows_in, t.kept) for t in remote.funnel] == [(t.stage, t.rows_in, t.kept) for t in local.funnel]
    cached = sorted(p.relative_to(tmp_path / "cache").as_posix() for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert cached == [f"crawl-data/{CRAWL}/warc.paths.gz"]  # the manifest only


def test_segments_sample_and_limit_pick_the_same_files_every_time():
    lines = [f"crawl-data/{CRAWL}/segments/{SEGMENTS[i % 2]}/warc/file-{i:03d}.warc.gz" for i in range(200)]
    assert select_paths(lines, None, None, 3, 0) == lines[:3]
    assert all(SEGMENTS[1] in path for path in select_paths(lines, [SEGMENTS[1]], None, None, 0))
    sampled = select_paths(lines, None, 0.25, None, seed=7)
    assert 30 < len(sampled) < 70 and sampled == select_paths(list(lines), None, 0.25, None, seed=7)
    assert sampled != select_paths(lines, None, 0.25, None, seed=8)
    assert sampled == [line for line in lines if line in set(sampled)]  # manifest order kept


def test_a_file_that_keeps_failing_is_reported_by_name_and_the_rest_is_read(tmp_path, warc_dir, local_ray):
    files = crawl_tree(warc_dir)
    broken = sorted(name for name in files if name.endswith(".warc.gz"))[0]
    with FileServer(files) as server:
        server.faults[broken] = ["503", "503"]  # both attempts of the first run; the next run gets the file
        result = run(tmp_path, "partial", {"commoncrawl": {"crawl": CRAWL, "base_url": server.base_url,
                                                           "cache_dir": str(tmp_path / "cache"), "retries": 2}})
        assert list(result.failed_units) == [f"download {broken.lstrip('/')}"] and not result.ok
        assert "503" in result.failed_units[f"download {broken.lstrip('/')}"]
        assert not (result.run_dir / "plan.parquet").exists()  # the next run plans again, with the missing file
        first_count = len(documents(result))
        again = run(tmp_path, "partial", {"commoncrawl": {"crawl": CRAWL, "base_url": server.base_url,
                                                          "cache_dir": str(tmp_path / "cache"), "retries": 2}})
    assert again.ok and again.units_resumed == 3 and len(documents(again)) > first_count


def test_a_missing_manifest_is_a_one_line_error(tmp_path, local_ray):
    with FileServer({}) as server:
        with pytest.raises(ConfigError, match="input.commoncrawl: .*warc.paths.gz.*404"):
            run(tmp_path, "none", {"commoncrawl": {"crawl": CRAWL, "base_url": server.base_url,
                                                   "cache_dir": str(tmp_path / "cache")}})


def test_within_the_failure_budget_the_run_goes_on_to_its_global_stages(tmp_path, warc_dir, local_ray):
    files = crawl_tree(warc_dir)
    broken = sorted(name for name in files if name.endswith(".warc.gz"))[0]
    with FileServer(files) as server:
        server.faults[broken] = ["503", "503"]
        config_file = tmp_path / "budget.yaml"
        commoncrawl = {"crawl": CRAWL, "base_url": server.base_url, "cache_dir": str(tmp_path / "cache"),
                       "retries": 2}
        for share, goes_on in ((0.0, False), (0.25, True)):
            config_file.write_text(yaml.safe_dump({"name": "budget", "input": {"commoncrawl": commoncrawl},
                                                   "stages": ["extract", "dedup"], "max_failed_share": share}))
            server.faults[broken] = ["503", "503"]
            result = run_pipeline(load_config(config_file, output=str(tmp_path / f"budget-{share}")),
                                  show_progress=False)
            assert list(result.failed_units) == [f"download {broken.lstrip('/')}"]  # named either way
            assert result.ok is goes_on and (result.run_dir / "dedup" / "_done.json").exists() is goes_on


def test_a_filesystem_mirror_is_read_in_place(tmp_path, warc_dir):
    """A file:// base URL names local files: they are planned where they are, not copied into the cache."""
    from pipeline.config import CommonCrawlInput
    from pipeline.io.commoncrawl import resolve

    files = crawl_tree(warc_dir)
    for name, data in files.items():
        (tmp_path / "mirror" / name.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "mirror" / name.lstrip("/")).write_bytes(data)
    local, failures = resolve(CommonCrawlInput(crawl=CRAWL, base_url=f"file://{tmp_path / 'mirror'}", limit=3,
                                               cache_dir=str(tmp_path / "cache")))
    assert not failures and list(local) == [str(tmp_path / "mirror" / name.lstrip("/")) for name in files
                                           if name.endswith(".warc.gz")][:3]
    assert not list((tmp_path / "cache").rglob("*.warc.gz"))


def test_a_file_that_arrives_late_brings_every_global_stage_up_to_date_byte_for_byte(tmp_path, warc_dir, local_ray):
    """A download fails (within max_failed_share), so dedup, tokenizer, tokenize and train run on three files of
    four and the run exits 0; the same command again fetches the file, processes it, and then must redo every
    global stage: its output equals a run that never failed, byte for byte (the trained weights exactly)."""
    torch = pytest.importorskip("torch", reason="the trainer extra (torch==2.13.0) is not installed")
    files = crawl_tree(warc_dir)
    broken = sorted(name for name in files if name.endswith(".warc.gz"))[0]
    stages = ["extract", "dedup", {"tokenizer": {"vocab_size": 4000}}, {"tokenize": {"shard_tokens": 50_000, "validation_fraction": 0.2}},
              {"train": {"model": {"n_layer": 1, "n_head": 2, "n_embd": 32}, "block_size": 32, "batch_size": 4,
                         "max_steps": 6, "warmup_steps": 1, "eval_interval": 3, "eval_batches": 2, "device": "cpu"}}]

    def run_crawl(name: str, cache: str):
        config_file = tmp_path / f"{name}.yaml"
        config_file.write_text(yaml.safe_dump({
            "name": name, "stages": stages, "max_failed_share": 0.25,
            "input": {"commoncrawl": {"crawl": CRAWL, "base_url": server.base_url, "retries": 2,
                                      "cache_dir": str(tmp_path / cache)}}}))
        return run_pipeline(load_config(config_file, output=str(tmp_path / name)), show_progress=False)

    with FileServer(files) as server:
        straight = run_crawl("straight", "cache")
        shutil.rmtree(tmp_path / "cache")  # the same URIs (so the same unit names), the manifest fetched afresh
        server.faults[broken] = ["503", "503"]
        first = run_crawl("late", "cache")
        again = run_crawl("late", "cache")
    assert straight.ok and not straight.failed_units
    assert first.ok and list(first.failed_units) == [f"download {broken.lstrip('/')}"]
    assert first.funnel[0].rows_in < straight.funnel[0].rows_in
    assert again.ok and not again.failed_units and not again.accounting

    def outputs(run: Path) -> dict[str, bytes]:
        found = {}
        for folder in ("documents", "dedup", "tokenizer", "shards"):
            for path in sorted((run / folder).rglob("*")):
                if path.is_file() and path.name not in ("_done.json", "_inputs.json", "_graph.npz"):
                    found[str(path.relative_to(run))] = path.read_bytes().replace(str(run).encode(), b"RUN")
        return found

    assert outputs(tmp_path / "late") == outputs(tmp_path / "straight")
    assert [t.to_dict()["kept"] for t in again.funnel] == [t.to_dict()["kept"] for t in straight.funnel]
    weights = [torch.load(tmp_path / run / "train" / "checkpoint.pt", weights_only=False)["model"]
               for run in ("late", "straight")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
