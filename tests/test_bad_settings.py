"""Every stage setting has a domain: a threshold outside it (a negative count, a share above 1, a minimum above its
maximum) is refused before any work, as a one-line ConfigError naming the file and the key path, instead of
silently dropping every document. A null that switches a rule off stays allowed."""

from __future__ import annotations

import types
import typing
from pathlib import Path

import pytest
import yaml

from conftest import pipeline_cli
from pipeline.config import ConfigError, load_config
from stages import STAGES

REAL_WARC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "warc" / "cc_jwarc" / "cc.warc.gz"
TOKENIZE = {"tokenize": {"model": "tokenizer.model"}}  # train needs it before it; the model is checked at set-up

# (stages, the key path the message names, other words it must hold)
BAD_SETTINGS = {
    "gopher_quality negative min_words": ([{"gopher_quality": {"min_words": -5}}],
                                          "stages[0].gopher_quality.min_words", ()),
    "gopher_quality negative mean word length": ([{"gopher_quality": {"min_mean_word_length": -1}}],
                                                 "stages[0].gopher_quality.min_mean_word_length", ()),
    "gopher_quality negative hash ratio": ([{"gopher_quality": {"max_hash_word_ratio": -0.1}}],
                                           "stages[0].gopher_quality.max_hash_word_ratio", ()),
    "gopher_quality share of lines above 1": ([{"gopher_quality": {"max_bullet_lines_ratio": 1.5}}],
                                              "stages[0].gopher_quality.max_bullet_lines_ratio", ()),
    "gopher_quality negative share": ([{"gopher_quality": {"min_alpha_words_ratio": -0.2}}],
                                      "stages[0].gopher_quality.min_alpha_words_ratio", ()),
    "gopher_quality negative stop words": ([{"gopher_quality": {"min_stop_words": -1}}],
                                           "stages[0].gopher_quality.min_stop_words", ()),
    "gopher_quality min_words above max_words": ([{"gopher_quality": {"min_words": 600, "max_words": 500}}],
                                                 "stages[0].gopher_quality", ("min_words", "max_words")),
    "gopher_quality mean word length range reversed": (
        [{"gopher_quality": {"min_mean_word_length": 8, "max_mean_word_length": 4}}],
        "stages[0].gopher_quality", ("min_mean_word_length", "max_mean_word_length")),
    "gopher_quality more stop words required than listed": (
        [{"gopher_quality": {"min_stop_words": 3, "stop_words": ["the", "and", "the"]}}],
        "stages[0].gopher_quality", ("min_stop_words", "stop_words")),
    "gopher_repetition share above 1": ([{"gopher_repetition": {"max_dup_line_frac": 1.2}}],
                                        "stages[0].gopher_repetition.max_dup_line_frac", ()),
    "gopher_repetition negative share": ([{"gopher_repetition": {"max_top_2gram_frac": -0.5}}],
                                         "stages[0].gopher_repetition.max_top_2gram_frac", ()),
    "c4 negative min_sentences": ([{"c4": {"min_sentences": -2}}], "stages[0].c4.min_sentences", ()),
    "c4 negative words per line": ([{"c4": {"min_words_per_line": -1}}], "stages[0].c4.min_words_per_line", ()),
    "c4 zero max_word_length": ([{"c4": {"max_word_length": 0}}], "stages[0].c4.max_word_length", ()),
    "c4 negative max_bad_words": ([{"c4": {"max_bad_words": -1}}], "stages[0].c4.max_bad_words", ()),
    "unknown preset": ([{"fineweb": {"preset": "refinedweb"}}], "stages[0].fineweb.preset", ("fineweb", "gopher")),
    "preset without rules for the stage": ([{"c4": {"preset": "gopher"}}], "stages[0].c4", ("gopher",)),
    "url_filter negative soft-banned limit": ([{"url_filter": {"max_soft_banned_words": -1}}],
                                              "stages[0].url_filter.max_soft_banned_words", ()),
    "fineweb punctuation share above 1": ([{"fineweb": {"min_line_punct_ratio": 7.5}}],
                                          "stages[0].fineweb.min_line_punct_ratio", ()),
    "fineweb negative short-line share": ([{"fineweb": {"max_short_line_ratio": -0.1}}],
                                          "stages[0].fineweb.max_short_line_ratio", ()),
    "fineweb duplicate share above 1": ([{"fineweb": {"max_dup_line_char_ratio": 2}}],
                                        "stages[0].fineweb.max_dup_line_char_ratio", ()),
    "fineweb negative newlines per word": ([{"fineweb": {"max_newline_word_ratio": -1}}],
                                           "stages[0].fineweb.max_newline_word_ratio", ()),
    "fineweb negative short_line_length": ([{"fineweb": {"short_line_length": -1}}],
                                           "stages[0].fineweb.short_line_length", ()),
    "html_langid probability above 1": ([{"html_langid": {"min_probability": 2}}],
                                        "stages[0].html_langid.min_probability", ()),
    "langid score above 1": ([{"langid": {"min_score": 1.5}}], "stages[0].langid.min_score", ()),
    "langid no language to keep": ([{"langid": {"languages": []}}], "stages[0].langid.languages", ()),
    "toxicity_classifier threshold above 1": ([{"toxicity_classifier": {"model": "t.bin", "threshold": 2}}],
                                              "stages[0].toxicity_classifier.threshold", ()),
    "quality_classifier negative threshold": ([{"quality_classifier": {"model": "q.bin", "threshold": -0.1}}],
                                              "stages[0].quality_classifier.threshold", ()),
    "toxic_words negative max_matches": ([{"toxic_words": {"word_list": "w.txt", "max_matches": -1}}],
                                         "stages[0].toxic_words.max_matches", ()),
    "pii score above 1": ([{"pii": {"score_threshold": 1.5}}], "stages[0].pii.score_threshold", ()),
    "pii negative max_pii": ([{"pii": {"max_pii": -1}}], "stages[0].pii.max_pii", ()),
    "decontaminate n below 3": ([{"decontaminate": {"n": 2}}], "stages[0].decontaminate.n", ()),
    "decontaminate coverage above 1": ([{"decontaminate": {"min_item_coverage": 1.5}}],
                                       "stages[0].decontaminate.min_item_coverage", ()),
    "decontaminate span shorter than n": ([{"decontaminate": {"min_span_words": 8}}], "stages[0].decontaminate",
                                          ("min_span_words", "n (13)")),
    "decontaminate both rules off": ([{"decontaminate": {"min_item_coverage": None, "min_span_words": None}}],
                                     "stages[0].decontaminate", ("min_item_coverage", "min_span_words")),
    "decontaminate zero items per n-gram": ([{"decontaminate": {"max_items_per_ngram": 0}}],
                                            "stages[0].decontaminate.max_items_per_ngram", ()),
    "decontaminate negative margin": ([{"decontaminate": {"redact_margin_chars": -1}}],
                                      "stages[0].decontaminate.redact_margin_chars", ()),
    "decontaminate unknown action": ([{"decontaminate": {"action": "delete"}}], "stages[0].decontaminate.action",
                                     ("drop", "redact", "flag")),
    "decontaminate set without fields": (
        [{"decontaminate": {"eval_sets": [{"name": "gsm8k", "paths": ["test.jsonl"], "fields": []}]}}],
        "stages[0].decontaminate.eval_sets[0].fields", ()),
    "decontaminate two sets of one name": (
        [{"decontaminate": {"eval_sets": [{"name": "gsm8k", "paths": ["a.jsonl"], "fields": ["question"]},
                                          {"name": "gsm8k", "paths": ["b.jsonl"], "fields": ["question"]}]}}],
        "stages[0].decontaminate.eval_sets", ("gsm8k",)),
    "extract zero time limit": ([{"extract": {"time_limit_s": 0}}], "stages[0].extract.time_limit_s", ()),
    "extract zero min_chars": ([{"extract": {"min_chars": 0}}], "stages[0].extract.min_chars", ()),
    "dedup Jaccard above 1": ([{"dedup": {"verify_jaccard": 1.5}}], "stages[0].dedup.verify_jaccard", ()),
    "dedup zero bands": ([{"dedup": {"minhash": {"bands": 0}}}], "stages[0].dedup.minhash.bands", ()),
    "tokenizer zero coverage": ([{"tokenizer": {"character_coverage": 0}}],
                                "stages[0].tokenizer.character_coverage", ()),
    "tokenizer tiny vocabulary": ([{"tokenizer": {"vocab_size": 10}}], "stages[0].tokenizer.vocab_size", ()),
    "tokenize everything in validation": ([{"tokenize": {"model": "m", "validation_fraction": 1}}],
                                          "stages[0].tokenize.validation_fraction", ()),
    "tokenize zero shard size": ([{"tokenize": {"model": "m", "shard_tokens": 0}}],
                                 "stages[0].tokenize.shard_tokens", ()),
    "train zero learning rate": ([TOKENIZE, {"train": {"learning_rate": 0}}], "stages[1].train.learning_rate", ()),
    "train minimum learning rate above the peak": (
        [TOKENIZE, {"train": {"learning_rate": 1e-4, "min_learning_rate": 1e-3}}],
        "stages[1].train", ("min_learning_rate", "learning_rate")),
    "train width not a multiple of the heads": ([TOKENIZE, {"train": {"model": {"n_head": 12, "n_embd": 100}}}],
                                                "stages[1].train.model", ("n_embd", "n_head")),
    "train dropout of 1": ([TOKENIZE, {"train": {"model": {"dropout": 1}}}], "stages[1].train.model.dropout", ()),
}


def config_error(tmp_path: Path, stages: list) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "input": {"paths": [str(REAL_WARC)]}, "stages": stages}))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    return message


@pytest.mark.parametrize("case", BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_a_setting_outside_its_domain_is_refused_with_its_key_path(tmp_path, case):
    stages, location, words = case
    message = config_error(tmp_path, stages)
    assert f"{location}: " in message, message
    assert all(word in message for word in words), message


def test_every_stage_with_settings_has_a_bad_value_in_the_table():
    tested = {next(iter(stages[-1])) for stages, _, _ in BAD_SETTINGS.values()}
    assert tested == set(STAGES)


def _switch_offs() -> list[tuple[str, str]]:
    """(stage, setting) for every stage setting that takes a number or null."""
    found = []
    for name, stage in STAGES.items():
        for setting, field in stage.Config.model_fields.items():
            kinds = set(typing.get_args(field.annotation)) if typing.get_origin(field.annotation) in (
                typing.Union, types.UnionType) else set()
            if type(None) in kinds and kinds & {int, float}:
                found.append((name, setting))
    return found


@pytest.mark.parametrize("stage, setting", _switch_offs())
def test_null_still_switches_a_rule_off(stage, setting):
    required = {"toxicity_classifier": {"model": "t.bin"}, "quality_classifier": {"model": "q.bin"},
                "toxic_words": {"word_list": "w.txt"}}.get(stage, {})
    assert getattr(STAGES[stage].Config(**required, **{setting: None}), setting) is None


def test_the_command_exits_2_with_one_line_naming_the_setting(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "input": {"paths": [str(REAL_WARC)]},
                                    "stages": ["extract", {"c4": {"min_sentences": -2}}]}))
    completed = pipeline_cli("run", "--config", str(path), "--output", str(tmp_path / "out"))
    assert completed.returncode == 2
    [line] = completed.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: ") and "stages[1].c4.min_sentences" in line
    assert not (tmp_path / "out").exists()
