"""Named presets: every threshold of a rule stage as a published recipe sets it, with the source of each value.

A rule stage's `preset: <recipe>` fills in the settings below; settings written next to it override them, and a
stage without a preset keeps its own defaults. A recipe only covers the stages it ran: `preset: gopher` on the c4
stage is an error, not a silent no-op. The values are data only (this module imports no stage), so that a test can
check each recipe against the settings models.

Sources, read at these paths:
    gopher   Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from Training Gopher",
             appendix A.1.1 (quality filters) and table A1 (repetition).
    fineweb  huggingface/datatrove examples/fineweb.py (process_common_crawl_dump): GopherRepetitionFilter(),
             GopherQualityFilter(), C4QualityFilter(filter_no_terminal_punct=False), FineWebQualityFilter(), each
             with the defaults of src/datatrove/pipeline/filters/{gopher_repetition_filter, gopher_quality_filter,
             c4_filters, fineweb_quality_filter}.py (datatrove 0.10.1); no bad-words filter.
    c4       tensorflow/datasets tensorflow_datasets/text/c4_utils.py, the code that built C4: _MIN_WORDS_PER_LINE
             = 5 and _MIN_NUM_SENTENCES = 3, where the paper's text (Raffel et al. 2020, section 2.2) says 3 words
             and 5 sentences (our defaults, and datatrove's); mlfoundations/dclm baselines/baselines_configs/c4.yaml
             reproduces C4 with 5 and 3 too. C4 also dropped a page holding any word of LDNOOBW's 'en' list: point
             `bad_words` at that list (it is a file, so no preset sets it). Its end marks leave out "'", which ours
             accept.
    dclm     mlfoundations/dclm baselines/baselines_configs/dclm_baseline_refinedweb.yaml (DCLM-baseline's
             RefinedWeb-style heuristics), functions in baselines/mappers/filters/content_filters.py. Only its Gopher
             rules map onto ours, with Gopher's numbers; it defines them a little differently (stop words counted
             with repeats and in any case, '#' and ellipses under one shared 0.1 limit, "●" and "*" as bullets), which
             our rules do not reproduce. Its line modifiers (upper-case, numeric, counter lines) have no stage here.
"""

from __future__ import annotations

from typing import Any, Literal

PresetName = Literal["c4", "dclm", "fineweb", "gopher"]

_GOPHER_QUALITY = {
    "min_words": 50, "max_words": 100_000,                          # "fewer than 50 or more than 100,000 words"
    "min_mean_word_length": 3, "max_mean_word_length": 10,          # "mean word length outside 3 to 10 characters"
    "max_hash_word_ratio": 0.1, "max_ellipsis_word_ratio": 0.1,     # "symbol-to-word ratio above 0.1" (# and ...)
    "max_bullet_lines_ratio": 0.9,                                  # "more than 90% of lines starting with a bullet"
    "max_ellipsis_lines_ratio": 0.3,                                # "more than 30% ending with an ellipsis"
    "min_alpha_words_ratio": 0.8,                                   # "80% of words with an alphabetic character"
    "min_stop_words": 2,                                            # "at least two of" the eight stop words
    "stop_words": ("the", "be", "to", "of", "and", "that", "have", "with"),
}
_GOPHER_REPETITION = {                                              # Gopher table A1
    "max_dup_line_frac": 0.3, "max_dup_para_frac": 0.3, "max_dup_line_char_frac": 0.2, "max_dup_para_char_frac": 0.2,
    "max_top_2gram_frac": 0.20, "max_top_3gram_frac": 0.18, "max_top_4gram_frac": 0.16,
    "max_dup_5gram_frac": 0.15, "max_dup_6gram_frac": 0.14, "max_dup_7gram_frac": 0.13,
    "max_dup_8gram_frac": 0.12, "max_dup_9gram_frac": 0.11, "max_dup_10gram_frac": 0.10,
}
_C4_COMMON = {  # the rules every C4 variant keeps on (c4_utils.clean_page; datatrove C4QualityFilter defaults)
    "max_word_length": 1000, "remove_citations": True, "drop_lorem_ipsum": True, "remove_javascript_lines": True,
    "drop_curly_bracket": True, "remove_policy_lines": True,
}

# recipe -> stage name -> settings.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "gopher": {"gopher_quality": _GOPHER_QUALITY, "gopher_repetition": _GOPHER_REPETITION},
    "fineweb": {
        "gopher_repetition": _GOPHER_REPETITION,  # GopherRepetitionFilter defaults: Gopher's table A1
        "gopher_quality": _GOPHER_QUALITY,  # GopherQualityFilter defaults: Gopher's values
        "c4": _C4_COMMON | {
            "require_terminal_punct": False,  # examples/fineweb.py: C4QualityFilter(filter_no_terminal_punct=False)
            "min_words_per_line": 3, "min_sentences": 5,  # C4QualityFilter defaults (the C4 paper's numbers)
            "max_bad_words": 0,  # no C4BadWordsFilter in the FineWeb pipeline: leave bad_words unset
        },
        "fineweb": {  # FineWebQualityFilter defaults
            "min_line_punct_ratio": 0.12, "max_short_line_ratio": 0.67, "short_line_length": 30,
            "max_dup_line_char_ratio": 0.01, "max_newline_word_ratio": 0.3,
        },
    },
    "c4": {
        "c4": _C4_COMMON | {
            "require_terminal_punct": True,  # "if not line.endswith(_END_MARKS) or line.endswith(_ELLIPSIS)"
            "min_words_per_line": 5, "min_sentences": 3,  # c4_utils: _MIN_WORDS_PER_LINE, _MIN_NUM_SENTENCES
            "max_bad_words": 0,  # "If any badword appears on its own in the line, skip this doc"
        },
    },
    "dclm": {
        # page_length_filter 50..100,000 words, word_length_filter 3..10, symbol_ratio_filter 0.1,
        # bullet_count_filter 0.9, ellipsis_count_filter 0.3, alphabetic_word_ratio_filter max_ratio 0.2 (of words
        # without a letter), stop_word_filter min_stop_word 2 (count_unique: False)
        "gopher_quality": _GOPHER_QUALITY,
        "gopher_repetition": _GOPHER_REPETITION,  # massive_web_repetition_filters: Gopher's table A1
    },
}


def recipes_for(stage: str) -> list[str]:
    """The recipes that set `stage`'s thresholds."""
    return sorted(name for name, stages in PRESETS.items() if stage in stages)


def with_preset(stage: str, settings: Any) -> Any:
    """Raw settings of `stage` with its preset's values filled in under the ones given. An unknown name is left for
    the field's own check; a recipe that does not cover the stage is an error."""
    if not isinstance(settings, dict) or settings.get("preset") not in PRESETS:
        return settings
    recipe = settings["preset"]
    if stage not in PRESETS[recipe]:
        raise ValueError(f"preset {recipe!r} sets no {stage} rules; the presets for {stage} are "
                         f"{', '.join(recipes_for(stage))}")
    return PRESETS[recipe][stage] | settings
