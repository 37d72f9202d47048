"""The funnel and the input files as text: the one-screen summary at the end of a run and the output of
`pipeline stats`."""

from __future__ import annotations

from pipeline.stats import StageTally

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
