"""Workers bring their own data: the files a run's stages need are staged in the run directory by the driver and
copied from there into each node's cache, checked by sha256, so that a worker never reads a driver path, and the
worker's config is not checked against the driver's filesystem."""

from __future__ import annotations

import hashlib
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from pipeline.config import RunConfig, load_config
from pipeline.io.download import cache_base
from pipeline.staged_assets import AssetError, is_staged, local_asset, stage_asset
from stages.fasttext_training import TrainingSettings, read_labelled_file, train_classifier
import test_object_store
from test_object_store import s3


s3_query = test_object_store.s3_query  # the S3 server (moto) on loopback


@pytest.fixture
def node_cache(tmp_path, monkeypatch) -> Path:
    """This process's node-local cache, empty."""
    cache = tmp_path / "node-cache"
    monkeypatch.setenv("CCPIPELINE_CACHE", str(cache))
    return cache


@pytest.fixture
def words(tmp_path) -> Path:
    path = tmp_path / "driver" / "words.txt"
    path.parent.mkdir()
    path.write_text(f"idiot\n# {tmp_path}\n")  # bytes of this test only
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_is_staged_under_its_checksum_once(tmp_path, words):
    run = tmp_path / "run"
    reference = stage_asset(words, run)
    staged = run / "_assets" / f"{sha256(words)[:16]}-words.txt"
    assert reference == f"staged:_assets/{staged.name}#sha256={sha256(words)}" and is_staged(reference)
    assert staged.read_bytes() == words.read_bytes()
    inode = staged.stat().st_ino
    assert stage_asset(words, run) == reference and staged.stat().st_ino == inode  # not copied again
    assert [path.name for path in (run / "_assets").iterdir()] == [staged.name]  # no temporary left


def test_a_worker_copies_a_staged_file_into_its_node_cache_once(tmp_path, words, node_cache):
    run = tmp_path / "run"
    reference = stage_asset(words, run)
    local = local_asset(reference, run)
    assert local.parent == node_cache / "assets" and local.read_bytes() == words.read_bytes()
    shutil.rmtree(run / "_assets")
    assert local_asset(reference, run) == local  # the node's copy is used: the run directory is not read again


def test_the_workers_of_one_node_copy_a_staged_file_once(tmp_path, words, node_cache, monkeypatch):
    import pipeline.staged_assets as staged_assets

    copies = []
    copy = staged_assets._copy_checked

    def slow_copy(*args):
        copies.append(args)
        time.sleep(0.2)  # the others arrive while this one copies
        copy(*args)

    monkeypatch.setattr(staged_assets, "_copy_checked", slow_copy)
    reference = stage_asset(words, tmp_path / "run")
    with ThreadPoolExecutor(4) as pool:
        copied = set(pool.map(lambda _: local_asset(reference, tmp_path / "run"), range(4)))
    assert len(copies) == 1 and len(copied) == 1


def test_a_damaged_copy_in_the_node_cache_is_replaced_by_the_staged_file(tmp_path, words, node_cache):
    run = tmp_path / "run"
    reference = stage_asset(words, run)
    local = local_asset(reference, run)
    local.write_text("idiot\nmoron\n")
    assert local_asset(reference, run).read_bytes() == words.read_bytes()


def test_a_staged_file_with_other_bytes_is_an_error_naming_it(tmp_path, words, node_cache):
    run = tmp_path / "run"
    reference = stage_asset(words, run)
    staged = next((run / "_assets").iterdir())
    staged.write_text("moron\n")
    with pytest.raises(AssetError, match=rf"{staged.name} has sha256 {sha256(staged)}, not the {sha256(words)}"):
        local_asset(reference, run)
    assert [path.name for path in (node_cache / "assets").iterdir()] == [f".{staged.name}.lock"]  # no copy kept


def test_a_staged_file_gone_from_the_run_directory_is_an_error_naming_it(tmp_path, words, node_cache):
    run = tmp_path / "run"
    reference = stage_asset(words, run)
    shutil.rmtree(run / "_assets")
    with pytest.raises(AssetError, match=r"_assets/[0-9a-f]{16}-words.txt is missing"):
        local_asset(reference, run)


def test_files_are_staged_in_an_object_store_run_directory_and_copied_back(s3_query, words, node_cache):
    run = s3(s3_query, "staged/run")
    reference = stage_asset(words, run)
    assert stage_asset(words, run) == reference
    assert (run / reference.split(":", 1)[1].split("#")[0]).read_bytes() == words.read_bytes()
    assert local_asset(reference, run).read_bytes() == words.read_bytes()
    missing = s3(s3_query, "staged/elsewhere")
    (node_cache / "assets" / Path(reference.split("#")[0]).name).unlink()
    with pytest.raises(AssetError, match="is missing"):
        local_asset(reference, missing)


def test_a_worker_config_is_not_checked_against_the_input_paths(tmp_path):
    raw = load_config(write_config(tmp_path, [str(tmp_path / "config.yaml")], ["extract"])).resolved()
    raw["input"]["paths"] = [str(tmp_path / "gone" / "*.warc.gz")]
    assert RunConfig.for_worker(raw).input.paths == raw["input"]["paths"]
    with pytest.raises(ValueError, match="matches no file"):
        RunConfig.model_validate(raw)


def write_config(tmp_path: Path, paths: list[str], stages: list) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"name": "staged", "input": {"paths": paths, "unit_mb": 2},
                                    "stages": stages, "ray": {"workers": 2}}))
    return path


@pytest.mark.slow
def test_workers_read_only_staged_files_and_never_glob_the_inputs(tmp_path, warc_dir, data_dir, lid_model, words,
                                                                  local_ray, monkeypatch):
    """After prepare, the driver's model cache, its word list, its trained classifier and the file one input glob
    matched are all gone: the workers still build every stage, from the staged copies, and process every unit."""
    import pipeline.runner as runner

    driver_cache = tmp_path / "driver-cache"
    (driver_cache / "models").mkdir(parents=True)
    shutil.copy(lid_model, driver_cache / "models" / "lid.176.ftz")
    monkeypatch.setenv("CCPIPELINE_CACHE", str(driver_cache))
    labelled = read_labelled_file(data_dir / "toxicity" / "davidson" / "labeled_data.csv", text_field="tweet",
                                  label_field="class", label_map={"0": "toxic", "1": "toxic", "2": "clean"})
    classifier = tmp_path / "driver" / "toxicity.bin"
    train_classifier(labelled[:3000], classifier, TrainingSettings(dim=16, bucket=10_000, holdout=0.0))
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "README.txt").write_text("not a data file: listed as skipped, read by no unit\n")
    config = load_config(write_config(tmp_path, [str(warc_dir / "derived_real_html" / "*00001.warc.gz"),
                                                 str(notes / "*.txt")],
                                      ["extract", "langid", {"toxic_words": {"word_list": str(words)}},
                                       {"toxicity_classifier": {"model": str(classifier), "threshold": 1.0}}]),
                         output=str(tmp_path / "run"))
    real_prepare = runner.prepare_stages

    def prepare_then_lose_the_driver_files(config, run):
        worker_config = real_prepare(config, run)
        for gone in (driver_cache, words.parent, notes):
            shutil.rmtree(gone)
        return worker_config

    monkeypatch.setattr(runner, "prepare_stages", prepare_then_lose_the_driver_files)
    result = runner.run_pipeline(config, show_progress=False)
    assert not result.in_process and not result.failed_units and result.units_total > 1
    assert result.funnel[-1].kept > 0
    staged = {path.name for path in (tmp_path / "run" / "_assets").iterdir()}
    assert {name.split("-", 1)[1] for name in staged} == {"lid.176.ftz", "words.txt", "toxicity.bin"}
    assert f"{sha256(lid_model)[:16]}-lid.176.ftz" in staged
    worker_cache = Path(local_ray.get(local_ray.remote(lambda: str(cache_base())).remote()))
    assert staged <= {path.name for path in (worker_cache / "assets").iterdir()}  # each worker's node copied them
