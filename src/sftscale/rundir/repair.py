"""Rebuilding a run directory's store from its cell directories.

The cell directories hold everything the store records about a done cell (each stage's
files: the hashes, metrics and items are recomputed from them, stage by stage of the stage
list), so a lost or damaged ``study.sqlite`` costs no results:

- Missing store, existing cell directories (``ensure_store``, from ``prepare``): rebuilt,
  with one line saying so.
- Damaged store: ``status``/``run``/``export`` say so (``store.StoreDamaged``) and name
  ``sftscale run DIR --repair``. With ``--repair`` the file (and its ``-wal``/``-shm``) is
  moved aside to ``study.sqlite.damaged-<timestamp>`` and the store rebuilt. A store that
  passes SQLite's ``quick_check`` is left as it is (one line says so).

A rebuilt done cell gets its timings from its files (``StageSpec.seconds``: ``train_s`` =
train_meta's ``wall_s``, ``eval_s`` = the results' ``total_evaluation_time_seconds``; empty
when a file has none, never 0.0), its finishing time from its newest hashed file, worker
``rebuilt``, and its stale ``error.txt`` is removed. A cell is done only when every stage's
directory is complete (``stagespec.state``); the runner redoes the rest. The new store is
written beside the old one and renamed into place, so a crash mid-rebuild leaves no
half-written store. Cells whose ``cell.json`` names another spec are refused as ``prepare``
refuses them (``--rerun-changed`` deletes their directories).

Not handled: what only the store knew is lost: failed states and their errors (such cells
are pending again), attempt counts, overhead times, and done cells whose files are gone (they
run again). The caller holds the run directory's lock (``lock.RunLock``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Sequence

from ..grid.cells import Cell
from ..io import InputError, remove_path
from . import layout
from .outputs import StageUnreadable, collect_outputs
from .stagespec import StageSpec, dependents, hashed_paths, state
from .store import Store, StoreDamaged

log = logging.getLogger("sftscale.study")


def ensure_store(run_dir: Path, cells: Sequence[Cell], stages: Sequence[StageSpec], *,
                 repair: bool = False, rerun_changed: bool = False) -> None:
    """Rebuild ``run_dir/study.sqlite`` when it is missing (and cell directories exist) or,
    with ``repair``, damaged; otherwise leave it (opening a damaged store raises
    ``StoreDamaged``)."""
    path = layout.store_path(run_dir)
    if not path.exists():
        if any(_cell_dirs(run_dir)):
            n = rebuild(run_dir, cells, stages, rerun_changed=rerun_changed)
            log.warning("%s: no study.sqlite; rebuilt it from the cell directories (%d of %d "
                        "cells done)", run_dir, n, len(cells))
        return
    if not repair:
        return
    problem = damage(path)
    if problem is None:
        log.warning("%s: the store is sound (SQLite quick_check ok); nothing to repair", path)
        return
    _refuse_stale(run_dir, cells, rerun_changed)
    aside = move_aside(path)
    n = rebuild(run_dir, cells, stages, rerun_changed=rerun_changed)
    log.warning("%s was damaged (%s): moved to %s; rebuilt from the cell directories (%d of %d "
                "cells done)", path, problem, aside.name, n, len(cells))


def damage(path: Path) -> str | None:
    """What is wrong with the store at ``path`` (None: nothing SQLite can find)."""
    try:
        with Store(path) as st:
            return st.quick_check()
    except StoreDamaged as e:
        return e.detail


def move_aside(path: Path) -> Path:
    """``study.sqlite`` (with its -wal/-shm) to ``study.sqlite.damaged-<timestamp>``."""
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("-wal", "-shm", ""):  # the database last: never a main file without its WAL
        src = path.with_name(path.name + suffix)
        if src.exists():
            os.replace(src, aside.with_name(aside.name + suffix))
    return aside


def rebuild(run_dir: Path, cells: Sequence[Cell], stages: Sequence[StageSpec], *,
            rerun_changed: bool = False) -> int:
    """A new store for ``cells``, done cells recorded from their directories; returns how
    many are done. Written to a temporary file, renamed into place."""
    _refuse_stale(run_dir, cells, rerun_changed)
    path = layout.store_path(run_dir)
    tmp = path.with_name(path.name + ".rebuild")
    for suffix in ("", "-wal", "-shm"):
        remove_path(tmp.with_name(tmp.name + suffix))
    done = 0
    with Store(tmp) as st:
        st.set_meta(rebuilt_at=time.time())
        st.sync(cells)
        for cell in cells:
            done += _restore_cell(run_dir, st, cell, stages)
    os.replace(tmp, path)
    return done


def _cell_dirs(run_dir: Path) -> list[Path]:
    d = layout.cells_dir(run_dir)
    return [p for p in d.iterdir() if p.is_dir()] if d.is_dir() else []


def _spec_hash(cdir: Path) -> str | None:
    try:
        doc = json.loads((cdir / layout.CELL_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc.get("spec_hash") if isinstance(doc, dict) else None


def _refuse_stale(run_dir: Path, cells: Sequence[Cell], rerun_changed: bool) -> None:
    """Cell directories made for another spec of the same key: refused, or deleted with
    ``rerun_changed`` (as ``prepare`` does for cells the store knows)."""
    stale = [c for c in cells if layout.cell_dir(run_dir, c.key).is_dir()
             and _spec_hash(layout.cell_dir(run_dir, c.key)) not in (None, c.spec_hash)]
    if stale and not rerun_changed:
        raise InputError(layout.cell_dir(run_dir, stale[0].key) / layout.CELL_JSON,
                         f"{len(stale)} cell directorie(s) were made with a different spec "
                         f"(e.g. {stale[0].key}); use another --out, or --rerun-changed")
    for c in stale:
        remove_path(layout.cell_dir(run_dir, c.key))


def _restore_cell(run_dir: Path, st: Store, cell: Cell, stages: Sequence[StageSpec]) -> int:
    """Record ``cell`` as done from its directory if every stage is complete; 1 if so."""
    cdir = layout.cell_dir(run_dir, cell.key)
    if not cdir.is_dir():
        return 0
    if _spec_hash(cdir) is None:  # no cell.json: nothing says what made these files
        for spec in stages:
            remove_path(spec.dir_in(cdir))
        return 0
    hashes = {}
    for spec in stages:
        hashes[spec.name], _ = state(spec, spec.dir_in(cdir))
        if hashes[spec.name] is None:
            return 0  # the runner redoes what is missing
    try:
        out = collect_outputs(run_dir, cell, stages, hashes)  # type: ignore[arg-type]
    except StageUnreadable as e:
        redo = [e.stage] + dependents(stages, e.stage)
        log.warning("%s: %s; rerunning its %s stage%s", cell.key, e, ", ".join(redo),
                    "s" if len(redo) > 1 else "")
        for spec in stages:
            if spec.name in redo:
                remove_path(spec.dir_in(cdir))
        return 0
    secs = {s.name: s.seconds(s.dir_in(cdir)) if s.seconds else None for s in stages}
    train_s, eval_s = secs.get(layout.TRAIN), secs.get(layout.EVAL)
    known = {k: v for k, v in secs.items() if v is not None}
    out.update(cell_dir=layout.cell_rel(cell.key), worker="rebuilt", train_s=train_s, eval_s=eval_s,
               stage_s=known, wall_s=sum(known.values()) if len(known) == len(secs) else None,
               finished_at=_finished(cdir, stages))
    st.record_done(cell.key, out, out.pop("metrics", {}), out.pop("items", []))
    (cdir / layout.ERROR).unlink(missing_ok=True)
    return 1


def _finished(cdir: Path, stages: Sequence[StageSpec]) -> float | None:
    """When the cell's last stage finished: the newest modification time of its hashed files."""
    times = []
    for spec in stages:
        with contextlib.suppress(OSError, ValueError):
            times += [p.stat().st_mtime for p in hashed_paths(spec, spec.dir_in(cdir)) if p.exists()]
    return max(times, default=None)


__all__ = ["damage", "ensure_store", "move_aside", "rebuild"]
