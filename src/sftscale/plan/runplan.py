"""A run's plan and its measured cells: ``DIR/plan.json`` written at the start of a run (the
ETA's cell costs, and what ``status --plan`` compares with), the run's timings fed back into
the calibration cache at its end (calibrate.py), planned vs measured per cell.

``plan.json``: ``{"rows": {cell key: plan row + planned_at}, "totals", "assumptions",
"run_wall_s"}``; the first plan of a run directory is kept (a resumed run adds the rows of
new cells only), so the comparison is always with what was predicted before the cells ran.

Not handled: cells finished by an earlier invocation on another machine (they are compared,
but only the cells finished by THIS invocation recalibrate this machine's cache).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping

from ..config import StudyConfig
from ..io import atomic_write_json
from ..rundir import layout
from .calibrate import fit_rates, model_hash, save_calibration, study_fingerprint

log = logging.getLogger(__name__)


def save_run_plan(cfg: StudyConfig, run_dir: Path, pool_sizes: Mapping[str, int] | None = None
                  ) -> dict[str, float] | None:
    """Write ``DIR/plan.json`` (the plan before the run: the first one is kept; cells it lacks
    are added) and return {cell key: planned CPU seconds}. Never raises: a plan that cannot be
    made (``None``) must not stop a run."""
    try:
        from .check import plan_study

        p = layout.plan_path(run_dir)
        old = json.loads(p.read_text()) if p.exists() else {"rows": {}}
        new = plan_study(cfg)
        rows = {r["cell"]: r for r in new.rows}
        for k, r in rows.items():
            old["rows"].setdefault(k, {**r, "planned_at": time.time()})
        old.setdefault("totals", new.totals)
        old.setdefault("assumptions", new.assumptions)
        atomic_write_json(p, old)
        return {k: float(r["cpu_s"]) for k, r in old["rows"].items() if r.get("cpu_s") is not None}
    except Exception as e:  # noqa: BLE001 - the plan is advice; the run goes on without it
        log.warning("no plan for the ETA (%s: %s)", type(e).__name__, e)
        return None


def read_run_plan(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads(layout.plan_path(run_dir).read_text())
    except (OSError, ValueError):
        return None


def record_run(cfg: StudyConfig, run_dir: Path, started: float, wall_s: float) -> Path | None:
    """Fit the rates of each model from the cells finished since ``started`` (time.time()) and
    merge them into the cache as source "run". Never raises (logged)."""
    try:
        return _record_run(cfg, Path(run_dir), started, wall_s)
    except Exception as e:  # noqa: BLE001
        log.warning("could not record the run's timings for `plan` (%s: %s)", type(e).__name__, e)
        return None


def _record_run(cfg: StudyConfig, run_dir: Path, started: float, wall_s: float) -> Path | None:
    from ..rundir.store import Store
    from .eta import makespan

    note_run_wall(run_dir, wall_s)
    plan = read_run_plan(run_dir)
    if plan is None:
        return None
    with Store(layout.store_path(run_dir), readonly=True) as st:
        cells = [c for c in st.cells("done") if (c["finished_at"] or 0) >= started]
    fp = study_fingerprint(cfg)
    path = None
    ran = [c for c in cells if c["key"] in plan["rows"]]
    if ran:
        extra = wall_s - makespan([c["wall_s"] or 0.0 for c in ran], fp["workers"])
    for m in cfg.models:
        mine = [(c, plan["rows"][c["key"]]) for c in ran if c["model"] == m.label]
        w = model_hash(m.ref) if mine else None
        if w is None:
            continue
        rates = fit_rates(mine)
        rates["run_extra_s"] = max(0.0, extra)
        rates["run_dir"] = str(run_dir)
        path = save_calibration(fp, w, m.ref, "run", rates)
    return path


def note_run_wall(run_dir: Path, wall_s: float) -> None:
    """Keep the run's wall time in plan.json beside the prediction (status --plan)."""
    plan = read_run_plan(run_dir)
    if plan is not None:
        plan["run_wall_s"] = wall_s
        atomic_write_json(layout.plan_path(run_dir), plan)


__all__ = ["note_run_wall", "read_run_plan", "record_run", "save_run_plan"]
