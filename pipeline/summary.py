"""What a run says of itself when it ends: the one-screen summary printed after `pipeline run` (`print_result`),
whose funnel and input files are also the output of `pipeline stats`, and the fields of stats/summary.json
(`run_summary`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pipeline.run_dir import RunDir
from pipeline.stats import StageTally

if TYPE_CHECKING:
    from pipeline.config import RunConfig
    from pipeline.runner import RunResult

REASONS_SHOWN = 8


def _rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f}" if seconds > 0 else "-"


def format_funnel(funnel: list[StageTally]) -> str:
    """Per stage: rows in, kept, dropped, failed, time; then the reasons, biggest first, with examples of errors."""
    width = max([len("stage"), *(len(tally.stage) for tally in funnel)]) + 2
    header = f"{'stage':<{width}}{'in':>12}{'kept':>12}{'dropped':>12}{'failed':>10}{'time s':>10}{'rows/s':>10}"
    lines = [header, "-" * len(header)]
    for tally in funnel:
        lines.append(
            f"{tally.stage:<{width}}{tally.rows_in:>12,}{tally.kept:>12,}{tally.dropped_total:>12,}"
            f"{tally.failed_total:>10,}{tally.seconds:>10.1f}{_rate(tally.rows_in, tally.seconds):>10}"
        )
    lines.append("(time is summed over workers; rows/s is per worker)")
    for tally in funnel:
        lines.extend(_reason_lines(tally))
    return "\n".join(lines)


def _reason_lines(tally: StageTally) -> list[str]:
    lines = []
    for outcome, counter in (("dropped", tally.dropped), ("failed", tally.failed)):
        if not counter:
            continue
        ranked = counter.most_common()
        shown = ", ".join(
            f"{reason} {count:,} ({100 * count / max(tally.rows_in, 1):.1f}%)" for reason, count in ranked[:REASONS_SHOWN]
        )
        more = f", and {len(ranked) - REASONS_SHOWN} more" if len(ranked) > REASONS_SHOWN else ""
        lines.append(f"{tally.stage} {outcome}: {shown}{more}")
    for example in tally.examples:
        if example["outcome"] == "failed":
            lines.append(
                f"  e.g. {example['reason']} at {example['source']}:{example['offset']}: {example['detail']}"
            )
    return lines


def format_input_files(report: dict | None) -> str:
    """The input files of a run (`plan.input_report`): how many were read, skipped (by reason, with examples) and
    empty, and the warning about captures read twice; "" for a summary written before runs reported them."""
    if not report:
        return ""
    skipped, empty = report["skipped"], report["empty"]
    counts = [f"{report['read']:,} read"] + [f"{len(paths):,} {what}" for what, paths in
                                             (("skipped", skipped), ("empty", empty)) if paths]
    lines = [f"input files: {', '.join(counts)}"]
    by_reason: dict[str, list[str]] = {}
    for entry in skipped:
        by_reason.setdefault(entry["reason"], []).append(entry["path"])
    ranked = sorted(by_reason.items(), key=lambda item: -len(item[1]))
    lines += [f"  skipped {len(paths):,} ({reason}): {_some(paths)}" for reason, paths in ranked[:REASONS_SHOWN]]
    if len(ranked) > REASONS_SHOWN:
        lines.append(f"  and {len(ranked) - REASONS_SHOWN} more reasons (stats/summary.json lists every file)")
    if empty:
        lines.append(f"  empty {len(empty):,} (0 bytes: no records): {_some(empty)}")
    lines += [f"WARNING: {warning}" for warning in report["warnings"]]
    return "\n".join(lines)


def _some(paths: list[str], shown: int = 3) -> str:
    more = f", and {len(paths) - shown:,} more" if len(paths) > shown else ""
    return ", ".join(paths[:shown]) + more


def records_read(funnel: list[StageTally]) -> int:
    return funnel[0].rows_in if funnel else 0


def documents_kept(funnel: list[StageTally]) -> int:
    return funnel[-1].kept if funnel else 0


def run_summary(config: RunConfig, result: RunResult) -> dict:
    """The fields of stats/summary.json: what ran, where, how long, and what failed."""
    return {
        "name": config.name,
        "run_dir": str(result.run_dir),
        "units": result.units_total,
        "units_resumed": result.units_resumed,
        "failed_units": result.failed_units,
        "failed_stages": result.failed_stages,
        "records_read": records_read(result.funnel),
        "documents": documents_kept(result.funnel),
        "output": str(RunDir(result.run_dir).output_documents),
        "wall_seconds": round(result.seconds, 3),
        "executor": "in_process" if result.in_process else "ray",
        "ray_address": result.ray_address,
        "accounting_problems": result.accounting,
        "input_files": result.input_files,
    }


def print_result(result: RunResult) -> None:
    """The one-screen summary printed at the end of `pipeline run`."""
    from pipeline.config import ConfigError

    resumed = f", {result.units_resumed} done earlier" if result.units_resumed else ""
    where = " in this process (a small input: no Ray started)" if result.in_process else ""
    print(f"\nRun {result.run_dir} finished in {result.seconds:.1f} s{where}: {result.units_total} units{resumed}")
    print(format_funnel(result.funnel))
    if result.input_files:
        print(format_input_files(result.input_files))
    for problem in result.accounting:
        print(f"ACCOUNTING ERROR: {problem}")
    for unit_id, error in result.failed_units.items():
        print(f"FAILED UNIT {unit_id}: {error.splitlines()[0]}")
    documents = documents_kept(result.funnel)
    output = RunDir(result.run_dir).output_documents
    print(f"\n{documents:,} documents in {output}; statistics in {result.run_dir / 'stats'}")
    manifest = RunDir(result.run_dir).shards / "manifest.json"
    if manifest.exists():
        shards = json.loads(manifest.read_text())
        count = sum(len(split["shards"]) for split in shards["splits"].values())
        tokenizer = RunDir(result.run_dir).tokenizer / "tokenizer.json"
        asked = json.loads(tokenizer.read_text()).get("vocab_size_asked", 0) if tokenizer.exists() else 0
        smaller = f" of the {asked:,} asked" if asked > shards["vocab_size"] else ""
        print(f"{shards['tokens']:,} tokens ({shards['dtype']}, vocabulary {shards['vocab_size']:,}{smaller}) in "
              f"{count} shards: {manifest}")
    for name, error in result.failed_stages.items():
        print(f"FAILED STAGE {name}: {error.splitlines()[0]}")
    if result.failed_units:
        print(f"{len(result.failed_units)} unit(s) failed; run the same command again to retry them.")
    done = RunDir(result.run_dir).train / "_done.json"
    if done.exists():
        final = json.loads(done.read_text())["final"]
        if final.get("val_loss") is not None:
            print(f"GPT trained to step {final['step']}: validation loss {final['val_loss']:.3f} (perplexity "
                  f"{final['val_perplexity']:.1f}); sample it: pipeline sample --checkpoint {done.parent}")
    if result.failed_stages:
        # A ConfigError, of any subclass (settings that do not fit the data), fails the same way on a retry. The
        # stage's error text starts with its class name (`RayTaskError(Name)` from a Ray task); the class of an
        # error that reached this process has been imported, so it is among the subclasses.
        def kinds(cls: type) -> set[str]:
            return {cls.__name__}.union(*(kinds(sub) for sub in cls.__subclasses__()))

        settled = kinds(ConfigError)
        names = {error.split(":", 1)[0].removeprefix("RayTaskError(").removesuffix(")")
                 for error in result.failed_stages.values()}
        if names <= settled:
            print("A retry fails the same way: change what the error says (a setting, or the data), then run the "
                  "same command again; finished steps are not redone.")
        else:
            print("Run the same command again to retry the failed stage; finished steps are not redone.")
    if result.accounting:
        print("The books of this run do not close (see ACCOUNTING ERROR above): its output is not to be trusted.")
    if result.kept_entries:
        print(f"--overwrite left what a run does not write in {result.run_dir}: {', '.join(result.kept_entries)}")
