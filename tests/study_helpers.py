"""Helpers of the study tests (a helper module, not a test file): the cheap study and its
stages (tests/cheap_stages.py, re-exported here) as a ``CellRunner``, tables for equality
checks, store states, a Ray run, reaping subprocesses.

The cheap stages write the same files as train_cell/evaluate (train_meta.json,
results_*.json, samples_*.jsonl) in a few milliseconds; tests/test_study_run.py runs the real
ones.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from cheap_stages import STUDY, cheap_eval, cheap_train

from sftscale.rundir.export import load_tables
from sftscale.study.runner import CellRunner
from sftscale.study.stages import with_runs

__all__ = ["RUNNER", "STUDY", "cell_states", "cheap_eval", "cheap_train", "reap", "run_on_ray",
           "tables"]

RUNNER = CellRunner(stages=with_runs(train=cheap_train, eval=cheap_eval))


def tables(run_dir: Path):
    """(metrics records, items records) of a run directory, for equality checks."""
    m, i = load_tables(run_dir)
    return m.to_dict(orient="records"), i.to_dict(orient="records")


def cell_states(run_dir: Path) -> dict[str, str]:
    """cell key -> state, read straight from the store."""
    db = sqlite3.connect(Path(run_dir) / "study.sqlite")
    try:
        return dict(db.execute("SELECT key, state FROM cells"))
    finally:
        db.close()


def run_on_ray(study_path: Path, out: Path, monkeypatch: Any) -> Any:
    """``run_study`` of a study file through a local Ray instance, always shut down after."""
    import ray

    from sftscale.config import load_study
    from sftscale.study.runner import run_study

    # a loaded machine can take more than Ray's default 60 s to register the local node
    monkeypatch.setenv("RAY_raylet_start_wait_time_s", "300")
    try:
        return run_study(load_study(study_path), out=out, executor="ray", progress=False)
    finally:
        if ray.is_initialized():
            ray.shutdown()


def reap(proc: Any) -> None:
    """Kill ``proc`` if it still runs, wait for it, and close its pipes."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for f in (proc.stdout, proc.stderr):
        if f is not None:
            f.close()
