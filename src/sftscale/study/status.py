"""What ``sftscale status DIR`` shows: one row per cell with its state, main metrics and timings.

Not handled: cells of a config that was never run in DIR (they are not in the store yet).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..io import InputError
from .store import STATES, Store


def status_rows(run_dir: str | os.PathLike) -> tuple[list[dict[str, Any]], dict[str, int]]:
    p = Path(run_dir)
    if not (p / "study.sqlite").exists():
        raise InputError(p, "not a run directory (no study.sqlite)")
    with Store(p / "study.sqlite", readonly=True) as st:
        by_cell: dict[str, dict[str, float]] = {}
        for m in st.metrics():
            by_cell.setdefault(m["cell"], {})[m["metric"]] = m["value"]
        rows = []
        for c in st.cells():
            ms = by_cell.get(c["key"], {})
            rows.append({"key": c["key"], "model": c["model"], "task": c["task"], "n": c["n"],
                         "seed": c["seed"], "state": c["state"], "attempts": c["attempts"],
                         "accuracy": ms.get("accuracy"), "format_rate": ms.get("format_rate"),
                         "n_items": c["n_items"], "train_s": c["train_s"], "eval_s": c["eval_s"],
                         "overhead_s": c["overhead_s"], "error": c["error"],
                         "traceback": c["traceback"]})
        counts = st.counts()
    return rows, {k: counts[k] for k in STATES}


__all__ = ["status_rows"]
