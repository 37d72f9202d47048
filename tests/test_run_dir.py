"""The run directory: saved config, refusal to mix configs, and clean-up of a killed worker's temporary files."""

import pytest
import yaml

from pipeline.run_dir import RunDir, RunDirConflict, first_difference, prepare_run_dir

CONFIG = {"name": "t", "input": {"paths": ["a.warc.gz"]}, "stages": [{"extract": {"favor": "precision"}}],
          "ray": {"workers": 2}, "output": "runs/t"}


def test_the_resolved_config_and_package_versions_are_saved(tmp_path):
    run = RunDir(tmp_path / "run")
    assert prepare_run_dir(run, CONFIG, overwrite=False) is False
    saved = yaml.safe_load(run.config_file.read_text())
    assert saved["config"] == CONFIG
    assert {"python", "ray", "pyarrow", "trafilatura", "warcio"} <= set(saved["versions"])


def test_a_rerun_with_the_same_outcome_settings_resumes_even_with_other_execution_settings(tmp_path):
    run = RunDir(tmp_path / "run")
    prepare_run_dir(run, CONFIG, overwrite=False)
    assert prepare_run_dir(run, {**CONFIG, "ray": {"workers": 8}, "output": "elsewhere"}, overwrite=False) is True


def test_a_rerun_with_another_config_is_refused_with_the_key_that_differs(tmp_path):
    run = RunDir(tmp_path / "run")
    prepare_run_dir(run, CONFIG, overwrite=False)
    changed = {**CONFIG, "stages": [{"extract": {"favor": "recall"}}]}
    with pytest.raises(RunDirConflict, match=r"stages\[0\]\.extract\.favor"):
        prepare_run_dir(run, changed, overwrite=False)
    assert prepare_run_dir(run, changed, overwrite=True) is False  # --overwrite starts afresh


def test_temporary_files_of_a_killed_worker_are_removed_on_resume_and_finished_parts_kept(tmp_path):
    run = RunDir(tmp_path / "run")
    prepare_run_dir(run, CONFIG, overwrite=False)
    run.documents.mkdir()
    (run.documents / ".part-u1.parquet.0a1b2c3d.tmp").write_bytes(b"half")
    (run.documents / "part-u0.parquet").write_bytes(b"done")
    prepare_run_dir(run, CONFIG, overwrite=False)
    assert sorted(path.name for path in run.documents.iterdir()) == ["part-u0.parquet"]


def test_first_difference_names_the_first_differing_path():
    assert first_difference({"a": {"b": [1, {"c": 2}]}}, {"a": {"b": [1, {"c": 3}]}}) == "a.b[1].c"
    assert first_difference({"a": 1}, {"a": 1, "z": 0}) == "z"
    assert first_difference([1, 2], [1, 2, 3]) == "the top level"
    assert first_difference({"a": [1]}, {"a": [1]}) is None
