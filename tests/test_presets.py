"""A rule stage's `preset` sets every threshold as the named recipe does (stages/presets.py); settings written beside
it override it; no preset keeps the stage's defaults; an unknown preset, or one without rules for the stage, stops the
config with a message that names it."""

import pytest
import yaml

from conftest import documents_table
from pipeline.config import ConfigError, RunConfig, load_config
from stages import STAGES
from stages.c4 import C4, C4Config
from stages.presets import PRESETS, recipes_for
from stages.text_tools import RuleStage

RECIPE_STAGES = [(recipe, stage) for recipe, stages in PRESETS.items() for stage in stages]
RULE_STAGES = [stage for stage in STAGES.values() if issubclass(stage, RuleStage)]


def write_config(tmp_path, stages: list) -> str:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "A document."}\n')
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"name": "presets", "input": {"paths": [str(corpus)]}, "stages": stages}))
    return str(path)


@pytest.mark.parametrize(("recipe", "stage"), RECIPE_STAGES,
                         ids=[f"{recipe}-{stage}" for recipe, stage in RECIPE_STAGES])
def test_a_preset_sets_every_value_of_its_recipe(recipe, stage):
    settings = STAGES[stage].Config(preset=recipe)
    for key, value in PRESETS[recipe][stage].items():
        assert getattr(settings, key) == (list(value) if isinstance(value, tuple) else value), key


@pytest.mark.parametrize("stage", RULE_STAGES, ids=[stage.name for stage in RULE_STAGES])
def test_every_rule_stage_has_presets_for_its_own_name(stage):
    assert stage.Config.stage_name == stage.name
    assert recipes_for(stage.name)


def test_without_a_preset_the_defaults_stay_the_c4_papers():
    settings = C4Config()
    assert (settings.preset, settings.require_terminal_punct) == (None, True)
    assert (settings.min_words_per_line, settings.min_sentences) == (3, 5)


def test_the_c4_preset_takes_the_numbers_of_the_code_that_built_c4():
    settings = C4Config(preset="c4")
    assert (settings.min_words_per_line, settings.min_sentences, settings.require_terminal_punct) == (5, 3, True)


def test_fineweb_runs_c4_without_its_terminal_punctuation_rule():
    line = "A line about the weather without a final mark"
    text = "\n".join(f"{line} {index}" for index in range(5))
    kept = C4(C4Config(preset="fineweb"))(documents_table([text]))
    assert kept.column("drop_reason").to_pylist() == [None]
    assert C4(C4Config())(documents_table([text])).column("drop_reason").to_pylist() == ["no_lines_left"]


def test_a_setting_beside_a_preset_overrides_it():
    settings = C4Config(preset="c4", min_sentences=4, max_word_length=None)
    assert (settings.min_sentences, settings.max_word_length, settings.min_words_per_line) == (4, None, 5)


def test_a_preset_and_its_override_reach_the_workers_unchanged(tmp_path):
    config = load_config(write_config(tmp_path, [{"c4": {"preset": "c4", "min_sentences": 4}}]))
    on_worker = RunConfig.for_worker(config.resolved())
    assert on_worker.stage_settings() == config.stage_settings()
    settings = dict(on_worker.stage_settings())["c4"]
    assert (settings.preset, settings.min_sentences, settings.min_words_per_line) == ("c4", 4, 5)


def test_a_preset_can_be_set_from_the_command_line(tmp_path):
    config = load_config(write_config(tmp_path, ["c4"]), overrides=["stages.c4.preset=fineweb"])
    assert dict(config.stage_settings())["c4"].require_terminal_punct is False


def test_an_unknown_preset_is_a_config_error_that_lists_the_known_ones(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(write_config(tmp_path, [{"fineweb": {"preset": "refinedweb"}}]))
    assert "stages[0].fineweb.preset" in str(error.value)
    assert "'c4', 'dclm', 'fineweb' or 'gopher'" in str(error.value)


def test_a_preset_without_rules_for_the_stage_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(write_config(tmp_path, [{"c4": {"preset": "gopher"}}]))
    assert "preset 'gopher' sets no c4 rules; the presets for c4 are c4, fineweb" in str(error.value)
