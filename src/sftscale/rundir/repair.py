"""Rebuilding a run directory's store from its cell directories.

The cell directories hold everything the store records about a done cell (train_meta,
checkpoint, results, samples: the metrics, items and hashes are recomputed from them), so a
lost or damaged ``study.sqlite`` costs no results:

- Missing store, existing cell directories (``ensure_store``, from ``prepare``): rebuilt,
  with one line saying so.
- Damaged store: ``status``/``run``/``export`` say so (``store.StoreDamaged``) and name
  ``sftscale run DIR --repair``. With ``--repair`` the file (and its ``-wal``/``-shm``) is
  moved aside to ``study.sqlite.damaged-<timestamp>`` and the store rebuilt. A store that
  passes SQLite's ``quick_check`` is left as it is (one line says so).

A rebuilt done cell gets its timings from its files (``train_s`` = train_meta's ``wall_s``,
``eval_s`` = the results' ``total_evaluation_time_seconds``; empty when a file has none,
never 0.0), worker ``rebuilt``, and its stale ``error.txt`` is removed. The new store is
written beside the old one and renamed into place, so a crash mid-rebuild leaves no
half-written store. Cells whose ``cell.json`` names another spec are refused as ``prepare``
refuses them (``--rerun-changed`` deletes their directories).

Not handled: what only the store knew is lost: failed states and their errors (such cells
are pending again), attempt counts, overhead times, and done cells whose files are gone (they
run again). The caller holds the run directory's lock (``lock.RunLock``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

from ..grid.cells import Cell
from ..io import InputError, read_json_dict, remove_path
from .integrity import train_complete
from .outputs import collect_outputs, eval_files
from .store import Store, StoreDamaged

log = logging.getLogger("sftscale.study")

STORE = "study.sqlite"


def ensure_store(run_dir: Path, cells: Sequence[Cell], *, repair: bool = False,
                 rerun_changed: bool = False) -> None:
    """Rebuild ``run_dir/study.sqlite`` when it is missing (and cell directories exist) or,
    with ``repair``, damaged; otherwise leave it (opening a damaged store raises
    ``StoreDamaged``)."""
    path = run_dir / STORE
    if not path.exists():
        if any(_cell_dirs(run_dir)):
            n = rebuild(run_dir, cells, rerun_changed=rerun_changed)
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
    n = rebuild(run_dir, cells, rerun_changed=rerun_changed)
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


def rebuild(run_dir: Path, cells: Sequence[Cell], *, rerun_changed: bool = False) -> int:
    """A new store for ``cells``, done cells recorded from their directories; returns how
    many are done. Written to a temporary file, renamed into place."""
    _refuse_stale(run_dir, cells, rerun_changed)
    path = run_dir / STORE
    tmp = path.with_name(path.name + ".rebuild")
    for suffix in ("", "-wal", "-shm"):
        remove_path(tmp.with_name(tmp.name + suffix))
    done = 0
    with Store(tmp) as st:
        st.set_meta(rebuilt_at=time.time())
        st.sync(cells)
        for cell in cells:
            done += _restore_cell(run_dir, st, cell)
    os.replace(tmp, path)
    return done


def _cell_dirs(run_dir: Path) -> list[Path]:
    d = run_dir / "cells"
    return [p for p in d.iterdir() if p.is_dir()] if d.is_dir() else []


def _spec_hash(cdir: Path) -> str | None:
    try:
        doc = json.loads((cdir / "cell.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc.get("spec_hash") if isinstance(doc, dict) else None


def _refuse_stale(run_dir: Path, cells: Sequence[Cell], rerun_changed: bool) -> None:
    """Cell directories made for another spec of the same key: refused, or deleted with
    ``rerun_changed`` (as ``prepare`` does for cells the store knows)."""
    stale = [c for c in cells if (run_dir / "cells" / c.key).is_dir()
             and _spec_hash(run_dir / "cells" / c.key) not in (None, c.spec_hash)]
    if stale and not rerun_changed:
        raise InputError(run_dir / "cells" / stale[0].key / "cell.json",
                         f"{len(stale)} cell directorie(s) were made with a different spec "
                         f"(e.g. {stale[0].key}); use another --out, or --rerun-changed")
    for c in stale:
        remove_path(run_dir / "cells" / c.key)


def _restore_cell(run_dir: Path, st: Store, cell: Cell) -> int:
    """Record ``cell`` as done from its directory if both stages are complete; 1 if so."""

    cdir = run_dir / "cells" / cell.key
    if not cdir.is_dir():
        return 0
    if _spec_hash(cdir) is None:  # no cell.json: nothing says what made these files
        remove_path(cdir / "train")
        remove_path(cdir / "eval")
        return 0
    sha, _ = train_complete(cdir / "train")
    files = eval_files(cdir / "eval")
    if sha is None or files is None:
        return 0  # the runner redoes what is missing
    try:
        out = collect_outputs(run_dir, cell, cdir / "train" / "train_meta.json", *files,
                              ckpt_sha=sha)
    except (InputError, OSError, ValueError) as e:
        log.warning("%s: its evaluation files are unreadable (%s); re-evaluating it", cell.key, e)
        remove_path(cdir / "eval")
        return 0
    train_s, eval_s, finished = file_times(cdir / "train", files[0])
    out.update(cell_dir=f"cells/{cell.key}", worker="rebuilt", train_s=train_s, eval_s=eval_s,
               wall_s=None if train_s is None or eval_s is None else train_s + eval_s,
               finished_at=finished)
    st.record_done(cell.key, out, out.pop("metrics", {}), out.pop("items", []))
    (cdir / "error.txt").unlink(missing_ok=True)
    return 1


def file_times(train_dir: Path, results: Path | None) -> tuple[float | None, float | None,
                                                                float | None]:
    """(train seconds, eval seconds, eval end time) as the stage files recorded them; None
    where a file does not say (an untrained N = 0 cell has no training time)."""
    meta, res = read_json_dict(train_dir / "train_meta.json"), read_json_dict(results) if results else {}
    return _float(meta.get("wall_s")), _float(res.get("total_evaluation_time_seconds")), \
        _float(res.get("end_time"))



def _float(v: Any) -> float | None:
    try:
        return None if v is None or isinstance(v, bool) else float(v)
    except (TypeError, ValueError):
        return None


__all__ = ["damage", "ensure_store", "file_times", "move_aside", "rebuild"]
