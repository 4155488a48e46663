"""The one progress event that train, generation, evaluation and the study runner report.

Every stage that reports progress takes ``progress: ProgressFn | None`` and calls it with a
``ProgressEvent``: training after each optimizer step (``done`` = steps, ``metrics`` = loss,
lr, tokens, ...), generation after each finished prompt (``done`` = responses), the runner
when a cell enters a stage (``done`` = 0). The runner fills in ``cell``; displays read
``describe()``. A leaf module: it imports nothing of sftscale.

Not handled: throttling (a display that redraws on every event should rate-limit itself;
``Throttle`` helps) and cross-process delivery (Ray workers report nothing mid-cell).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class ProgressEvent:
    """``stage`` is one of ``train``, ``generate``, ``eval``, ``score`` or a free-form label
    (``in a worker``, ``on ray``); ``done`` of ``total`` units (steps or responses)."""

    stage: str
    done: int = 0
    total: int | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    cell: str | None = None

    def for_cell(self, key: str) -> "ProgressEvent":
        return replace(self, cell=key)

    def describe(self) -> str:
        """``train step 3/30``, ``generate 12/60``, or the bare stage when nothing is counted."""
        if self.total is None and not self.done:
            return self.stage
        unit = "step " if self.stage == "train" else ""
        return f"{self.stage} {unit}{self.done}/{self.total if self.total is not None else '?'}"


ProgressFn = Callable[[ProgressEvent], None]


class Throttle:
    """Pass an event on at most every ``every_s`` seconds, and always the last one
    (``done == total``) and the first of each stage."""

    def __init__(self, fn: ProgressFn, every_s: float = 0.25):
        self.fn, self.every_s, self._last = fn, every_s, 0.0
        self._stage: str | None = None

    def __call__(self, ev: ProgressEvent) -> None:
        now = time.monotonic()
        if (ev.stage != self._stage or now - self._last >= self.every_s
                or (ev.total is not None and ev.done >= ev.total)):
            self._last, self._stage = now, ev.stage
            self.fn(ev)


__all__ = ["ProgressEvent", "ProgressFn", "Throttle"]
