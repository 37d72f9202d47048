"""What every heuristic rule stage (Gopher quality, Gopher repetition, C4, FineWeb) guarantees, whatever its input:
a decision for every row without an exception, signal columns typed and set for kept and dropped rows alike, rows
in their order, reasons named after the stage's rules, and decisions that can be re-made from the saved signals."""

import re
import time

import pyarrow as pa
import pytest

from conftest import BAD_INPUTS, documents_table
from stages.c4 import C4
from stages.fineweb import FineWeb
from stages.gopher_quality import GopherQuality
from stages.gopher_repetition import GopherRepetition
from stages.text_tools import decide

STAGES = (GopherQuality, GopherRepetition, C4, FineWeb)
NULL_WHEN_OFF = {"c4_bad_words"}  # the bad-words rule has no signal without a list
EXTRA_BAD_INPUTS = {
    "cjk_without_spaces": "中文字符，测试。" * 600_000,  # 5 MB, one whitespace-free chunk
    "one_long_token": "x" * 5_000_000,
    "control_characters": "\x00\x01\x02 text \x1b[31m red \x7f\u200b\u2028 line\u2029 end",
}
ALL_BAD_INPUTS = BAD_INPUTS | EXTRA_BAD_INPUTS


@pytest.fixture(scope="module")
def articles(data_dir) -> list[str]:
    """The first 30 articles of WikiText-2's validation set (real prose, lists and headings; lines stripped), and
    the first six sentences of each."""
    text = (data_dir / "quality" / "wikipedia" / "wikitext2" / "valid.txt").read_text(encoding="utf-8")
    articles = [article for article in re.split(r"^ = [^=].* = $", text, flags=re.MULTILINE) if article.strip()]
    whole = ["\n".join(line.strip() for line in article.splitlines()).strip() for article in articles[:30]]
    return whole + [" . ".join(article.split(" . ")[:6]) + " ." for article in whole]


def build(stage_class):
    return stage_class(stage_class.Config())


@pytest.mark.parametrize("kind", sorted(ALL_BAD_INPUTS))
@pytest.mark.parametrize("stage_class", STAGES, ids=[stage.name for stage in STAGES])
def test_bad_input_gets_a_decision_and_every_signal(stage_class, kind):
    stage = build(stage_class)
    started = time.perf_counter()
    out = stage(documents_table([ALL_BAD_INPUTS[kind]]))
    assert time.perf_counter() - started < 5, "a 5 MB document must take seconds, not minutes"
    assert out.column("error").to_pylist() == [None]
    assert out.column("drop_reason")[0].as_py() in {None, *(rule.reason or rule.signal for rule in stage.rules)}
    for field in stage.output_fields:
        assert out.schema.field(field.name).type == field.type
        assert field.name in NULL_WHEN_OFF or out.column(field.name)[0].is_valid, field.name


@pytest.mark.parametrize("stage_class", STAGES, ids=[stage.name for stage in STAGES])
def test_a_null_text_is_read_as_empty(stage_class):
    docs = documents_table([""])
    docs = docs.set_column(docs.schema.get_field_index("text"), "text", pa.array([None], pa.string()))
    out = build(stage_class)(docs)
    assert out.column("error").to_pylist() == [None]


@pytest.mark.parametrize("stage_class", STAGES, ids=[stage.name for stage in STAGES])
def test_rows_keep_their_order_and_every_row_gets_typed_signals(stage_class, articles):
    stage = build(stage_class)
    texts = articles + list(BAD_INPUTS.values())[:2]
    docs = documents_table(texts)
    out = stage(docs)
    assert out.num_rows == docs.num_rows
    assert out.column("id").to_pylist() == docs.column("id").to_pylist()
    reasons = out.column("drop_reason").to_pylist()
    assert None in reasons and any(reasons), "the batch should mix kept and dropped documents"
    for field in stage.output_fields:
        assert out.schema.field(field.name).type == field.type
        assert field.name in NULL_WHEN_OFF or out.column(field.name).null_count == 0, field.name


@pytest.mark.parametrize("stage_class", STAGES, ids=[stage.name for stage in STAGES])
def test_an_empty_batch_gives_an_empty_batch_with_the_signal_columns(stage_class):
    stage = build(stage_class)
    out = stage(documents_table([]))
    assert out.num_rows == 0
    assert all(out.schema.field(field.name).type == field.type for field in stage.output_fields)


@pytest.mark.parametrize("stage_class", STAGES, ids=[stage.name for stage in STAGES])
def test_signal_columns_are_named_after_the_stage_and_reasons_are_unique(stage_class):
    assert all(field.name.startswith(stage_class.name + "_") for field in stage_class.output_fields)
    reasons = [(rule.reason or rule.signal, rule.setting) for rule in stage_class.rules]
    assert len(set(reasons)) == len(reasons)
    signals = {field.name for field in stage_class.output_fields}
    assert all(f"{stage_class.name}_{rule.signal}" in signals for rule in stage_class.rules)


@pytest.mark.parametrize("stage_class", STAGES, ids=[stage.name for stage in STAGES])
def test_every_setting_says_what_it_is_and_its_published_default(stage_class):
    for name, field in stage_class.Config.model_fields.items():
        assert field.description and len(field.description) > 20, name


@pytest.mark.parametrize("stage_class", STAGES, ids=[stage.name for stage in STAGES])
def test_decisions_can_be_remade_from_the_saved_signals_with_other_thresholds(stage_class, articles):
    """A notebook re-thresholding saved signal columns gets what a re-run with those thresholds would give."""
    saved = build(stage_class)(documents_table(articles))
    signals = {field.name: saved.column(field.name).to_pylist() for field in stage_class.output_fields}
    defaults = stage_class.Config()
    thresholds = {rule.setting for rule in stage_class.rules if isinstance(getattr(defaults, str(rule.setting), None),
                                                                           (int, float))}
    stricter = defaults.model_copy(update={
        name: type(value)(value * 1.5 if name.startswith("min_") else value / 1.5)
        for name, value in defaults.model_dump().items() if name in thresholds
    })
    rerun = stage_class(stricter)(documents_table(articles)).column("drop_reason").to_pylist()
    assert decide(stage_class.rules, stage_class.name, signals, stricter) == rerun
    assert rerun != saved.column("drop_reason").to_pylist(), "stricter thresholds should change some decisions"


def test_a_document_that_raises_is_failed_alone_with_the_exception_named():
    class Fragile(FineWeb):
        def measure(self, text):
            if text == "boom":
                raise ValueError("cannot measure this")
            return super().measure(text)

    out = Fragile(FineWeb.Config())(documents_table(["A fine sentence here.", "boom"]))
    assert out.column("error").to_pylist() == [None, "fineweb_ValueError"]
    assert out.column("error_detail").to_pylist() == [None, "cannot measure this"]
    assert out.column("drop_reason").to_pylist() == ["short_line_ratio", None]
    assert out.column("fineweb_line_punct_ratio").to_pylist() == [1.0, None]
