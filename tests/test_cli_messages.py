"""What the `pipeline` command tells its user: help with no arguments, its version, a single value where a list
is expected, the fields and labels train-classifier cannot use, whether a failed stage needs a retry or a change,
and one line (never a traceback) on Ctrl-C."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from conftest import DATA, REPO, interrupted_cli, pipeline_cli
from pipeline.config import ConfigError, load_config
from pipeline.runner import RunResult
from pipeline.summary import print_result
from stages.tokens.tokenizer import TokenizerConfig, load_model, train_model, training_lines

REAL_WARC = DATA / "warc" / "cc_whirlwind" / "whirlwind.warc.gz"


# ------------------------------------------------------------------------------------------------ help, version


def test_no_arguments_print_the_help_on_stdout_and_exit_0():
    completed = pipeline_cli()
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("usage: pipeline") and "train-classifier" in completed.stdout
    assert completed.stderr == ""


def test_version_prints_the_installed_distribution_version():
    completed = pipeline_cli("--version")
    assert completed.returncode == 0 and completed.stdout == f"pipeline {version('ccpipeline')}\n"


# ------------------------------------------------------------------------------- --set: one value for a list


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(f"name: x\ninput:\n  paths: ['{REAL_WARC}']\nstages: [html_langid, extract]\n")
    return path


def test_set_gives_a_single_path_as_a_list_of_one(tmp_path):
    assert load_config(config_file(tmp_path), [f"input.paths={REAL_WARC}"]).input.paths == [str(REAL_WARC)]


def test_set_gives_a_single_value_as_a_list_of_one_wherever_a_stage_expects_a_list(tmp_path):
    config = load_config(config_file(tmp_path), ["stages.html_langid.languages=de"])
    assert config.stage_settings()[0][1].languages == ["de"]


def test_set_keeps_a_single_value_where_the_field_takes_one(tmp_path):
    config = load_config(config_file(tmp_path), ["input.unit_mb=auto", "stages.1.extract.favor=recall"])
    assert config.input.unit_mb == "auto" and config.stage_settings()[1][1].favor == "recall"


def test_set_still_validates_the_single_value_it_makes_a_list(tmp_path):
    with pytest.raises(ConfigError, match=r"input\.paths: \[0\] '/no/such/\*\.warc' matches no file"):
        load_config(config_file(tmp_path), ["input.paths=/no/such/*.warc"])


def test_a_config_file_may_give_a_single_value_where_a_list_is_expected(tmp_path):
    path = tmp_path / "single.yaml"
    path.write_text(f"name: x\ninput:\n  paths: {REAL_WARC}\nstages:\n  - html_langid:\n      languages: de\n"
                    "  - extract\n")
    config = load_config(path)
    assert config.input.paths == [str(REAL_WARC)] and config.stage_settings()[0][1].languages == ["de"]


# ------------------------------------------------------------------------------------------- train-classifier


@pytest.fixture(scope="module")
def davidson(data_dir) -> Path:
    return data_dir / "toxicity" / "davidson" / "labeled_data.csv"


def train_classifier_cli(davidson: Path, tmp_path: Path, *options: str) -> subprocess.CompletedProcess:
    return pipeline_cli("train-classifier", "--data", str(davidson), "--output", str(tmp_path / "m.bin"),
                        "--epoch", "1", "--dim", "8", "--bucket", "1000", *options)


@pytest.mark.parametrize("option, role", [("--text-field", "tweet"), ("--label-field", "class")])
def test_a_field_the_file_lacks_is_named_with_the_fields_it_has(davidson, tmp_path, option, role):
    other = {"--text-field": ["--label-field", "class"], "--label-field": ["--text-field", "tweet"]}[option]
    completed = train_classifier_cli(davidson, tmp_path, option, "txt", *other)
    assert completed.returncode == 2
    [line] = completed.stderr.strip().splitlines()
    assert line == (f"error: {option} 'txt': no such field in {davidson}; fields: '', count, hate_speech, "
                    "offensive_language, neither, class, tweet")


def test_labels_left_out_of_the_map_are_refused_with_their_counts(davidson, tmp_path):
    completed = train_classifier_cli(davidson, tmp_path, "--text-field", "tweet", "--label-field", "class",
                                     "--map", "0=toxic", "--map", "1=toxic")
    assert completed.returncode == 2
    [line] = completed.stderr.strip().splitlines()
    assert line.startswith("error: --map: labels not in the label map: '2' (4,163 rows);") and "--keep-unmapped" in line
    assert not (tmp_path / "m.bin").exists()


def test_keep_unmapped_trains_the_labels_left_out_as_classes_of_their_own(davidson, tmp_path):
    completed = train_classifier_cli(davidson, tmp_path, "--text-field", "tweet", "--label-field", "class",
                                     "--map", "0=toxic", "--map", "1=toxic", "--keep-unmapped")
    assert completed.returncode == 0, completed.stderr
    assert "'toxic'" in completed.stdout and "'2'" in completed.stdout and (tmp_path / "m.bin").is_file()


# ------------------------------------------------------------------------------------ failed stages: what next


def failed_run(tmp_path: Path, error: str) -> RunResult:
    return RunResult(tmp_path, [], units_total=1, units_resumed=0, failed_stages={"train": error})


def test_a_transient_stage_failure_says_to_run_the_same_command_again(tmp_path, capsys):
    print_result(failed_run(tmp_path, "OSError: [Errno 28] No space left on device\nTraceback ..."))
    assert "Run the same command again to retry the failed stage" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["ConfigError", "RayTaskError(ConfigError)"])
def test_a_config_error_in_a_stage_says_a_retry_fails_the_same_way(tmp_path, capsys, name):
    print_result(failed_run(tmp_path, f"{name}: no text to train a tokenizer on\nTraceback ..."))
    out = capsys.readouterr().out
    assert "FAILED STAGE train: " in out and "A retry fails the same way: change what the error says" in out
    assert "retry the failed stage" not in out


# ------------------------------------------------------------------------------------------------------ Ctrl-C


@pytest.fixture(scope="module")
def tokenizer_model(tmp_path_factory, data_dir) -> Path:
    text = (data_dir / "text" / "tinyshakespeare" / "input.txt").read_text()[:20_000]
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.model"
    path.write_bytes(train_model(training_lines([text], 100_000), TokenizerConfig(vocab_size=400)))
    assert load_model(path.read_bytes()).vocab_size() == 400
    return path


READ_SYSCALL = {"x86_64": 0, "aarch64": 63}[platform.machine()]


def reading_stdin(pid: int) -> bool:
    """Whether the process is blocked reading its standard input: /proc/PID/syscall names the system call a
    blocked process is in, then its arguments (read's first is the file descriptor)."""
    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return False
    return len(fields) > 1 and fields[0] == str(READ_SYSCALL) and int(fields[1], 16) == 0


def test_ctrl_c_ends_a_command_with_one_line_and_status_130(tokenizer_model):
    status, stdout, stderr = interrupted_cli(["tokenizer", "encode", "--model", str(tokenizer_model)],
                                             ready=lambda process: reading_stdin(process.pid))
    assert status == 130
    assert stderr.strip() == "interrupted" and "Traceback" not in stderr and stdout == ""


def test_output_into_a_pipe_its_reader_closed_ends_quietly_with_status_141(tokenizer_model):
    """`pipeline ... | head`: once the reader is gone the command stops printing, with no traceback."""
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "tokenizer", "encode", "--model",
                                str(tokenizer_model), *["word"] * 50_000], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        assert process.stdout.readline()  # the first line, as `head -1` reads it, and then the reader is gone
        process.stdout.close()
        stderr = process.stderr.read().decode()
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 141, stderr
    assert stderr == ""
