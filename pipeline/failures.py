"""What failed in a run, as the run reports and weighs it: a failed unit's or stage's error text, and whether the
failed units are few enough (`max_failed_share`) for the run to go on to its global stages."""

from __future__ import annotations

import traceback


def error_text(exc: Exception) -> str:
    """How a failed unit or stage is reported: the exception, then where it came from."""
    return f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"


def within_budget(failed: dict[str, str], units: int, max_failed_share: float) -> bool:
    """Whether the failed units (and failed downloads) are few enough for the run to go on."""
    return not failed or (max_failed_share > 0 and len(failed) <= max_failed_share * max(units, 1))
