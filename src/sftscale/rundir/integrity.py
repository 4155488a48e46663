"""Content checks of a cell's stage outputs before they are reused, stage by stage.

What is checked, and where it sends the cell (the cell's row goes back to ``pending`` and
the stage directories that can no longer be trusted are deleted, with one warning line on
logger ``sftscale.study``; a cell never ends up ``failed`` because of files it could redo):

- A ``done`` cell (``verify_done``, at the start of every ``run``): every file the store
  recorded for each stage (``files`` table: path and sha256) against the disk, stages in
  list order. A missing or changed file sends the cell back to that stage: its directory and
  those of the stages that need it (``StageSpec.needs``) are deleted, the others kept (a
  changed checkpoint retrains and re-evaluates; a missing results file re-evaluates only). A
  stage in the list that the store has no files of (a stage registered after the cell was
  done) sends the cell back to run it, and what needs it.
- A ``done`` cell whose files pass: the store's own values (metric and item rows, n_items)
  against ``rows_sha``, the checksum taken when they were recorded (``outputs.check_values``,
  called by the runner after ``verify_done``); a value changed in the store is re-recorded
  from the files (no stage reruns), with one warning.
- A stage directory reused by a cell that is not done (a crash between the stage and the
  store's commit, or a ``--retry-failed`` cell): ``stagespec.state`` checks its ``done``
  files, that its hashed files exist and that they match the hashes sealed when the stage
  finished; otherwise the stage reruns.

The train stage's hashed files (``train_files``) are ``train_meta.json`` and the checkpoint
directory it names (``checkpoint``, default ``ckpt/``), hashed as a tree; a cell without a
checkpoint (N = 0) has none.

Cost: every check re-reads the files (a full finetune's weights included) on every ``run``.

Not handled: a file a stage declares that the store did not record (a done cell recorded
before the store kept it, e.g. a checkpoint of a store older than checkpoint hashes) is
trusted once: its current hash is stored, not compared; a stage directory written before
seals existed is checked for its files' presence only; ``status`` checks presence only
(``missing_files``), not content.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..io import remove_path
from . import layout
from .stagespec import StageSpec, dependents, hash_path, hashed_paths

log = logging.getLogger("sftscale.study")

Recorded = Mapping[str, Mapping[str, str | None]]  # stage -> {path relative to the run dir: sha}


def checkpoint_dir(train_dir: Path) -> Path | None:
    """The checkpoint directory named by ``train_dir/train_meta.json`` (None: no meta or
    an untrained cell)."""
    try:
        meta = json.loads((train_dir / layout.TRAIN_META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("trained") is False:
        return None
    return train_dir / (meta.get("checkpoint") or layout.CKPT)


def train_files(train_dir: Path) -> list[Path]:
    """The train stage's hashed files: ``train_meta.json`` and, for a trained cell, its
    checkpoint directory. ValueError when the meta is unreadable."""
    meta = train_dir / layout.TRAIN_META
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except OSError:
        return [meta]
    except ValueError:
        raise ValueError(f"{layout.TRAIN_META} is unreadable") from None
    ckpt = checkpoint_dir(train_dir) if isinstance(doc, dict) else None
    return [meta] + ([ckpt] if ckpt is not None else [])


def _why(run_dir: Path, path: str, sha: str | None) -> str | None:
    p = run_dir / path
    if not p.exists():
        return "missing"
    if sha is not None and hash_path(p) != sha:
        return "changed"
    return None


def check_done(run_dir: Path, cell_dir: str, recorded: Recorded,
               stages: Sequence[StageSpec]) -> tuple[str, str] | None:
    """(first stage to redo, why) for a done cell whose recorded files fail the checks; None
    when they pass."""
    for spec in stages:
        files = recorded.get(spec.name)
        if not files:
            return spec.name, f"its {spec.name} stage has not run"
        for path, sha in files.items():
            why = _why(run_dir, path, sha)
            if why:
                rel = Path(path).relative_to(cell_dir).as_posix() if path.startswith(cell_dir) \
                    else path
                return spec.name, f"{rel} {why}"
    return None


def _record_new(run_dir: Path, st: Any, key: str, cell_dir: str, recorded: Recorded,
                stages: Sequence[StageSpec]) -> None:
    """Files a stage declares that the store did not record: stored now (trusted once)."""
    for spec in stages:
        sdir = spec.dir_in(run_dir / cell_dir)
        try:
            paths = hashed_paths(spec, sdir)
        except (OSError, ValueError):
            continue
        have = recorded.get(spec.name) or {}
        for p in paths:
            rel = f"{cell_dir}/{spec.directory}/{p.relative_to(sdir).as_posix()}"
            if rel not in have and p.exists():
                st.add_file(key, spec.name, rel, hash_path(p))


def verify_done(run_dir: Path, st: Any, stages: Sequence[StageSpec],
                keys: Sequence[str] | None = None) -> list[str]:
    """Done cells whose files are missing or changed go back to pending, their untrusted
    stage directories deleted (see the module docstring); returns their keys."""
    bad = []
    wanted = None if keys is None else set(keys)
    files = st.files()
    for row in st.cells("done"):
        key = row["key"]
        if wanted is not None and key not in wanted:
            continue
        cdir = row["cell_dir"] or layout.cell_rel(key)
        recorded = files.get(key, {})
        found = check_done(run_dir, cdir, recorded, stages)
        if found is None:
            _record_new(run_dir, st, key, cdir, recorded, stages)
            continue
        stage, why = found
        redo = [stage] + dependents(stages, stage)
        bad.append(key)
        st.reset(key)
        for spec in stages:
            if spec.name in redo:
                remove_path(spec.dir_in(run_dir / cdir))
        log.warning("%s: %s; rerunning its %s stage%s", key, why, ", ".join(redo),
                    "s" if len(redo) > 1 else "")
    return bad


def missing_files(run_dir: Path, row: dict[str, Any], recorded: Recorded) -> bool:
    """Is a file a done cell's row names absent (presence only: for ``status``)?"""
    return bool(which_missing(run_dir, row, recorded))


def which_missing(run_dir: Path, row: dict[str, Any], recorded: Recorded) -> list[str]:
    """The recorded files of a done cell that are absent, relative to the run directory (a
    directory, such as a checkpoint, with a trailing ``/``; the cell's directory alone when
    all of it is gone); presence only, for ``status``."""
    cdir = run_dir / (row.get("cell_dir") or "-")
    if not cdir.is_dir():
        return [f"{row.get('cell_dir') or 'the cell directory'}/"]
    gone = []
    for files in recorded.values():
        for p in files:
            if not (run_dir / p).exists():
                gone.append(p if Path(p).suffix else f"{p}/")  # no suffix: a directory (ckpt)
    return gone


__all__ = ["check_done", "checkpoint_dir", "missing_files", "train_files", "verify_done",
           "which_missing"]
