"""`pipeline ablate` on a real run of the real pages: every variant trains on exactly the same number of tokens (the
first of its documents in a seeded order, the last one cut), the same seed gives the same losses, a finished model
is not trained again, and the tables and report read back. Tiny models on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch", reason="the trainer extra (torch==2.13.0) is not installed")

from conftest import REPO, pipeline_cli  # noqa: E402
from pipeline import inspect  # noqa: E402
from pipeline.ablation.data import shards_folder  # noqa: E402
from pipeline.ablation.references import read_reference, text_pieces  # noqa: E402
from pipeline.ablation.runner import load_ablate_config, model_folder, run_ablation  # noqa: E402
from pipeline.ablation.select import make_variant, select  # noqa: E402
from pipeline.ablation.settings import AblateConfig, ReferenceSettings  # noqa: E402
from pipeline.config import ConfigError, load_config  # noqa: E402
from pipeline.token_shards import read_index  # noqa: E402
from stages.tokens.files import load_tokenizer  # noqa: E402
from stages.tokens.tokenize import splits_of  # noqa: E402
from stages.tokens.tokenizer import id_hashes  # noqa: E402

RULES = {"gopher_repetition": None, "gopher_quality": None, "langid": None, "fineweb": None}
# the rules and a stricter quality threshold than the run's (most real pages score above 0.99)
QUALITY = {**RULES, "quality_classifier": {"threshold": 0.995}}
TRAINING = {"block_size": 32, "batch_size": 8, "max_steps": 12, "learning_rate": 3e-3, "min_learning_rate": 3e-4,
            "warmup_steps": 2, "eval_interval": 6, "eval_batches": 2, "log_interval": 6, "checkpoint_interval": 12,
            "device": "cpu"}


def ablation_config(output: Path, base: Path, data_dir: Path, **changes) -> AblateConfig:
    raw = {
        "output": str(output), "run": str(base.parent / "run"),
        "variants": [{"name": "extracted", "select": {}}, {"name": "quality", "select": QUALITY},
                     {"name": "kept", "run": str(base.parent / "run")}],
        "tokenizer": {"vocab_size": 2000}, "validation_fraction": 0.1, "seeds": [0, 1], "budgets": [0.5, 1.0],
        "sizes": [{"name": "tiny", "n_layer": 1, "n_head": 2, "n_embd": 16}], "training": TRAINING,
        "references": [
            {"name": "wikitext", "paths": [str(data_dir / "quality/wikipedia/wikitext2/valid.txt")],
             "max_bytes": 20_000},
            {"name": "books", "paths": [str(data_dir / "text/gutenberg/en-*.zip")], "max_bytes": 20_000}],
        **changes,
    }
    return AblateConfig.model_validate(raw)


@pytest.fixture(scope="module")
def ablation(tmp_path_factory, ablation_base, data_dir) -> tuple[Path, AblateConfig, list[str]]:
    output = tmp_path_factory.mktemp("ablation") / "out"
    config = ablation_config(output, ablation_base, data_dir)
    lines: list[str] = []
    run_ablation(config, log=lines.append)
    return output, config, lines


def selected(base: Path, changes: dict) -> pa.Table:
    """The documents the variant selects among the run's kept ones and its rejects (each table judged alone: only
    rejects say at which stage a document was dropped)."""
    stages = load_config(str(base)).document_stages()
    chosen = []
    for folder in ("documents", "rejects"):
        table = pads.dataset(str(base.parent / "run" / folder)).to_table()
        mask, _ = select(table, make_variant("v", stages, changes), [name for name, _ in stages])
        chosen.append(table.filter(pa.array(mask)).select(["id", "text"]))
    return pa.concat_tables(chosen)


def budgets(output: Path) -> list[int]:
    return json.loads((output / "data.json").read_text())["budgets"]


def shard_documents(output: Path, variant: str, tokens: int, split: str) -> dict[str, int]:
    """id -> tokens of every document in the variant's shards of a split, with a budget of `tokens`."""
    found = {}
    for path in sorted(shards_folder(output, variant, tokens).glob(f"{split}-*.index.arrow")):
        index = read_index(path)
        found.update(zip(index.column("id").to_pylist(), index.column("n_tokens").to_pylist()))
    return found


def test_every_variant_trains_on_exactly_the_budget_the_first_documents_in_a_seeded_order(ablation, ablation_base):
    """The budget (auto) is the smallest variant's training tokens; each variant's training shards hold exactly that
    many tokens: its training documents (checked here from the run's own signals and the tokenizer, not from the
    ablation's files) in the order of a seeded hash of their id, all of them up to the last, which is cut; and the
    half budget holds exactly half (rounded) of them, a prefix of the same order. Its validation shards hold every
    selected document whose id hashes into the validation split, at every budget."""
    output, config, _ = ablation
    tokenizer = load_tokenizer((output / "tokenizer" / "tokenizer.model").read_bytes())
    sources = {"extracted": selected(ablation_base, {}), "quality": selected(ablation_base, QUALITY),
               "kept": pads.dataset(str(ablation_base.parent / "run" / "documents")).to_table()}
    full = {}
    for name, table in sources.items():
        ids = table.column("id").to_pylist()
        lengths = np.array([len(tokens) for tokens in tokenizer.encode(table.column("text").to_pylist())])
        validation = splits_of(ids, config.validation_fraction)
        order = sorted((key, identifier, length) for key, identifier, length, held_out
                       in zip(id_hashes(ids, config.seed).tolist(), ids, lengths.tolist(), validation) if not held_out)
        full[name] = (order, {identifier for identifier, held_out in zip(ids, validation) if held_out})
    budget = min(sum(length for _, _, length in order) for order, _ in full.values())
    assert budgets(output) == [round(budget / 2), budget]
    assert len({len(order) for order, _ in full.values()}) == 3  # three different variants
    for name, (order, held_out) in full.items():
        for tokens in (round(budget / 2), budget):
            manifest = json.loads((shards_folder(output, name, tokens) / "manifest.json").read_text())
            assert manifest["splits"]["train"]["tokens"] == tokens, name
            trained = shard_documents(output, name, tokens, "train")
            expected, left = {}, tokens
            for _, identifier, length in order:
                expected[identifier] = min(length, left)
                left -= expected[identifier]
                if not left:
                    break
            assert trained == expected, (name, tokens)
            assert shard_documents(output, name, tokens, "validation").keys() == held_out, name
    smallest = min(full, key=lambda name: sum(length for _, _, length in full[name][0]))
    assert len(shard_documents(output, smallest, budget, "train")) == len(full[smallest][0])  # all of the smallest's


def test_the_same_seed_gives_the_same_losses_and_another_seed_other_ones(ablation, ablation_base, data_dir,
                                                                          tmp_path):
    """The ablation made again in another directory trains byte-identical data into identical losses, step by
    step, and the same bits per byte; seed 1 differs from seed 0."""
    output, _, _ = ablation
    again = tmp_path / "again"
    run_ablation(ablation_config(again, ablation_base, data_dir, seeds=[0], budgets=[1.0]), log=lambda line: None)
    tokens = budgets(output)[-1]
    for variant in ("extracted", "quality", "kept"):
        first, second = (model_folder(root, variant, "tiny", tokens, 0) for root in (output, again))
        assert (first / "log.jsonl").exists()
        losses = [[json.loads(line)["loss"] for line in (folder / "log.jsonl").read_text().splitlines()]
                  for folder in (first, second)]
        assert losses[0] == losses[1] and len(losses[0]) == TRAINING["max_steps"]
        scores = [json.loads((folder / "result.json").read_text())["scores"] for folder in (first, second)]
        assert scores[0] == scores[1]
        other = json.loads((model_folder(output, variant, "tiny", tokens, 1) / "result.json").read_text())["scores"]
        assert other["wikitext"]["bits_per_byte"] != scores[0]["wikitext"]["bits_per_byte"]


def test_a_rerun_trains_nothing_and_a_model_without_its_result_is_scored_again(ablation):
    """Resumable: run again, no model is trained; a model whose result.json is gone is taken up again from its
    checkpoint (trained to the end already) and scored to the same figures."""
    output, config, first_lines = ablation
    assert sum(line.startswith("[") for line in first_lines) == 12  # 3 variants x 2 budgets x 1 size x 2 seeds
    half, tokens = budgets(output)
    halves = [json.loads(path.read_text()) for path in (output / "models").glob(f"*/tiny/{half}/seed-*/result.json")]
    assert len(halves) == 6 and {result["steps"] for result in halves} == {TRAINING["max_steps"] // 2}
    results = sorted((output / "models").glob("*/*/*/seed-*/result.json"))
    stamps = {path: path.stat().st_mtime_ns for path in results}
    lines: list[str] = []
    run_ablation(config, log=lines.append)
    assert not [line for line in lines if line.startswith("[")] and lines[0].startswith("data prepared already")
    assert {path: path.stat().st_mtime_ns for path in results} == stamps
    lost = model_folder(output, "quality", "tiny", tokens, 1) / "result.json"
    before = json.loads(lost.read_text())
    lost.unlink()
    lines.clear()
    run_ablation(config, log=lines.append)
    assert [line for line in lines if line.startswith("[")] == [f"[11/12] quality, tiny, {tokens:,} tokens, seed 1"]
    assert any("already trained to step 12" in line for line in lines)
    after = json.loads(lost.read_text())
    assert after["scores"] == before["scores"]


def test_the_tables_the_notebook_api_and_the_report_read_back(ablation):
    output, config, _ = ablation
    ablation_run = inspect.load_ablation(output)
    table = ablation_run.table()
    assert len(table) == 3 * 3 * 2  # variants x (2 reference sets + validation) x budgets, one size
    assert list(table["evaluation"].unique()) == ["wikitext", "books", "validation"]
    assert (table["seeds"] == 2).all() and list(table["tokens"].unique()) == budgets(output)[::-1]
    baseline = table[table["variant"] == "extracted"]
    assert (baseline["difference"] == 0).all() and baseline["baseline"].all()
    others = table[table["variant"] != "extracted"]
    assert others["p_value"].between(0, 1).all()
    runs = ablation_run.runs()
    for _, row in others.iterrows():  # the table's difference is the mean over seeds of the paired differences
        pairs = runs[(runs["evaluation"] == row["evaluation"]) & (runs["tokens"] == row["tokens"])].pivot_table(
            index="seed", columns="variant", values="bits_per_byte")
        assert row["difference"] == pytest.approx((pairs[row["variant"]] - pairs["extracted"]).mean())
    assert len(ablation_run.curves()) == 6 * TRAINING["max_steps"] + 6 * TRAINING["max_steps"] // 2
    variants = ablation_run.variants()
    assert list(variants["name"]) == ["extracted", "quality", "kept"]
    assert (variants["budget_tokens"] <= variants["train_tokens"]).all()
    assert ablation_run.scaling().empty  # one size, two budgets: no fit
    page = (output / "report.html").read_text()
    assert "Learning curves" in page and page.count("<img") == 2 and "Scaling" not in page


def test_settings_that_cannot_work_are_refused_before_any_training(ablation, ablation_base, data_dir, tmp_path):
    output, config, _ = ablation
    changed = config.model_copy(update={"seeds": [0, 1, 2]})
    with pytest.raises(ConfigError, match=r"holds an ablation with other settings \(seeds"):
        run_ablation(changed, log=lambda line: None)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not an ablation directory"):
        run_ablation(ablation_config(occupied, ablation_base, data_dir), log=lambda line: None)
    assert (occupied / "notes.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="tokens 100,000,000: variant .* has"):
        run_ablation(ablation_config(tmp_path / "big", ablation_base, data_dir, tokens=100_000_000),
                     log=lambda line: None)
    with pytest.raises(ConfigError, match="c4 is not one of the run's per-document stages"):
        run_ablation(ablation_config(tmp_path / "c4", ablation_base, data_dir,
                                     variants=[{"name": "a", "select": {}}, {"name": "b", "select": {"c4": None}}]),
                     log=lambda line: None)
    with pytest.raises(ValueError, match="give either select"):
        ablation_config(tmp_path / "x", ablation_base, data_dir, variants=[{"name": "a"}, {"name": "b", "select": {}}])


def test_reference_sets_are_cut_at_blank_lines_and_sampled_by_a_hash_of_their_text(tmp_path):
    assert list(text_pieces("a\n\nbb\n\n\n\ncc\n\n" + "d" * 25, piece_chars=10)) == ["a\n\nbb", "cc", "d" * 10,
                                                                                    "d" * 10, "d" * 5]
    (tmp_path / "one.txt").write_text("\n\n".join(f"paragraph {i} " + "x" * 50 for i in range(40)))
    pq.write_table(pa.table({"body": [f"record {i} " + "y" * 50 for i in range(40)]}), tmp_path / "two.parquet")
    (tmp_path / "three.jsonl").write_text("".join(json.dumps({"body": f"line {i} " + "z" * 50}) + "\n"
                                                  for i in range(40)))
    settings = ReferenceSettings(name="r", paths=[str(tmp_path / "*")], field="body", max_bytes=3_000,
                                 piece_chars=100)
    sample = read_reference(settings)
    assert 3_000 - 70 < sum(len(text.encode()) for text in sample) <= 3_000
    assert {text.split()[0] for text in sample} == {"paragraph", "record", "line"}  # uniform over the files
    reordered = settings.model_copy(update={"paths": [str(tmp_path / name)
                                                      for name in ("two.parquet", "three.jsonl", "one.txt")]})
    assert read_reference(reordered) == sample


@pytest.mark.slow
def test_the_quickstart_ablation_config_runs_on_the_quickstart_output(quickstart_run, tmp_path):
    """configs/ablate-quickstart.yaml as the README runs it, on the session's quickstart run, shortened (fewer steps,
    one seed pair, one size) to keep the suite fast; the full config's timing is in the README."""
    output, _ = quickstart_run
    result = pipeline_cli("ablate", "--config", "configs/ablate-quickstart.yaml", "--set", f"run={output}",
                          "--set", f"output={tmp_path / 'ablation'}", "--set", "training.max_steps=6",
                          "--set", "seeds=[0, 1]", "--set", "sizes=[{name: xs, n_layer: 1, n_head: 2, n_embd: 32}]",
                          cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "rules_classifiers" in result.stdout and "demo_articles" in result.stdout
    table = inspect.load_ablation(tmp_path / "ablation").table()
    assert set(table["variant"]) == {"langid_only", "rules", "rules_classifiers"}
    assert (tmp_path / "ablation" / "report.html").exists()


def test_the_quickstart_ablation_selects_by_stages_the_quickstart_runs():
    """configs/ablate-quickstart.yaml validates, and every stage its variants apply is a per-document stage of
    configs/quickstart.yaml (the run it selects from), with three seeds and three sizes for the scaling view."""
    config = load_ablate_config(REPO / "configs" / "ablate-quickstart.yaml")
    quickstart = [name for name, _ in load_config(str(REPO / "configs" / "quickstart.yaml")).document_stages()]
    for variant in config.variants:
        assert set(variant.select) <= set(quickstart), variant.name
    assert len(config.seeds) == 3 and len(config.sizes) == 3 and config.run == "runs/quickstart"


def test_scaling_fits_run_over_sizes_at_each_budget_and_over_budgets_at_each_size():
    """From results on a known surface, L = E + 30 / N^0.5 + 30 / D^0.5 (b's E 0.2 below a's, the seeds within
    0.002): three budgets at one size give fits over tokens, three sizes at one budget fits over parameters; each
    recovers the exponent, and b parts from the baseline at the first point past the data."""
    from pipeline.ablation.tables import scaling_rows

    results = []
    for variant, floor in (("a", 1.0), ("b", 0.8)):
        for size, parameters, tokens in (("s", 1e5, 4e5), ("s", 1e5, 2e5), ("s", 1e5, 1e5), ("m", 2e5, 4e5),
                                         ("l", 4e5, 4e5)):
            for seed, jitter in enumerate((-0.001, 0.0, 0.001)):
                loss = floor + 30 / parameters ** 0.5 + 30 / tokens ** 0.5 + jitter
                results.append({"variant": variant, "size": size, "tokens": int(tokens), "seed": seed,
                                "parameters": int(parameters), "scores": {"ref": {"bits_per_byte": loss}}})
    rows = {(row["variant"], row["over"], row["at"]): row for row in scaling_rows(results, "a")}
    assert set(rows) == {(variant, "tokens", "size s") for variant in "ab"} | {
        (variant, "parameters", "tokens 400000") for variant in "ab"}
    for row in rows.values():
        assert row["exponent"] == pytest.approx(0.5, abs=0.05) and row["points"] == 3
        assert row["margin"] == pytest.approx(0.001)
    assert rows[("b", "tokens", "size s")]["parts_from_baseline_at"] == pytest.approx(4e5)
    assert rows[("a", "tokens", "size s")]["parts_from_baseline_at"] is None
