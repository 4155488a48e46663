"""What ``sftscale status DIR`` shows: one row per cell with its state, main metrics and timings.

Reads the store read-only (``Store(readonly=True)``: works in a read-only run directory). A
done cell whose files are gone (its directory deleted, or a file any of its stages recorded
missing: train_meta, checkpoint, results, samples, ...) is shown as ``done (files missing)``
and counted under ``files missing``, not ``done``, with the missing paths in its row
(``missing``, shown in the error column): the next ``run`` redoes it (rundir/integrity.py). A
done cell whose values in the store changed since they were recorded (``rows_sha``) is
``done (store changed)``: the next ``run`` re-records them from the cell's files. A cell the
store calls ``running`` while no process holds the run directory's lock
(``rundir.lock.RunLock.held``: the run was killed) is ``interrupted``: the next ``run`` starts
it again.

Stages: a row's ``stages`` maps each stage the cell has files or a time of (in the stage
list's order: train, eval, then registered stages) to its seconds (None when unknown);
``sftscale status`` shows one ``<stage> s`` column per stage.

A recipe search's outcome (search.py) is the row's ``search``: the chosen values and every
candidate's validation score (None for cells without a search);
``search.describe_choice`` writes it as one line.

``print_plan_vs_measured`` (``status --plan``): the plan saved at the start of the run
(plan/runplan.py) against the cells' measured seconds.

Not handled: cells of a config that was never run in DIR (they are not in the store yet);
files whose content changed (``status`` checks their presence only and the store's values
against the store's checksum; ``run`` checks the files' hashes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..io import InputError
from ..rundir import layout
from ..rundir.integrity import which_missing
from ..rundir.lock import RunLock
from ..rundir.store import STATES, Store

FILES_MISSING = "done (files missing)"
STORE_CHANGED = "done (store changed)"
INTERRUPTED = "interrupted"
#: what the states besides the store's own mean, in counts and the error column
_EXTRA = {FILES_MISSING: "files missing", STORE_CHANGED: "store changed",
          INTERRUPTED: "interrupted"}


def status_rows(run_dir: str | os.PathLike) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(one dict per cell, counts by state); ``counts["files missing"]`` only when nonzero."""
    p = Path(run_dir)
    if not layout.store_path(p).exists():
        raise InputError(p, f"not a run directory (no {layout.STORE})")
    held = None  # whether a run holds the lock: asked only when a cell says running
    with Store(layout.store_path(p), readonly=True) as st:
        by_cell: dict[str, dict[str, float]] = {}
        for m in st.metrics():
            by_cell.setdefault(m["cell"], {})[m["metric"]] = m["value"]
        files = st.files()
        rows = []
        for c in st.cells():
            ms = by_cell.get(c["key"], {})
            state, missing, problem = c["state"], [], None
            if state == "done":
                missing = which_missing(p, c, files.get(c["key"], {}))
                if missing:
                    state, problem = FILES_MISSING, "missing: " + ", ".join(missing)
                elif c.get("rows_sha") and st.rows_sha_now(c["key"]) != c["rows_sha"]:
                    state, problem = STORE_CHANGED, ("its values in study.sqlite changed since "
                                                     "they were recorded; `sftscale run` re-reads "
                                                     "them from its files")
            elif state == "running":
                held = RunLock(p).held() if held is None else held
                if not held:
                    state, problem = INTERRUPTED, ("no run holds the run directory (the one "
                                                   "that ran it was stopped); `sftscale run` "
                                                   "starts it again")
            rows.append({"key": c["key"], "model": c["model"], "task": c["task"], "n": c["n"],
                         "seed": c["seed"], "state": state, "attempts": c["attempts"],
                         "accuracy": ms.get("accuracy"), "format_rate": ms.get("format_rate"),
                         "n_items": c["n_items"], "train_s": c["train_s"], "eval_s": c["eval_s"],
                         "overhead_s": c["overhead_s"], "error": c["error"] or problem,
                         "missing": missing, "traceback": c["traceback"],
                         "search": json.loads(c["search"]) if c.get("search") else None,
                         "stages": _stages(c, files.get(c["key"], {}))})
    counts = {k: sum(r["state"] == k for r in rows) for k in STATES}
    for state, name in _EXTRA.items():
        k = sum(r["state"] == state for r in rows)
        if k:
            counts[name] = k
    return rows, counts


def _stages(c: dict[str, Any], files: dict[str, Any]) -> dict[str, float | None]:
    """{stage: seconds} of a cell row: the stages it recorded files or times of."""
    secs = json.loads(c["stage_s"]) if c.get("stage_s") else {}
    if not secs:  # recorded before per-stage times: the first two stages' columns
        secs = {k: c[f"{k}_s"] for k in (layout.TRAIN, layout.EVAL) if c.get(f"{k}_s") is not None}
    return {s: secs.get(s) for s in dict.fromkeys([*files, *secs])}


def plan_vs_measured(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per cell: planned CPU seconds (DIR/plan.json) and measured wall (store); totals with
    the planned and measured run wall time when known. InputError without a plan.json."""
    from ..plan.runplan import read_run_plan

    plan = read_run_plan(run_dir)
    if plan is None:
        raise InputError(layout.plan_path(run_dir), "no plan saved in this run directory "
                         "(runs save it at their start since sftscale 0.x; rerun `sftscale run`)")
    rows, _ = status_rows(run_dir)
    out = []
    for r in rows:
        p = plan["rows"].get(r["key"], {})
        out.append({"key": r["key"], "model": r["model"], "task": r["task"], "n": r["n"],
                    "state": r["state"], "planned_s": p.get("cpu_s"), "wall_s": _wall(r),
                    "train_s": r.get("train_s"), "eval_s": r.get("eval_s")})
    both = [o for o in out if o["planned_s"] is not None and o["wall_s"] is not None]
    tot = {"cells": len(out), "compared": len(both),
           "planned_s": sum(o["planned_s"] for o in both),
           "measured_s": sum(o["wall_s"] for o in both),
           "planned_wall_s": plan.get("totals", {}).get("wall_s"),
           "run_wall_s": plan.get("run_wall_s")}
    return out, tot


def _wall(r: dict[str, Any]) -> float | None:
    if r["state"] != "done" or r.get("train_s") is None:
        return None
    return sum(r.get(k) or 0.0 for k in ("train_s", "eval_s", "overhead_s"))


def print_plan_vs_measured(run_dir: str | os.PathLike, as_json: bool = False) -> None:
    """``status --plan``: per cell planned seconds (DIR/plan.json) vs measured wall seconds,
    and the totals (with the plan's predicted wall time and the run's when known)."""
    rows, tot = plan_vs_measured(Path(run_dir))
    if as_json:
        for r in rows:
            print(json.dumps(r))
        print(json.dumps({"total": tot}))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{run_dir}: planned vs measured ({tot['compared']} of {tot['cells']} cells)")
    for col in ("model", "task", "n", "state", "planned s", "measured s", "measured/planned"):
        t.add_column(col, no_wrap=True, justify="left" if col in ("model", "task") else "right")
    for r in rows:
        p, w = r["planned_s"], r["wall_s"]
        t.add_row(r["model"], r["task"], str(r["n"]), r["state"], _s(p), _s(w),
                  f"{w / p:.2f}" if p and w is not None else "")
    ratio = tot["measured_s"] / tot["planned_s"] if tot["planned_s"] else None
    t.add_row("total (cells)", "", "", "", _s(tot["planned_s"]), _s(tot["measured_s"]),
              f"{ratio:.2f}" if ratio else "", style="bold")
    con = Console()
    if not con.is_terminal:
        con = Console(width=160)
    con.print(t)
    pw, rw = tot.get("planned_wall_s"), tot.get("run_wall_s")
    if pw is not None or rw is not None:
        con.print(f"  wall time: planned {_s(pw)} s (whole `sftscale run`, start-up included), "
                  f"measured {_s(rw)} s (the runner, from its lock to its exports)", highlight=False)


def _s(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}"


__all__ = ["FILES_MISSING", "INTERRUPTED", "STORE_CHANGED", "print_plan_vs_measured", "status_rows"]
