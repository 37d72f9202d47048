"""Benchmark what the driver does per unit, at the scale of a Common Crawl dump, without processing a document:
save and load the plan, keep the progress board under every unit's reports, and merge the units' markers.

    python scripts/bench_plan.py                      # 100,000 units, 3 repeats
    python scripts/bench_plan.py --units 20000 --repeat 1

Each is timed against the way it was done before, in the same run: plan.json, a board that keeps every unit's
latest counts and sums them all at each poll, and the markers read one by one on the driver. The merge runs in this
process and on a local Ray of 2 CPUs (a tree of tasks). Prints the driver's seconds (median, and the spread over the
repeats), the peak of the driver's Python allocations (tracemalloc, one extra pass) and its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.io.atomic import atomic_write_json, json_bytes  # noqa: E402
from pipeline.io.units import Unit  # noqa: E402
from pipeline.plan import load_plan, save_plan  # noqa: E402
from pipeline.stats import (StageTally, accounting_problems, marker_unit_rows, merge_markers,  # noqa: E402
                            merge_tallies, unit_accounting)
from pipeline.unit_counts import CountDeltas, UnitCounts  # noqa: E402

STAGES = ("read", "extract", "langid", "quality", "c4")
BATCHES_PER_UNIT = 4  # progress reports per unit
POLLS_PER_REPORTS = 10_000  # the progress line reads the totals once per this many reports


def synthetic_units(count: int) -> list[Unit]:
    """Units as a dump plans them: 1 GB WARCs, each one unit."""
    return [Unit(f"CC-MAIN-{index:06d}-{index * 2654435761 % 16**8:08x}",
                 f"/data/crawl-data/CC-MAIN-2024-10/segments/{index // 100}/warc/CC-MAIN-{index:06d}.warc.gz",
                 "warc", "gzip_members", 0, 1 << 30) for index in range(count)]


def synthetic_inputs(units: list[Unit]) -> dict[str, dict]:
    return {unit.path: {"bytes": 1 << 30, "mtime_ns": 1_700_000_000_000_000_000 + index, "use": "read"}
            for index, unit in enumerate(units)}


def synthetic_marker(unit: Unit, index: int) -> dict:
    """A marker as UnitWorker writes it, with counts that close the books."""
    rows, stages = 20_000 + index % 997, []
    for stage in STAGES:
        dropped = {"too_short": rows // 10, "not_html": index % 7} if stage != "read" else {}
        failed = {"ExtractError": index % 3} if stage == "extract" else {}
        kept = rows - sum(dropped.values()) - sum(failed.values())
        examples = [{"outcome": "dropped", "reason": "too_short", "source": unit.path, "offset": index * 100,
                     "url": f"https://example.com/{index}", "detail": None}] if dropped else []
        stages.append({"stage": stage, "rows_in": rows, "kept": kept, "dropped": dropped, "failed": failed,
                       "seconds": round(0.001 * (index % 1000), 4), "examples": examples})
        rows = kept
    return {"unit": unit.id, "path": unit.path, "documents": rows, "rejects": None, "seconds": 12.5,
            "members": {"first": 0, "next": None}, "stages": stages}


def write_markers(run_root: Path, units: list[Unit]) -> None:
    """The run directory's _done/ as the runner leaves it (plain writes: the bench times reading, not writing)."""
    (run_root / "_done").mkdir(parents=True, exist_ok=True)
    for index, unit in enumerate(units):
        (run_root / "_done" / f"{unit.id}.json").write_bytes(json_bytes(synthetic_marker(unit, index)))


def serial_merge(run_root: Path, unit_ids: list[str]) -> tuple[list[StageTally], list[str], int]:
    """The reference: every marker read on the driver, one after the other, and kept (as the runner did)."""
    markers = [json.loads((run_root / "_done" / f"{unit_id}.json").read_text()) for unit_id in unit_ids]
    funnel = merge_tallies([StageTally.from_dict(stage) for stage in marker["stages"]] for marker in markers)
    problems = accounting_problems(funnel, [p for marker in markers for p in unit_accounting(marker)])
    return funnel, problems, len(marker_unit_rows(markers))


class LatestPerUnit:
    """The reference board: every unit's latest counts, summed at each poll."""

    def __init__(self) -> None:
        self.latest: dict[str, list[dict]] = {}

    def report(self, unit_id: str, stages: list[dict]) -> None:
        self.latest[unit_id] = [{"stage": s["stage"], "rows_in": s["rows_in"], "kept": s["kept"]} for s in stages]

    def totals(self) -> list[dict]:
        summed: dict[str, dict] = {}
        for stages in self.latest.values():
            for stage in stages:
                total = summed.setdefault(stage["stage"], {"stage": stage["stage"], "rows_in": 0, "kept": 0})
                total["rows_in"] += stage["rows_in"]
                total["kept"] += stage["kept"]
        return list(summed.values())


def feed_board(units: list[Unit], report, totals) -> None:
    """Every unit's cumulative reports after each of its batches, the totals read every POLLS_PER_REPORTS."""
    reports = 0
    for unit in units:
        for batch in range(1, BATCHES_PER_UNIT + 1):
            report(unit.id, [{"stage": stage, "rows_in": 1000 * batch, "kept": 900 * batch} for stage in STAGES])
            reports += 1
            if reports % POLLS_PER_REPORTS == 0:
                totals()


def board_state_bytes(board) -> int:
    return len(pickle.dumps(board.__dict__))


def measure(name: str, action, repeat: int, results: dict) -> None:
    """Time `action` `repeat` times, then once more under tracemalloc for its peak of Python allocations."""
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    tracemalloc.start()
    action()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results[name] = {"median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds),
                     "peak_alloc_mb": peak / 2**20, "rss_peak_mb": rss_mb}
    print(f"{name:<44} {statistics.median(seconds):8.3f} s  (spread {min(seconds):.3f}-{max(seconds):.3f})  "
          f"peak alloc {peak / 2**20:8.1f} MB  process RSS peak so far {rss_mb:8.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray for the merge; 0: no Ray")
    parser.add_argument("--parts", default="plan,board,merge", help="which of plan, board, merge to time")
    args = parser.parse_args()
    units = synthetic_units(args.units)
    inputs = synthetic_inputs(units)
    unit_ids = [unit.id for unit in units]
    parts = set(args.parts.split(","))
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_plan_", dir="/tmp") as temporary:
        run_root = Path(temporary) / "run"
        started = time.perf_counter()
        run_root.mkdir()
        if "merge" in parts:
            write_markers(run_root, units)
        print(f"{args.units:,} units; markers written in {time.perf_counter() - started:.1f} s\n", flush=True)
        if "plan" in parts:
            bench_plan(run_root, units, inputs, args.repeat, results)
        if "board" in parts:
            bench_board(units, args.repeat, results)
        if "merge" in parts:
            bench_merge(run_root, unit_ids, args.ray_cpus, args.repeat, results)
    print(json.dumps(results, indent=1))


def bench_plan(run_root: Path, units: list[Unit], inputs: dict, repeat: int, results: dict) -> None:
    print("plan")
    measure("plan.json save + load (reference)", lambda: (
        atomic_write_json(run_root / "plan.json", {"units": [u.to_dict() for u in units], "inputs": inputs}),
        [Unit.from_dict(v) for v in json.loads((run_root / "plan.json").read_text())["units"]]),
        repeat, results)
    measure("plan.parquet save + load", lambda: (save_plan(run_root / "plan.parquet", units, inputs),
                                                 load_plan(run_root / "plan.parquet")), repeat, results)
    print(f"  plan.json {(run_root / 'plan.json').stat().st_size / 2**20:.1f} MB, plan.parquet "
          f"{(run_root / 'plan.parquet').stat().st_size / 2**20:.1f} MB + plan_inputs.parquet "
          f"{(run_root / 'plan_inputs.parquet').stat().st_size / 2**20:.1f} MB")


def bench_board(units: list[Unit], repeat: int, results: dict) -> None:
    print(f"\nprogress board: {BATCHES_PER_UNIT} reports per unit, totals read every {POLLS_PER_REPORTS} reports")
    boards = {}

    def latest_board():
        boards["reference"] = board = LatestPerUnit()
        feed_board(units, board.report, board.totals)

    def running_sums():
        boards["sums"] = board = UnitCounts()
        feed_board(units, CountDeltas(board.report), board.totals)

    measure("latest counts per unit (reference)", latest_board, repeat, results)
    measure("running sums (UnitCounts + CountDeltas)", running_sums, repeat, results)
    assert boards["reference"].totals() == boards["sums"].totals()
    print(f"  board state: reference {board_state_bytes(boards['reference']):,} bytes, running sums "
          f"{board_state_bytes(boards['sums']):,} bytes")


def bench_merge(run_root: Path, unit_ids: list[str], ray_cpus: int, repeat: int, results: dict) -> None:
    print("\nmarker merge")
    reference = {}

    def serial():
        reference["funnel"], reference["problems"], reference["rows"] = serial_merge(run_root, unit_ids)

    measure("serial, one marker at a time (reference)", serial, repeat, results)
    merged = {}

    def in_process():
        merged["in_process"], merged["plan"] = merge_markers(str(run_root), unit_ids)

    measure("tree merge, in this process", in_process, repeat, results)
    if ray_cpus:
        import ray

        ray.init(num_cpus=ray_cpus, include_dashboard=False, logging_level="ERROR")
        from pipeline.ray_session import submit_task

        def on_ray():
            merged["ray"], merged["plan"] = merge_markers(str(run_root), unit_ids, submit_task, ray.get)

        on_ray()  # workers started and the functions exported before the clock runs
        measure(f"tree merge, Ray tasks ({ray_cpus} CPUs)", on_ray, repeat, results)
        ray.shutdown()
    plan = merged["plan"]
    print(f"  {plan.batches} leaf tasks of {plan.batch_size} markers, {plan.inner_tasks} inner tasks in "
          f"{plan.rounds} rounds")
    for name in ("in_process", "ray"):
        if name in merged:
            same = ([t.to_dict() for t in merged[name].tallies] == [t.to_dict() for t in reference["funnel"]]
                    and merged[name].unit_rows.num_rows == reference["rows"])
            print(f"  {name}: same funnel and unit rows as the serial merge: {same}")


if __name__ == "__main__":
    main()
