"""Agreement of our Gopher quality, Gopher repetition, C4 and FineWeb stages with datatrove 0.10.1's filters, rule by
rule, and of our stages under `preset: fineweb` with datatrove's FineWeb pipeline, document by document, on the texts
our extract stage gets from the real pages of ../shared/data/warc/derived_real_html.

1. Texts: an extract-only run over the real pages in a temporary directory (or `--documents DIR` of a run).
2. datatrove runs in a throwaway virtualenv (`--venv`, default under /tmp, created once and reused):
   `datatrove[processing]==0.10.1` with spaCy, its English word tokenizer. A small driver, written to a temporary
   file, calls its public filters (GopherQualityFilter, GopherRepetitionFilter, C4QualityFilter,
   FineWebQualityFilter) with language "en" and our default thresholds, once as a whole and once per rule with the
   other rules switched off, and writes every decision to JSON. It also runs the four filters one after the other
   as huggingface/datatrove examples/fineweb.py does (datatrove's own defaults, C4 with
   filter_no_terminal_punct=False; C4 rewrites the text the next filter reads). No datatrove code runs in this
   process.
3. Our stages run here on the same texts; per-rule decisions come from their signal columns alone. The rule-by-rule
   comparison measures table rows as written (`tables: as_written`), as datatrove does, so that it compares the
   rules on the same lines.
4. Printed per rule set: agreement of the whole filter and of each rule, documents kept by each, examples of
   disagreements with our signal values and datatrove's token count; for C4, how often the remaining text is
   identical when both keep a document. C4's bad-words rule is off on both sides (datatrove's is another filter).
   Also docs/s of each of our stages and of each datatrove filter, one core each, on the same texts.
5. The FineWeb pipeline: our gopher_repetition, gopher_quality, c4 and fineweb stages one after the other with
   `preset: fineweb` (the kept text of each is what the next reads), once with `tables: as_written` and once with
   the default `tables: cells`; per document, whether both keep it, at which step each drops it, and whether the
   final texts are identical; the disagreements are listed, with whether the page has table rows.

    python scripts/compare_datatrove.py [--documents DIR] [--venv DIR] [--examples N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_filters import batches, extracted_texts  # noqa: E402  (scripts/ is not a package)

from stages.c4 import C4  # noqa: E402
from stages.fineweb import FineWeb  # noqa: E402
from stages.gopher_quality import GopherQuality  # noqa: E402
from stages.gopher_repetition import GopherRepetition  # noqa: E402
from stages.text_tools import Rule, RuleStage, decide, forget_words, table_cells_as_lines  # noqa: E402

DATATROVE = "datatrove[io,processing]==0.10.1"  # io: the WARC reader of scripts/bench_vs_datatrove.py
DATATROVE_EXTRAS = ["spacy==3.8.18", "lxml_html_clean"]
TARGET = 97.0

DRIVER = '''
import json, sys, time
from datatrove.data import Document
from datatrove.pipeline import filters
from datatrove.utils.text import split_into_parts, split_into_words

texts = json.load(open(sys.argv[1]))
specs, pipelines = (json.load(open(path)) for path in sys.argv[2:4])
built = {name: getattr(filters, spec["class"])(**spec["kwargs"]) for name, spec in specs.items()}
decisions = {name: [] for name in specs}
c4_texts, token_counts = [], []
order = sorted(built, key=lambda name: name.startswith("c4"))  # C4's per-line sentences would evict cached words
for text in texts:
    token_counts.append(len(split_into_words(text, "en")))
    for name in order:
        step = built[name]
        doc = Document(text=text, id="doc")
        try:
            result = step.filter(doc)
        except Exception as exc:
            decisions[name].append([False, "error:" + type(exc).__name__])
            continue
        kept, reason = (result, None) if isinstance(result, bool) else result
        decisions[name].append([bool(kept), None if kept else reason])
        if name == "c4":
            c4_texts.append(doc.text if kept else None)
seconds = {}
for name in ("gopher_quality", "gopher_repetition", "c4", "fineweb"):
    split_into_parts.cache_clear()
    started = time.perf_counter()
    for text in texts:
        built[name].filter(Document(text=text, id="doc"))
    seconds[name] = time.perf_counter() - started
outcomes = {}
for name, steps in pipelines.items():
    chain = [(step, getattr(filters, spec["class"])(**spec["kwargs"])) for step, spec in steps]
    outcomes[name] = []
    for text in texts:
        doc, dropped_by = Document(text=text, id="doc"), None
        for step, built_step in chain:
            result = built_step.filter(doc)
            if not (result if isinstance(result, bool) else result[0]):
                dropped_by = step
                break
        outcomes[name].append([dropped_by, None if dropped_by else doc.text])
json.dump({"decisions": decisions, "c4_texts": c4_texts, "token_counts": token_counts, "seconds": seconds,
           "pipelines": outcomes}, open(sys.argv[4], "w"))
'''

# datatrove's FineWeb pipeline (examples/fineweb.py, process_common_crawl_dump), filters in its order and with its
# arguments: datatrove's defaults, and C4 without the terminal punctuation rule.
DATATROVE_FINEWEB = [
    ("gopher_repetition", {"class": "GopherRepetitionFilter", "kwargs": {}}),
    ("gopher_quality", {"class": "GopherQualityFilter", "kwargs": {}}),
    ("c4", {"class": "C4QualityFilter", "kwargs": {"filter_no_terminal_punct": False}}),
    ("fineweb", {"class": "FineWebQualityFilter", "kwargs": {}}),
]
FINEWEB_STAGES = (GopherRepetition, GopherQuality, C4, FineWeb)


def datatrove_specs() -> tuple[dict[str, dict], dict[str, list[tuple[str, list[Rule]]]]]:
    """The datatrove filters to run (our defaults as their arguments), and, per rule set, which of our rules each
    single-rule filter corresponds to."""
    gq, gr, c4, fw = GopherQuality.Config(), GopherRepetition.Config(), C4.Config(), FineWeb.Config()
    assert gq.max_hash_word_ratio == gq.max_ellipsis_word_ratio, "datatrove has one limit for both symbols"
    gopher_quality = {
        "min_doc_words": gq.min_words, "max_doc_words": gq.max_words,
        "min_avg_word_length": gq.min_mean_word_length, "max_avg_word_length": gq.max_mean_word_length,
        "max_symbol_word_ratio": gq.max_hash_word_ratio, "max_bullet_lines_ratio": gq.max_bullet_lines_ratio,
        "max_ellipsis_lines_ratio": gq.max_ellipsis_lines_ratio, "max_non_alpha_words_ratio": gq.min_alpha_words_ratio,
        "min_stop_words": gq.min_stop_words, "stop_words": gq.stop_words,
    }
    top = [[n, getattr(gr, f"max_top_{n}gram_frac")] for n in (2, 3, 4)]
    dup = [[n, getattr(gr, f"max_dup_{n}gram_frac")] for n in range(5, 11)]
    gopher_repetition = {
        "dup_line_frac": gr.max_dup_line_frac, "dup_para_frac": gr.max_dup_para_frac,
        "dup_line_char_frac": gr.max_dup_line_char_frac, "dup_para_char_frac": gr.max_dup_para_char_frac,
        "top_n_grams": top, "dup_n_grams": dup,
    }
    c4_quality = {
        "split_paragraph": True, "remove_citations": c4.remove_citations,
        "filter_no_terminal_punct": c4.require_terminal_punct, "min_num_sentences": c4.min_sentences,
        "min_words_per_line": c4.min_words_per_line, "max_word_length": c4.max_word_length,
        "filter_lorem_ipsum": c4.drop_lorem_ipsum, "filter_javascript": c4.remove_javascript_lines,
        "filter_curly_bracket": c4.drop_curly_bracket, "filter_policy": c4.remove_policy_lines,
    }
    fineweb = {
        "line_punct_thr": fw.min_line_punct_ratio, "line_punct_exclude_zero": False,
        "short_line_thr": fw.max_short_line_ratio, "short_line_length": fw.short_line_length,
        "char_duplicates_ratio": fw.max_dup_line_char_ratio, "new_line_ratio": fw.max_newline_word_ratio,
    }
    rule = {stage.name: {(r.reason or r.signal, r.setting): r for r in stage.rules}
            for stage in (GopherQuality, GopherRepetition, C4, FineWeb)}
    gq_rules, gr_rules, c4_rules, fw_rules = (rule[name] for name in ("gopher_quality", "gopher_repetition", "c4",
                                                                      "fineweb"))
    singles: dict[str, list[tuple[str, dict, list[Rule]]]] = {
        "gopher_quality": [
            ("min_words", {"min_doc_words": gopher_quality["min_doc_words"]}, [gq_rules["word_count", "min_words"]]),
            ("max_words", {"max_doc_words": gopher_quality["max_doc_words"]}, [gq_rules["word_count", "max_words"]]),
            ("min_mean_word_length", {"min_avg_word_length": gopher_quality["min_avg_word_length"]},
             [gq_rules["mean_word_length", "min_mean_word_length"]]),
            ("max_mean_word_length", {"max_avg_word_length": gopher_quality["max_avg_word_length"]},
             [gq_rules["mean_word_length", "max_mean_word_length"]]),
            ("hash+ellipsis_word_ratio", {"max_symbol_word_ratio": gopher_quality["max_symbol_word_ratio"]},
             [gq_rules["hash_word_ratio", "max_hash_word_ratio"],
              gq_rules["ellipsis_word_ratio", "max_ellipsis_word_ratio"]]),
            ("bullet_lines_ratio", {"max_bullet_lines_ratio": gopher_quality["max_bullet_lines_ratio"]},
             [gq_rules["bullet_lines_ratio", "max_bullet_lines_ratio"]]),
            ("ellipsis_lines_ratio", {"max_ellipsis_lines_ratio": gopher_quality["max_ellipsis_lines_ratio"]},
             [gq_rules["ellipsis_lines_ratio", "max_ellipsis_lines_ratio"]]),
            ("alpha_words_ratio", {"max_non_alpha_words_ratio": gopher_quality["max_non_alpha_words_ratio"]},
             [gq_rules["alpha_words_ratio", "min_alpha_words_ratio"]]),
            ("stop_words", {"min_stop_words": gopher_quality["min_stop_words"], "stop_words": gq.stop_words},
             [gq_rules["stop_words", "min_stop_words"]]),
        ],
        "gopher_repetition": [
            (f"{kind}_frac", {kind + "_frac": gopher_repetition[kind + "_frac"]},
             [gr_rules[f"{kind}_frac", f"max_{kind}_frac"]])
            for kind in ("dup_para", "dup_para_char", "dup_line", "dup_line_char")
        ] + [
            (f"top_{n}gram_frac", {"top_n_grams": [[n, limit]]},
             [gr_rules[f"top_{n}gram_frac", f"max_top_{n}gram_frac"]])
            for n, limit in top
        ] + [
            (f"dup_{n}gram_frac", {"dup_n_grams": [[n, limit]]},
             [gr_rules[f"dup_{n}gram_frac", f"max_dup_{n}gram_frac"]])
            for n, limit in dup
        ],
        "c4": [
            ("lorem_ipsum", {"filter_curly_bracket": False, "min_num_sentences": -1},
             [c4_rules["lorem_ipsum", "drop_lorem_ipsum"]]),
            ("curly_bracket", {"filter_lorem_ipsum": False, "min_num_sentences": -1},
             [c4_rules["curly_bracket", "drop_curly_bracket"]]),
            ("min_sentences (and no lines left)", {"filter_lorem_ipsum": False, "filter_curly_bracket": False},
             [c4_rules["no_lines_left", None], c4_rules["sentence_count", "min_sentences"]]),
        ],
        "fineweb": [
            ("line_punct_ratio", {"short_line_thr": 2.0, "char_duplicates_ratio": 2.0, "new_line_ratio": 1e18},
             [fw_rules["line_punct_ratio", "min_line_punct_ratio"]]),
            ("short_line_ratio", {"line_punct_thr": -1.0, "char_duplicates_ratio": 2.0, "new_line_ratio": 1e18},
             [fw_rules["short_line_ratio", "max_short_line_ratio"]]),
            ("dup_line_char_ratio", {"line_punct_thr": -1.0, "short_line_thr": 2.0, "new_line_ratio": 1e18},
             [fw_rules["dup_line_char_ratio", "max_dup_line_char_ratio"]]),
            ("newline_word_ratio", {"line_punct_thr": -1.0, "short_line_thr": 2.0, "char_duplicates_ratio": 2.0},
             [fw_rules["newline_word_ratio", "max_newline_word_ratio"]]),
        ],
    }
    full = {"gopher_quality": ("GopherQualityFilter", gopher_quality),
            "gopher_repetition": ("GopherRepetitionFilter", gopher_repetition),
            "c4": ("C4QualityFilter", c4_quality), "fineweb": ("FineWebQualityFilter", fineweb)}
    gopher_quality_off = {key: None for key in gopher_quality if key != "stop_words"}
    gopher_repetition_off = {"dup_line_frac": None, "dup_para_frac": None, "dup_line_char_frac": None,
                             "dup_para_char_frac": None, "top_n_grams": [], "dup_n_grams": []}
    base_for_single = {"gopher_quality": gopher_quality_off, "gopher_repetition": gopher_repetition_off,
                       "c4": c4_quality, "fineweb": fineweb}
    specs = {name: {"class": cls, "kwargs": kwargs | {"language": "en"}} for name, (cls, kwargs) in full.items()}
    ours: dict[str, list[tuple[str, list[Rule]]]] = {}
    for name, rules in singles.items():
        ours[name] = []
        for label, kwargs, our_rules in rules:
            specs[f"{name}/{label}"] = {"class": full[name][0],
                                        "kwargs": base_for_single[name] | kwargs | {"language": "en"}}
            ours[name].append((label, our_rules))
    return specs, ours


def datatrove_python(venv: Path) -> Path:
    """The throwaway virtualenv's python, with datatrove 0.10.1 installed (created on first use)."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import importlib.metadata as m, magic, spacy; "
             "assert m.version('datatrove') == '0.10.1'"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"creating {venv} with {DATATROVE} (about a minute)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["-U", "pip"], check=True)
    subprocess.run(pip + [DATATROVE, *DATATROVE_EXTRAS], check=True)
    subprocess.run(check, check=True)
    return python


def run_datatrove(python: Path, texts: list[str], specs: dict, workdir: Path) -> dict:
    paths = {name: workdir / f"datatrove-{name}.json" for name in ("texts", "specs", "pipelines", "out")}
    paths["texts"].write_text(json.dumps(texts))
    paths["specs"].write_text(json.dumps(specs))
    paths["pipelines"].write_text(json.dumps({"fineweb": DATATROVE_FINEWEB}))
    driver = workdir / "datatrove_driver.py"
    driver.write_text(DRIVER)
    started = time.perf_counter()
    subprocess.run([str(python), str(driver), *(str(paths[name]) for name in ("texts", "specs", "pipelines", "out"))],
                   check=True)
    print(f"datatrove: {len(specs)} filter configurations on {len(texts):,} texts in "
          f"{time.perf_counter() - started:.0f} s")
    return json.loads(paths["out"].read_text())


def run_ours(stage: RuleStage, tables: list[pa.Table], documents: int) -> tuple[pa.Table, float, float]:
    """The stage's output over all batches, and its docs/s on a first pass (the process has split no text before)
    and on a second pass over the same texts (every chunk already split once)."""
    forget_words()
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        outputs = [stage(table) for table in tables]
        seconds.append(time.perf_counter() - started)
    return pa.concat_tables(outputs), documents / seconds[0], documents / seconds[1]


def percent(agree: int, total: int) -> float:
    return 100.0 * agree / total if total else 100.0


def compare(name: str, stage: RuleStage, output: pa.Table, datatrove: dict, singles: list, texts: list[str],
            examples: int) -> dict:
    """Print the comparison of one rule set; returns its figures."""
    ours_kept = [reason is None for reason in output.column("drop_reason").to_pylist()]
    ours_reason = output.column("drop_reason").to_pylist()
    theirs = datatrove["decisions"][name]
    theirs_kept = [kept for kept, _ in theirs]
    agree = sum(a == b for a, b in zip(ours_kept, theirs_kept))
    total = len(texts)
    print(f"\n== {name}: whole filter agrees on {agree:,}/{total:,} = {percent(agree, total):.2f}%"
          f"  (kept: ours {sum(ours_kept):,}, datatrove {sum(theirs_kept):,}; "
          f"kept only by ours {sum(a and not b for a, b in zip(ours_kept, theirs_kept))}, "
          f"only by datatrove {sum(b and not a for a, b in zip(ours_kept, theirs_kept))})")
    columns = {field.name: output.column(field.name).to_pylist() for field in stage.output_fields}
    figures = {"agreement": percent(agree, total), "kept_ours": sum(ours_kept), "kept_datatrove": sum(theirs_kept),
               "rules": {}}
    for label, rules in singles:
        our_drops = [reason is not None for reason in decide(rules, stage.name, columns, stage.config)]
        their_drops = [not kept for kept, _ in datatrove["decisions"][f"{name}/{label}"]]
        rule_agree = sum(a == b for a, b in zip(our_drops, their_drops))
        figures["rules"][label] = percent(rule_agree, total)
        print(f"   rule {label:<36} {percent(rule_agree, total):6.2f}%   dropped: ours {sum(our_drops):>4}, "
              f"datatrove {sum(their_drops):>4}")
    if name == "c4":
        both = [i for i in range(total) if ours_kept[i] and theirs_kept[i]]
        same = sum(output.column("text")[i].as_py() == datatrove["c4_texts"][i] for i in both)
        figures["same_text"] = percent(same, len(both))
        print(f"   remaining text identical for {same:,}/{len(both):,} documents both keep "
              f"= {figures['same_text']:.2f}%")
    disagreements = [i for i in range(total) if ours_kept[i] != theirs_kept[i]]
    print(f"   {len(disagreements)} disagreements" + (", for example:" if disagreements else ""))
    for i in disagreements[:examples]:
        signals = ", ".join(f"{field.name.removeprefix(name + '_')}={_short(columns[field.name][i])}"
                            for field in stage.output_fields)
        print(f"   - doc {i}: ours {ours_reason[i] or 'kept'}, datatrove {theirs[i][1] or 'kept'}; "
              f"{len(texts[i]):,} chars, datatrove tokens {datatrove['token_counts'][i]:,}; {signals}")
    return figures


def run_chain(stages: list[RuleStage], texts: list[str]) -> list[tuple[str | None, str | None]]:
    """Our stages one after the other, each on the documents the earlier ones kept, with the text they left: per
    document, the stage that dropped it (or failed on it), or None and its final text."""
    outcomes: list[tuple[str | None, str | None]] = [(None, text) for text in texts]
    for stage in stages:
        alive = [index for index, (dropped_by, _) in enumerate(outcomes) if dropped_by is None]
        if not alive:
            break
        output = pa.concat_tables([stage(table) for table in batches([outcomes[index][1] for index in alive])])
        rows = zip(alive, output.column("drop_reason").to_pylist(), output.column("error").to_pylist(),
                   output.column("text").to_pylist())
        for index, reason, error, text in rows:
            outcomes[index] = (stage.name, None) if reason is not None or error is not None else (None, text)
    return outcomes


def compare_pipeline(label: str, ours: list[tuple[str | None, str | None]], theirs: list, texts: list[str],
                     examples: int) -> dict:
    """Print the document-by-document comparison of one run of the FineWeb pipeline; returns its figures."""
    total = len(texts)
    kept_agree = sum((a is None) == (b is None) for (a, _), (b, _) in zip(ours, theirs))
    step_agree = sum(a == b for (a, _), (b, _) in zip(ours, theirs))
    both = [i for i in range(total) if ours[i][0] is None and theirs[i][0] is None]
    same_text = sum(ours[i][1] == theirs[i][1] for i in both)
    with_tables = [table_cells_as_lines(text) != text for text in texts]
    disagreements = [i for i in range(total) if (ours[i][0] is None) != (theirs[i][0] is None)]
    figures = {"agreement": percent(kept_agree, total), "same_step": percent(step_agree, total),
               "kept_ours": sum(a is None for a, _ in ours), "kept_datatrove": sum(b is None for b, _ in theirs),
               "same_text": percent(same_text, len(both)), "disagreements": len(disagreements),
               "disagreements_with_tables": sum(with_tables[i] for i in disagreements)}
    print(f"\n== FineWeb pipeline, ours with preset: fineweb, {label}: kept or dropped alike for {kept_agree:,}/"
          f"{total:,} = {figures['agreement']:.2f}%, dropped at the same step for {figures['same_step']:.2f}%"
          f"  (kept: ours {figures['kept_ours']:,}, datatrove {figures['kept_datatrove']:,}); final text identical "
          f"for {same_text:,}/{len(both):,} both keep = {figures['same_text']:.2f}%")
    print(f"   {len(disagreements)} disagreements, {figures['disagreements_with_tables']} of them on pages with table "
          f"rows ({sum(with_tables):,} of the {total:,} pages have some)" + (":" if disagreements else ""))
    for i in disagreements[:examples]:
        print(f"   - doc {i}: ours {ours[i][0] or 'kept'}, datatrove {theirs[i][0] or 'kept'}; "
              f"{'table rows' if with_tables[i] else 'no table rows'}; {texts[i][:70]!r}")
    return figures


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", help="a run's documents/ directory (default: extract the real pages now)")
    parser.add_argument("--venv", default=str(Path(tempfile.gettempdir()) / "datatrove-0.10.1-venv"),
                        help="throwaway virtualenv for datatrove (created if missing, then reused)")
    parser.add_argument("--examples", type=int, default=4, help="disagreements shown per rule set")
    parser.add_argument("--json", dest="json_path", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    python = datatrove_python(Path(args.venv))
    stages = [GopherQuality, GopherRepetition, C4, FineWeb]
    with tempfile.TemporaryDirectory(prefix="compare-datatrove-") as tmp:
        workdir = Path(tmp)
        texts = extracted_texts(args.documents, workdir)
        print(f"{len(texts):,} texts, {sum(map(len, texts)) / len(texts):,.0f} characters on average")
        specs, singles = datatrove_specs()
        datatrove = run_datatrove(python, texts, specs, workdir)
    tables = batches(texts)
    report: dict = {"documents": len(texts), "rule_sets": {}, "docs_per_s": {}}
    for stage_class in stages:
        stage = stage_class(stage_class.Config(tables="as_written"))
        output, first_pass, second_pass = run_ours(stage, tables, len(texts))
        figures = compare(stage.name, stage, output, datatrove, singles[stage.name], texts, args.examples)
        figures["docs_per_s_ours"] = first_pass
        figures["docs_per_s_ours_second_pass"] = second_pass
        figures["docs_per_s_datatrove"] = len(texts) / datatrove["seconds"][stage.name]
        report["rule_sets"][stage.name] = figures
    print("\ndocs/s on one core: ours on a first pass (nothing split before) / a second pass; datatrove's filter")
    print("rule set            agreement  worst rule                        ours docs/s (2nd)  datatrove docs/s")
    failed = []
    for name, figures in report["rule_sets"].items():
        worst = min(figures["rules"].items(), key=lambda item: item[1])
        print(f"{name:<20}{figures['agreement']:>8.2f}%  {worst[0]:<26}{worst[1]:>7.2f}%  "
              f"{figures['docs_per_s_ours']:>7,.0f} ({figures['docs_per_s_ours_second_pass']:>5,.0f})"
              f"  {figures['docs_per_s_datatrove']:>15,.0f}")
        if figures["agreement"] < TARGET or worst[1] < TARGET:
            failed.append(name)
    report["fineweb_pipeline"] = {}
    for tables in ("as_written", "cells"):
        chain = [stage(stage.Config(preset="fineweb", tables=tables)) for stage in FINEWEB_STAGES]
        report["fineweb_pipeline"][tables] = compare_pipeline(
            f"tables: {tables}", run_chain(chain, texts), datatrove["pipelines"]["fineweb"], texts, args.examples)
    if report["fineweb_pipeline"]["as_written"]["agreement"] < TARGET:
        failed.append("fineweb pipeline (tables: as_written)")
    print(f"target: at least {TARGET}% per rule set and per rule, and for the FineWeb pipeline with tables as written: "
          + (f"NOT MET for {', '.join(failed)}" if failed else "met"))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
