"""Content checks of a cell's stage outputs before they are reused.

What is checked, and where it sends the cell (the cell's row goes back to ``pending`` and
the stage directories that can no longer be trusted are deleted, with one warning line on
logger ``sftscale.study``; a cell never ends up ``failed`` because of files it could redo):

- A ``done`` cell (``verify_done``, at the start of every ``run``): ``train_meta.json`` and
  the checkpoint directory against ``train_meta_sha`` / ``ckpt_sha`` in the store; a missing
  or changed one sends the cell back to training (``train/`` and ``eval/`` deleted). The
  results and samples files against ``results_sha`` / ``samples_sha``; a missing or changed
  one sends it back to evaluation only (``eval/`` deleted, the checkpoint kept).
- A ``done`` cell whose files pass: the store's own values (metric and item rows, n_items)
  against ``rows_sha``, the checksum taken when they were recorded (``outputs.check_values``,
  called by the runner after ``verify_done``); a value changed in the store is re-recorded
  from the files (no stage reruns), with one warning.
- A ``train/`` reused by a cell that is not done (a crash between training and the store's
  commit, or a ``--retry-failed`` cell): ``train_complete`` recomputes the checkpoint hash and
  compares it with ``train/checkpoint.sha256``, written when the stage finished; a
  mismatch, or a trained cell whose checkpoint directory is gone, retrains.

The checkpoint hash (``checkpoint_sha``) covers every file under the checkpoint directory
named by ``train_meta.json`` (``checkpoint``, default ``ckpt/``): relative path, size and
sha256 of each. A cell without a checkpoint (N = 0) hashes to ``"none"``.

Cost: every check re-reads the files (a full finetune's weights included) on every ``run``.

Not handled: a done cell recorded before ``ckpt_sha`` existed is trusted once (its current
checkpoint hash is stored, not compared); a ``train/`` written before ``checkpoint.sha256``
existed is checked for its checkpoint's presence only; ``status`` checks presence only
(``missing_files``), not content.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

from ..io import atomic_write_text, remove_path, sha256_file

log = logging.getLogger("sftscale.study")

CKPT_SHA_FILE = "checkpoint.sha256"
NO_CHECKPOINT = "none"


def checkpoint_dir(train_dir: Path) -> Path | None:
    """The checkpoint directory named by ``train_dir/train_meta.json`` (None: no meta or
    an untrained cell)."""
    try:
        meta = json.loads((train_dir / "train_meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("trained") is False:
        return None
    return train_dir / (meta.get("checkpoint") or "ckpt")


def checkpoint_sha(train_dir: Path) -> str:
    """Hash of every file under the cell's checkpoint directory: ``"none"`` for a cell
    without one (N = 0), ``"missing"`` for a trained cell whose directory is gone."""
    ckpt = checkpoint_dir(train_dir)
    if ckpt is None:
        return NO_CHECKPOINT
    if not ckpt.is_dir():
        return "missing"
    h = hashlib.sha256()
    for p in sorted(q for q in ckpt.rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(ckpt).as_posix()}\t{p.stat().st_size}\t{sha256_file(p)}\n"
                 .encode())
    return h.hexdigest()


def seal_train(tmp: Path) -> str:
    """Write ``checkpoint.sha256`` into a finished training directory; returns the hash."""
    sha = checkpoint_sha(tmp)
    atomic_write_text(tmp / CKPT_SHA_FILE, sha + "\n")
    return sha


def train_complete(train_dir: Path) -> tuple[str | None, str | None]:
    """(checkpoint hash, None) when ``train_dir`` can be reused; (None, why not) when it must
    be trained again; (None, None) when there is nothing (never trained)."""
    meta = train_dir / "train_meta.json"
    if not meta.is_file():
        return None, ("train_meta.json is missing" if train_dir.exists() else None)
    try:
        json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, "train_meta.json is unreadable"
    now = checkpoint_sha(train_dir)
    if now == "missing":
        return None, "its checkpoint directory is missing"
    sealed = train_dir / CKPT_SHA_FILE
    if sealed.is_file() and sealed.read_text(encoding="utf-8").strip() != now:
        return None, "its checkpoint changed since training"
    return now, None



def _changed(p: Path, sha: str | None) -> str | None:
    if not p.is_file():
        return "missing"
    if sha is not None and sha256_file(p) != sha:
        return "changed"
    return None


def check_done(run_dir: Path, row: dict[str, Any]) -> tuple[str, str] | None:
    """(stage to redo: ``train`` or ``eval``, why) for a done cell whose files fail the
    checks; None when they pass."""
    why = _changed(run_dir / row["train_meta"], row["train_meta_sha"]) if row["train_meta"] \
        else "missing"
    if why:
        return "train", f"train_meta.json {why}"
    stored = row.get("ckpt_sha")
    now = checkpoint_sha(run_dir / row["cell_dir"] / "train")
    if now == "missing" or (stored is not None and now != stored):
        return "train", "checkpoint " + ("missing" if now == "missing" else "changed")
    for col, sha_col in (("results", "results_sha"), ("samples", "samples_sha")):
        why = _changed(run_dir / (row[col] or "-"), row[sha_col]) if row[col] else "missing"
        if why:
            return "eval", f"{col} file {why}"
    return None


def verify_done(run_dir: Path, st: Any, keys: Sequence[str] | None = None) -> list[str]:
    """Done cells whose files are missing or changed go back to pending, their untrusted
    stage directories deleted (see the module docstring); returns their keys."""
    bad = []
    wanted = None if keys is None else set(keys)
    for row in st.cells("done"):
        if wanted is not None and row["key"] not in wanted:
            continue
        found = check_done(run_dir, row)
        cdir = run_dir / row["cell_dir"]
        if found is None:
            if row.get("ckpt_sha") is None:  # recorded before ckpt_sha existed: store it now
                st.set_hash(row["key"], "ckpt_sha", checkpoint_sha(cdir / "train"))
            continue
        stage, why = found
        bad.append(row["key"])
        st.reset(row["key"])
        remove_path(cdir / "eval")
        if stage == "train":
            remove_path(cdir / "train")
        log.warning("%s: %s; %s", row["key"], why,
                    "retraining and re-evaluating it" if stage == "train" else "re-evaluating it")
    return bad


def missing_files(run_dir: Path, row: dict[str, Any]) -> bool:
    """Is a file a done cell's row names absent (presence only: for ``status``)?"""
    return bool(which_missing(run_dir, row))


def which_missing(run_dir: Path, row: dict[str, Any]) -> list[str]:
    """The files a done cell's row names that are absent, relative to the run directory
    (the cell's directory alone when all of it is gone); presence only, for ``status``."""
    cdir = run_dir / (row.get("cell_dir") or "-")
    if not cdir.is_dir():
        return [f"{row.get('cell_dir') or 'the cell directory'}/"]
    gone = [row[c] for c in ("train_meta", "results", "samples")
            if row.get(c) and not (run_dir / row[c]).is_file()]
    ckpt = checkpoint_dir(cdir / "train")
    if ckpt is not None and not ckpt.is_dir():
        gone.append(f"{ckpt.relative_to(run_dir).as_posix()}/")
    return gone


__all__ = ["CKPT_SHA_FILE", "check_done", "checkpoint_dir", "checkpoint_sha",
           "missing_files", "seal_train", "train_complete", "verify_done", "which_missing"]
