"""Run configuration: every mistake is a ConfigError on one line naming the file and the key path; --set overrides
change the validated values with the right types."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import pipeline_cli
from pipeline.config import ConfigError, RunConfig, apply_override, load_config
from stages.extract import ExtractConfig

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL_WARC = DATA / "warc" / "cc_jwarc" / "cc.warc.gz"


def valid_document(**changes) -> dict:
    document = {"name": "test-run", "input": {"paths": [str(REAL_WARC)]}, "stages": ["extract"]}
    document.update(changes)
    return document


def config_file(tmp_path: Path, document: dict | None = None, *, text: str | None = None, name="run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text if text is not None else yaml.safe_dump(document), encoding="utf-8")
    return path


def config_error(path: Path, overrides: list[str] = ()) -> str:
    with pytest.raises(ConfigError) as raised:
        load_config(path, list(overrides))
    message = str(raised.value)
    assert "\n" not in message, message  # one line, always
    return message


def extract_settings(config: RunConfig) -> ExtractConfig:
    [(name, settings)] = config.stage_settings()
    assert name == "extract"
    return settings


# --------------------------------------------------------------------------------------------------- valid files


def test_a_minimal_config_is_valid_and_fills_in_the_defaults(tmp_path):
    config = load_config(config_file(tmp_path, valid_document()))
    assert config.name == "test-run"
    assert config.input.paths == [str(REAL_WARC)]
    assert config.input.format == "auto" and config.input.unit_mb == "auto"
    assert config.batch_rows == 256 and config.rejects is False
    assert extract_settings(config) == ExtractConfig()


@pytest.mark.parametrize("stages", [["extract"], [{"extract": None}], [{"extract": {}}]],
                         ids=["bare-name", "name-with-no-settings", "empty-settings"])
def test_a_stage_without_settings_gets_its_defaults(tmp_path, stages):
    config = load_config(config_file(tmp_path, valid_document(stages=stages)))
    assert extract_settings(config) == ExtractConfig()


def test_a_bare_stage_list_in_yaml_flow_style_is_read(tmp_path):
    text = f"name: x\ninput: {{paths: ['{REAL_WARC}']}}\nstages: [extract]\n"
    assert extract_settings(load_config(config_file(tmp_path, text=text))) == ExtractConfig()


def test_a_stage_with_no_settings_in_block_style_yaml_is_read(tmp_path):
    text = f"name: x\ninput:\n  paths: ['{REAL_WARC}']\nstages:\n  - extract:\n"
    assert extract_settings(load_config(config_file(tmp_path, text=text))) == ExtractConfig()


def test_stage_settings_are_validated_into_the_stage_model(tmp_path):
    stages = [{"extract": {"favor": "recall", "time_limit_s": 2, "min_chars": 50, "include_tables": False}}]
    settings = extract_settings(load_config(config_file(tmp_path, valid_document(stages=stages))))
    assert settings == ExtractConfig(favor="recall", time_limit_s=2.0, min_chars=50, include_tables=False)
    assert isinstance(settings.time_limit_s, float)


def test_resolved_round_trips_through_model_validate(tmp_path):
    document = valid_document(stages=[{"extract": {"favor": "balanced"}}], rejects=True, ray={"workers": 2})
    config = load_config(config_file(tmp_path, document))
    resolved = config.resolved()
    again = RunConfig.model_validate(resolved)
    assert again == config
    assert again.resolved() == resolved
    assert resolved["stages"] == [{"extract": ExtractConfig(favor="balanced").model_dump(mode="json")}]


def test_resolved_is_plain_yaml_data(tmp_path):
    resolved = load_config(config_file(tmp_path, valid_document())).resolved()
    assert yaml.safe_load(yaml.safe_dump(resolved)) == resolved


def test_the_output_argument_sets_the_run_directory(tmp_path):
    config = load_config(config_file(tmp_path, valid_document()), output=str(tmp_path / "out"))
    assert config.run_dir() == tmp_path / "out"


def test_a_glob_or_directory_input_path_is_accepted_when_it_matches_files(tmp_path):
    paths = [str(DATA / "warc" / "dolma_wget" / "*.warc.gz"), str(DATA / "warc" / "cc_whirlwind")]
    config = load_config(config_file(tmp_path, valid_document(input={"paths": paths})))
    assert config.input.paths == paths


# ---------------------------------------------------------------------------------------------------- mistakes


def test_an_unknown_top_level_key_is_named(tmp_path):
    path = config_file(tmp_path, valid_document(stagez=["extract"]))
    message = config_error(path)
    assert message == f"{path}: stagez: unknown key"


def test_an_unknown_nested_key_is_named_with_its_path(tmp_path):
    path = config_file(tmp_path, valid_document(input={"pathz": [str(REAL_WARC)]}))
    message = config_error(path)
    assert message.startswith(f"{path}: ") and "input.pathz: unknown key" in message


def test_an_unknown_stage_setting_is_named_with_its_path(tmp_path):
    path = config_file(tmp_path, valid_document(stages=[{"extract": {"favour": "recall"}}]))
    assert "stages[0].extract.favour: unknown key" in config_error(path)


@pytest.mark.parametrize("stages", [["extract", "dedupe"], [{"dedupe": {"threshold": 0.8}}]], ids=["bare", "with-settings"])
def test_an_unknown_stage_name_is_named(tmp_path, stages):
    path = config_file(tmp_path, valid_document(stages=stages))
    message = config_error(path)
    assert str(path) in message and "stages" in message and "'dedupe'" in message
    assert "extract" in message  # says which stages exist


def test_a_wrong_type_names_the_key_path(tmp_path):
    path = config_file(tmp_path, valid_document(stages=[{"extract": {"time_limit_s": "fast"}}]))
    message = config_error(path)
    assert message.startswith(f"{path}: stages[0].extract.time_limit_s: ")
    assert "number" in message


def test_an_enum_value_out_of_range_lists_the_allowed_values(tmp_path):
    path = config_file(tmp_path, valid_document(stages=[{"extract": {"favor": "fast"}}]))
    message = config_error(path)
    assert message.startswith(f"{path}: stages[0].extract.favor: ")
    assert all(value in message for value in ("precision", "balanced", "recall"))


def test_a_value_out_of_bounds_names_the_key_path(tmp_path):
    path = config_file(tmp_path, valid_document(stages=[{"extract": {"min_chars": 0}}]))
    assert "stages[0].extract.min_chars" in config_error(path)


def test_a_missing_required_key_is_named(tmp_path):
    document = valid_document()
    del document["name"]
    path = config_file(tmp_path, document)
    assert config_error(path) == f"{path}: name: required key is missing"


def test_an_empty_stage_list_is_an_error(tmp_path):
    path = config_file(tmp_path, valid_document(stages=[]))
    assert "stages" in config_error(path)


@pytest.mark.parametrize("stages", [["extract", "gopher_quality", "c4", "gopher_quality"],
                                    ["extract", {"gopher_quality": {"min_words": 10}}, {"gopher_quality": None}]],
                         ids=["bare", "with-other-settings"])
def test_a_per_document_stage_listed_twice_is_refused_with_its_index(tmp_path, stages):
    """The funnel counts a stage by name: a second gopher_quality would be counted into the first."""
    path = config_file(tmp_path, valid_document(stages=stages))
    assert config_error(path) == f"{path}: stages: [{len(stages) - 1}] gopher_quality is listed twice"


def test_an_input_path_that_matches_no_file_is_named_with_the_pattern(tmp_path):
    pattern = str(tmp_path / "nowhere" / "*.warc.gz")
    path = config_file(tmp_path, valid_document(input={"paths": [str(REAL_WARC), pattern]}))
    message = config_error(path)
    assert str(path) in message and "input.paths" in message and pattern in message
    assert "[1]" in message  # the second entry, not the first


def test_several_problems_are_all_reported_on_one_line(tmp_path):
    document = valid_document(input={"paths": ["/nowhere/*.warc.gz"]}, stages=[{"extract": {"favor": "fast"}}])
    message = config_error(config_file(tmp_path, document))
    assert "input.paths" in message and "stages[0].extract.favor" in message and "; " in message


def test_invalid_yaml_gives_the_line_number(tmp_path):
    text = "name: x\ninput:\n  paths: ['a']\nstages: extract: oops\n"
    path = config_file(tmp_path, text=text)
    message = config_error(path)
    assert message.startswith(f"{path} (line 4, column ")
    assert "not valid YAML" in message


@pytest.mark.parametrize("text", ["- extract\n- dedupe\n", "just a string\n", "42\n", ""],
                         ids=["list", "string", "number", "empty-file"])
def test_a_top_level_that_is_not_a_mapping_is_an_error(tmp_path, text):
    path = config_file(tmp_path, text=text)
    assert config_error(path) == f"{path}: the top level must be a mapping of keys to values"


def test_a_missing_config_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "absent.yaml"
    assert config_error(path) == f"{path}: no such config file"


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(yaml.safe_dump(valid_document()).encode() + "# r\xe9sum\xe9 of this run\n".encode("latin-1"))
    assert str(path) in config_error(path)


def test_a_directory_given_as_the_config_file_is_a_config_error(tmp_path):
    assert str(tmp_path) in config_error(tmp_path)


def test_a_control_character_in_the_file_is_reported_on_one_line(tmp_path):
    path = tmp_path / "bell.yaml"
    path.write_bytes(b"name: a\x07b\n" + yaml.safe_dump(valid_document()).split("\n", 1)[1].encode())
    message = config_error(path)
    assert str(path) in message


# ------------------------------------------------------------------------------------------------- --set overrides


def test_overrides_change_the_validated_values_and_keep_their_types(tmp_path):
    path = config_file(tmp_path, valid_document())
    config = load_config(path, ["stages.extract.favor=recall", "ray.workers=3", "input.unit_mb=2",
                                "stages.0.extract.min_chars=5", "rejects=true", "stages.extract.include_tables=false",
                                "stages.extract.time_limit_s=2.5"])
    settings = extract_settings(config)
    assert settings.favor == "recall"
    assert config.ray.workers == 3 and type(config.ray.workers) is int
    assert config.input.unit_mb == 2.0 and type(config.input.unit_mb) is float
    assert settings.min_chars == 5 and type(settings.min_chars) is int
    assert config.rejects is True
    assert settings.include_tables is False
    assert settings.time_limit_s == 2.5


def test_an_override_replaces_a_value_set_in_the_file(tmp_path):
    path = config_file(tmp_path, valid_document(stages=[{"extract": {"favor": "precision", "min_chars": 9}}]))
    settings = extract_settings(load_config(path, ["stages.extract.favor=balanced"]))
    assert settings.favor == "balanced" and settings.min_chars == 9  # the other settings stay


def test_an_override_can_set_a_list(tmp_path):
    path = config_file(tmp_path, valid_document())
    other = str(DATA / "warc" / "cc_whirlwind" / "whirlwind.warc.gz")
    assert load_config(path, [f"input.paths=['{other}']"]).input.paths == [other]


def test_an_override_into_a_stage_given_with_no_settings_works(tmp_path):
    text = f"name: x\ninput:\n  paths: ['{REAL_WARC}']\nstages:\n  - extract:\n"
    assert extract_settings(load_config(config_file(tmp_path, text=text), ["stages.extract.fallback=true"])).fallback


def test_an_override_with_a_wrong_value_is_validated_like_the_file(tmp_path):
    path = config_file(tmp_path, valid_document())
    message = config_error(path, ["stages.extract.favor=fast"])
    assert message.startswith(f"{path}: stages[0].extract.favor: ")


def test_an_override_of_an_unknown_key_is_an_unknown_key(tmp_path):
    path = config_file(tmp_path, valid_document())
    assert "ray.worker: unknown key" in config_error(path, ["ray.worker=3"])


@pytest.mark.parametrize("override", ["stages.dedupe.threshold=0.8", "stages.3.extract.min_chars=5"])
def test_an_override_into_a_missing_stage_is_an_error(tmp_path, override):
    path = config_file(tmp_path, valid_document())
    message = config_error(path, [override])
    assert str(path) in message and override.split("=")[0] in message and "no item" in message


def test_an_override_that_is_not_valid_yaml_exits_2_with_one_line_naming_it(tmp_path):
    path = config_file(tmp_path, valid_document())
    completed = pipeline_cli("run", "--config", str(path), "--output", str(tmp_path / "out"), "--set", "name=[unclosed")
    assert completed.returncode == 2
    [line] = completed.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: --set name: ") and "not valid YAML" in line
    assert not (tmp_path / "out").exists()


def test_an_override_without_an_equals_sign_is_an_error():
    with pytest.raises(ConfigError, match="expected key.path=value"):
        apply_override({}, "ray.workers", "run.yaml")


def test_an_override_through_a_value_is_an_error():
    with pytest.raises(ConfigError, match="not a mapping"):
        apply_override({"name": "x"}, "name.first=1", "run.yaml")


def test_apply_override_creates_missing_mappings():
    raw: dict = {}
    apply_override(raw, "ray.object_store_mb=1024", "run.yaml")
    assert raw == {"ray": {"object_store_mb": 1024}}
