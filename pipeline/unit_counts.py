"""The per-document pass's counts for the progress line: what each worker reports after every batch, summed.

Workers send the rows in and kept since their previous report (`CountDeltas`); one `UnitCounts` sums them (on Ray,
as a tiny actor, the progress board), so the progress line reads two numbers per stage however many units the run
has. These counts only feed the progress line; the run's statistics come from the units' markers.
"""

from __future__ import annotations

from typing import Callable


class UnitCounts:
    """The documents counted so far, per stage: running sums of what workers report (`CountDeltas`). Rows a worker
    counted before dying stay in the sums and its unit's retry counts them again: the progress line may run a
    little ahead; the statistics, from the markers, do not."""

    def __init__(self) -> None:
        self.sums: dict[str, list[int]] = {}  # stage -> [rows in, kept]

    def report(self, deltas: list[dict]) -> None:
        for delta in deltas:
            sums = self.sums.setdefault(delta["stage"], [0, 0])
            sums[0] += delta["rows_in"]
            sums[1] += delta["kept"]

    def totals(self) -> list[dict]:
        return [{"stage": stage, "rows_in": rows_in, "kept": kept} for stage, (rows_in, kept) in self.sums.items()]


class CountDeltas:
    """What a worker sends the board (`send`: UnitCounts.report): of the cumulative counts UnitWorker reports for a
    unit after each batch, the rows in and kept since its previous report."""

    def __init__(self, send: Callable[[list[dict]], object]) -> None:
        self.send = send
        self.unit: str | None = None
        self.reported: dict[str, tuple[int, int]] = {}  # of the current unit: stage -> (rows in, kept) so far

    def __call__(self, unit_id: str, stages: list[dict]) -> None:
        if unit_id != self.unit:
            self.unit, self.reported = unit_id, {}
        deltas = []
        for stage in stages:
            rows_in, kept = self.reported.get(stage["stage"], (0, 0))
            deltas.append({"stage": stage["stage"], "rows_in": stage["rows_in"] - rows_in,
                           "kept": stage["kept"] - kept})
            self.reported[stage["stage"]] = (stage["rows_in"], stage["kept"])
        self.send(deltas)
