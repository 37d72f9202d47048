"""An ablation variant chosen by the run's saved signals is exactly what a run with the variant's thresholds keeps:
real pages through real runs (in this process), the selection compared id by id with a second full run."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as pads
import pytest

from conftest import ABLATION_LANGID, ablation_stages, pages_run
from pipeline.ablation.select import Selection, VariantError, make_variant, select
from pipeline.config import load_config

LANGID = ABLATION_LANGID
BASE_STAGES = [{"gopher_repetition": {}}, {"gopher_quality": {}}, {"langid": LANGID}, {"fineweb": {}}]


@pytest.fixture(scope="module")
def pages(pages_jsonl) -> Path:
    return pages_jsonl


@pytest.fixture(scope="module")
def base(ablation_base) -> Path:
    """The run the variants select from: the rule stages at their defaults, English kept, a quality classifier that
    drops little."""
    return ablation_base


def run(directory: Path, pages: Path, stages: list[dict], lid_model: Path) -> Path:
    return pages_run(directory, pages, stages, lid_model)


def selected_ids(config_path: Path, changes: dict) -> tuple[set[str], Selection]:
    config = load_config(str(config_path))
    stages = config.document_stages()
    variant = make_variant("v", stages, changes)
    ids, total = set(), Selection()
    for folder in ("documents", "rejects"):
        table = pads.dataset(str(config_path.parent / "run" / folder)).to_table()
        chosen, counts = select(table, variant, [name for name, _ in stages])
        ids |= set(table.filter(chosen).column("id").to_pylist())
        total.add(counts)
    return ids, total


def kept_ids(config_path: Path) -> set[str]:
    return set(pads.dataset(str(config_path.parent / "run" / "documents")).to_table(columns=["id"])
               .column("id").to_pylist())


@pytest.mark.parametrize("changes, full_run", [
    # stricter: more words, more lines ending in punctuation
    ({"gopher_repetition": None, "gopher_quality": {"min_words": 150}, "langid": None,
      "fineweb": {"min_line_punct_ratio": 0.3}},
     [{"gopher_repetition": {}}, {"gopher_quality": {"min_words": 150}}, {"langid": LANGID},
      {"fineweb": {"min_line_punct_ratio": 0.3}}]),
    # looser, and fineweb left out: documents the base run dropped come back
    ({"gopher_repetition": None, "gopher_quality": {"min_words": 20, "max_hash_word_ratio": None}},
     [{"gopher_repetition": {}}, {"gopher_quality": {"min_words": 20, "max_hash_word_ratio": None}}]),
    # a stage that is not a rule stage keeps the run's own decisions: langid's, English only, fineweb left out
    ({"gopher_repetition": None, "gopher_quality": None, "langid": None},
     [{"gopher_repetition": {}}, {"gopher_quality": {}}, {"langid": LANGID}]),
])
def test_a_variant_selects_exactly_what_a_run_with_its_thresholds_keeps(tmp_path, base, pages, lid_model, changes,
                                                                        full_run):
    ids, counts = selected_ids(base, changes)
    assert counts.undecidable == 0 and counts.selected == len(ids) > 100
    assert ids == kept_ids(run(tmp_path, pages, full_run, lid_model))


def test_loosening_a_stage_before_one_the_variant_keeps_leaves_undecidable_documents_out(base):
    """Documents the base run's gopher_quality dropped never reached fineweb: with gopher_quality loosened and fineweb
    applied, those that now pass gopher_quality cannot be judged by fineweb: counted, not selected. And every
    candidate is accounted for: selected + dropped + undecidable is the same for any variant."""
    loosened = {"gopher_repetition": None, "gopher_quality": {"min_words": 20}}
    loose, loose_counts = selected_ids(base, loosened)
    ids, counts = selected_ids(base, {**loosened, "fineweb": None})
    assert counts.undecidable > 0 and ids < loose and loose_counts.undecidable == 0
    assert sum(counts.dropped.values()) > sum(loose_counts.dropped.values())
    total = [c.selected + c.undecidable + sum(c.dropped.values()) for c in (counts, loose_counts)]
    assert total[0] == total[1] == len(loose) + sum(loose_counts.dropped.values())


def test_a_variant_of_unknown_stages_or_with_thresholds_for_langid_is_refused(base):
    stages = load_config(str(base)).document_stages()
    with pytest.raises(VariantError, match="c4 is not one of the run's per-document stages"):
        make_variant("v", stages, {"c4": None})
    with pytest.raises(VariantError, match="langid decides from more than its signal columns"):
        make_variant("v", stages, {"langid": {"min_score": 0.5}})
    with pytest.raises(VariantError, match="variant v: fineweb.min_line_punct_ratio: "):
        make_variant("v", stages, {"fineweb": {"min_line_punct_ratio": 2}})


def test_a_classifier_threshold_selects_exactly_what_a_run_with_it_keeps(tmp_path, base, pages, lid_model,
                                                                         quality_model):
    """The quality classifier's saved score decides again with another threshold (the demo-trained model scores
    most real pages above 0.99, so 0.995 splits them; the score is rounded to the column's float32 before the run
    decides, so the saved value decides the same way): the variant keeps what a full run with it keeps, id for id."""
    changes = {"gopher_repetition": None, "gopher_quality": None, "langid": None, "fineweb": None,
               "quality_classifier": {"threshold": 0.995}}
    ids, counts = selected_ids(base, changes)
    loose, _ = selected_ids(base, {**changes, "quality_classifier": None})
    assert counts.dropped["quality_classifier:low_quality"] > 20 and counts.undecidable == 0 and len(ids) > 50
    assert ids < loose
    assert ids == kept_ids(run(tmp_path, pages, ablation_stages(quality_model, threshold=0.995), lid_model))


def test_a_classifier_variant_may_change_only_its_threshold(base):
    stages = load_config(str(base)).document_stages()
    with pytest.raises(VariantError, match="quality_classifier: only its threshold can change"):
        make_variant("v", stages, {"quality_classifier": {"label": "lq"}})
