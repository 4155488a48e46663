"""What ``sftscale status DIR`` shows: one row per cell with its state, main metrics and timings.

Reads the store read-only (``Store(readonly=True)``: works in a read-only run directory). A
done cell whose files are gone (its directory deleted, or its train_meta, checkpoint,
results or samples file missing) is shown as ``done (files missing)`` and counted under
``files missing``, not ``done``: the next ``run`` redoes it (integrity.py).

Not handled: cells of a config that was never run in DIR (they are not in the store yet);
files whose content changed (``status`` checks presence only; ``run`` checks the hashes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..io import InputError
from .integrity import missing_files
from .store import STATES, Store

FILES_MISSING = "done (files missing)"


def status_rows(run_dir: str | os.PathLike) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(one dict per cell, counts by state); ``counts["files missing"]`` only when nonzero."""
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
            state = c["state"]
            if state == "done" and missing_files(p, c):
                state = FILES_MISSING
            rows.append({"key": c["key"], "model": c["model"], "task": c["task"], "n": c["n"],
                         "seed": c["seed"], "state": state, "attempts": c["attempts"],
                         "accuracy": ms.get("accuracy"), "format_rate": ms.get("format_rate"),
                         "n_items": c["n_items"], "train_s": c["train_s"], "eval_s": c["eval_s"],
                         "overhead_s": c["overhead_s"], "error": c["error"],
                         "traceback": c["traceback"]})
    counts = {k: sum(r["state"] == k for r in rows) for k in STATES}
    missing = sum(r["state"] == FILES_MISSING for r in rows)
    if missing:
        counts["files missing"] = missing
    return rows, counts


__all__ = ["FILES_MISSING", "status_rows"]
