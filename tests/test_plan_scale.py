"""The driver's work per unit at scale: the plan as Parquet, the markers merged as a tree of tasks, the progress
board's state bounded by the number of stages, and unit_mb "auto" sized by the run's workers."""

from __future__ import annotations

import importlib.util
import json
import math
import pickle

import pytest

from conftest import REPO
from pipeline.config import RunConfig
from pipeline.io.atomic import atomic_write_json
from pipeline.plan import AUTO_MAX_BYTES, AUTO_MIN_BYTES, MB, load_plan, save_plan, unit_bytes
from pipeline.run_dir import RunDir
from pipeline.stats import accounting_problems, merge_markers
from pipeline.unit_counts import CountDeltas, UnitCounts

_spec = importlib.util.spec_from_file_location("bench_plan", REPO / "scripts" / "bench_plan.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)
STAGES, feed_board, serial_merge = bench.STAGES, bench.feed_board, bench.serial_merge
synthetic_units, synthetic_inputs = bench.synthetic_units, bench.synthetic_inputs
synthetic_marker = bench.synthetic_marker

MARKERS = 5_000


@pytest.fixture(scope="module")
def marked_run(tmp_path_factory):
    """A run directory with MARKERS synthetic markers, as the runner writes them."""
    root = tmp_path_factory.mktemp("scale") / "run"
    units = synthetic_units(MARKERS)
    bench.write_markers(root, units)
    return root, [unit.id for unit in units]


def test_the_tree_merge_gives_the_funnel_of_the_serial_merge(marked_run):
    root, unit_ids = marked_run
    funnel, problems, rows = serial_merge(root, unit_ids)
    merged, _ = merge_markers(str(root), unit_ids, batch_size=64, fanout=4)
    assert [tally.to_dict() for tally in merged.tallies] == [tally.to_dict() for tally in funnel]
    assert accounting_problems(merged.tallies, merged.problems) == problems
    assert merged.unit_rows.num_rows == rows == MARKERS * len(STAGES) and merged.units == MARKERS
    assert merged.unit_rows.column("unit").to_pylist()[::len(STAGES)] == unit_ids  # in plan order
    assert merged.members == {unit_id: {"first": 0, "next": None} for unit_id in unit_ids}


def test_a_unit_whose_documents_differ_from_its_last_stage_is_an_accounting_problem(tmp_path):
    [unit] = synthetic_units(1)
    marker = {**synthetic_marker(unit, 0), "documents": 1}
    atomic_write_json(tmp_path / "_done" / f"{unit.id}.json", marker)
    merged, _ = merge_markers(str(tmp_path), [unit.id])
    assert merged.problems == [f"unit {unit.id}: wrote 1 documents but c4 kept {marker['stages'][-1]['kept']}"]


@pytest.mark.parametrize("batch_size,fanout", [(1, 2), (7, 3), (64, 4), (1000, 16), (MARKERS, 16)])
def test_the_merge_takes_log_fanout_of_the_batches_rounds(marked_run, batch_size, fanout):
    root, unit_ids = marked_run
    calls = []

    def counting(function, *args):
        calls.append(function.__name__)
        return function(*args)

    merged, plan = merge_markers(str(root), unit_ids, counting, batch_size=batch_size, fanout=fanout)
    batches = math.ceil(MARKERS / batch_size)
    rounds = 0 if batches == 1 else math.ceil(round(math.log(batches, fanout), 9))
    assert (plan.batches, plan.rounds) == (batches, rounds)
    assert calls.count("read_markers") == batches and calls.count("combine_merged") == plan.inner_tasks
    assert merged.units == MARKERS


def test_the_merge_runs_as_ray_tasks_with_the_same_result(marked_run, local_ray):
    import ray

    from pipeline.ray_session import submit_task

    root, unit_ids = marked_run
    on_ray, plan = merge_markers(str(root), unit_ids, submit_task, ray.get, batch_size=500, fanout=4)
    here, _ = merge_markers(str(root), unit_ids, batch_size=500, fanout=4)
    assert [t.to_dict() for t in on_ray.tallies] == [t.to_dict() for t in here.tallies]
    assert on_ray.unit_rows.equals(here.unit_rows) and plan.rounds == 2  # 10 batches, fanout 4


def test_the_progress_boards_state_does_not_grow_with_the_units_reported():
    sizes = []
    for count in (100, 10_000):
        board = UnitCounts()
        feed_board(synthetic_units(count), CountDeltas(board.report), board.totals)
        sizes.append(len(pickle.dumps(board.__dict__)))
        assert board.totals() == [{"stage": stage, "rows_in": 4000 * count, "kept": 3600 * count}
                                  for stage in STAGES]
    assert sizes[0] == sizes[1]


def test_a_unit_reported_again_from_the_start_counts_from_zero():
    board = UnitCounts()
    deltas = CountDeltas(board.report)
    deltas("a", [{"stage": "read", "rows_in": 10, "kept": 8}])
    deltas("a", [{"stage": "read", "rows_in": 25, "kept": 20}])
    deltas("b", [{"stage": "read", "rows_in": 5, "kept": 5}])
    assert board.totals() == [{"stage": "read", "rows_in": 30, "kept": 25}]


def test_the_plan_is_saved_as_parquet_and_loads_as_it_was(tmp_path):
    units = synthetic_units(1000)
    inputs = synthetic_inputs(units)
    save_plan(tmp_path / "plan.parquet", units, inputs)
    assert load_plan(tmp_path / "plan.parquet") == (units, inputs)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["plan.parquet", "plan_inputs.parquet"]


def test_a_plan_json_of_an_earlier_version_still_loads(tmp_path):
    units = synthetic_units(3)
    inputs = synthetic_inputs(units)
    (tmp_path / "plan.json").write_text(json.dumps({"units": [unit.to_dict() for unit in units], "inputs": inputs}))
    assert RunDir(tmp_path).saved_plan() == tmp_path / "plan.json"
    assert load_plan(RunDir(tmp_path).saved_plan()) == (units, inputs)
    save_plan(RunDir(tmp_path).plan_file, units, inputs)
    assert RunDir(tmp_path).saved_plan() == tmp_path / "plan.parquet"


def test_auto_units_are_eight_per_worker_between_1_mb_and_1_gb():
    config = RunConfig.model_validate({"name": "t", "input": {"paths": []}, "stages": ["extract"]})
    assert unit_bytes(config, [1 << 30], cpus=16) == 1024 * MB // 128  # 1 GB over 8 x 16 workers: 8 MB
    assert unit_bytes(config, [1 << 30], cpus=1) == 1024 * MB // 8  # in this process: 128 MB
    assert unit_bytes(config, [1 << 30], cpus=4096) == AUTO_MIN_BYTES  # a small input on a big cluster
    dump = [1 << 30] * 90_000  # a Common Crawl dump: 90,000 WARCs of 1 GB
    assert unit_bytes(config, dump, cpus=1000) == AUTO_MAX_BYTES  # one unit per WARC, not millions


def test_a_run_planned_by_an_earlier_version_resumes_from_its_plan_json(tmp_path, data_dir):
    import yaml

    from pipeline.config import load_config
    from pipeline.runner import run_pipeline

    inputs = [str(p) for p in (data_dir / "warc" / "dolma_wget").glob("*.warc.gz")]
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump({"name": "old", "stages": ["extract"],
                                           "input": {"paths": inputs, "unit_mb": 0.05}}))
    config = load_config(config_file, output=str(tmp_path / "run"))
    first = run_pipeline(config, show_progress=False)
    run = RunDir(first.run_dir)
    units, planned_inputs = load_plan(run.plan_file)
    (run.root / "plan.json").write_text(json.dumps({"units": [u.to_dict() for u in units], "inputs": planned_inputs}))
    run.plan_file.unlink()
    lost = sorted(run.markers.glob("*.json"))[1]
    run.document_part(lost.stem).unlink()
    lost.unlink()
    resumed = run_pipeline(config, show_progress=False)
    assert resumed.ok and resumed.units_total == len(units) > 2 and resumed.units_resumed == len(units) - 1
    assert [t.to_dict()["kept"] for t in resumed.funnel] == [t.to_dict()["kept"] for t in first.funnel]
