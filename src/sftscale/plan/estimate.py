"""``Plan``: a study's estimate, what ``check.plan_study`` and ``offline.plan_offline`` return and
``calibrate.calibrate_plan`` refines with this machine's measured costs (its own module so that
calibrate.py can name it without importing check.py, which imports calibrate.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Plan:
    """One row per cell (``check._cell_row``: tokens, FLOPs, seconds), the grid's totals, the
    constants and machine assumed, and notes for the reader (``check.format_plan`` prints it)."""

    rows: list[dict[str, Any]]
    totals: dict[str, Any]
    assumptions: dict[str, Any]
    notes: list[str]


__all__ = ["Plan"]
