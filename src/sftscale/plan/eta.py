"""The ETA of a running study: remaining cells weighted by their planned cost, rescaled by the
speed measured on the cells finished so far.

``CostETA(planned, slots)``: ``planned`` maps each cell key still to run to the plan's seconds
for it (``plan.json`` of the run directory, see calibrate.py); ``slots`` is how many cells run
at once (the local executor's ``workers``). Call ``start(key, t)`` and ``finish(key, t,
wall_s)`` as cells go; ``remaining(t)`` is the estimate in seconds:

- speed = (measured wall of the finished cells) / (their planned seconds): 1.0 before any
  cell has finished (the plan is trusted as it is);
- each unfinished cell costs planned × speed (a cell missing from ``planned`` costs the
  mean planned cost of the known ones); a cell in flight costs that minus its elapsed time;
- the remaining cells are laid out on ``slots`` parallel slots, most expensive first (as the
  local executor orders them), after the cells in flight; the ETA is when the last slot ends.

The old estimator (mean wall of the finished cells × cells left) fails when cells differ in
cost and the cheap ones finish first; tests/test_eta.py checks both on synthetic runs.

Pure: no clock, no I/O (times are passed in). Not handled: cells whose speed differs from the
plan by a factor that drifts during the run (e.g. the machine's load changes: the estimate
follows with the finished cells' mean), failed cells (they count as finished, with the wall
time they took).
"""

from __future__ import annotations

import heapq
from typing import Mapping


class CostETA:
    def __init__(self, planned: Mapping[str, float], slots: int = 1):
        self.planned = {k: max(0.0, float(v)) for k, v in planned.items()}
        self.slots = max(1, int(slots))
        self.pending: set[str] = set(self.planned)
        self.running: dict[str, float] = {}  # key -> start time
        self.done_planned = 0.0
        self.done_wall = 0.0

    def add(self, key: str, planned_s: float | None = None) -> None:
        """A cell to run that the plan did not list (cost: the mean planned cost)."""
        if key not in self.planned:
            self.planned[key] = self._mean() if planned_s is None else max(0.0, planned_s)
            self.pending.add(key)

    def start(self, key: str, t: float) -> None:
        self.add(key)
        self.pending.discard(key)
        self.running[key] = t

    def finish(self, key: str, t: float, wall_s: float | None = None) -> None:
        self.add(key)
        t0 = self.running.pop(key, None)
        self.pending.discard(key)
        wall = wall_s if wall_s is not None else (t - t0 if t0 is not None else None)
        if wall is not None and self.planned[key] > 0:
            self.done_planned += self.planned[key]
            self.done_wall += max(0.0, wall)

    @property
    def speed(self) -> float:
        """Measured / planned seconds over the finished cells (1.0 before the first)."""
        return self.done_wall / self.done_planned if self.done_planned > 0 else 1.0

    def fraction_done(self) -> float:
        """Planned cost of the finished cells over the planned cost of all cells."""
        total = sum(self.planned.values())
        return self.done_planned / total if total > 0 else 0.0

    def remaining(self, t: float) -> float:
        """Seconds until the last cell ends (0.0 when nothing is left)."""
        sp = self.speed
        ends = [max(0.0, self.planned[k] * sp - (t - t0)) for k, t0 in self.running.items()]
        ends += [0.0] * max(0, self.slots - len(ends))
        heapq.heapify(ends)
        for cost in sorted((self.planned[k] * sp for k in self.pending), reverse=True):
            heapq.heappush(ends, heapq.heappop(ends) + cost)
        return max(ends) if ends else 0.0

    def _mean(self) -> float:
        return sum(self.planned.values()) / len(self.planned) if self.planned else 0.0


def makespan(costs: list[float], slots: int = 1) -> float:
    """Wall time of ``costs`` on ``slots`` parallel slots, most expensive first (the plan's
    wall-time estimate uses the same layout as the ETA)."""
    eta = CostETA({str(i): c for i, c in enumerate(costs)}, slots)
    return eta.remaining(0.0)


__all__ = ["CostETA", "makespan"]
