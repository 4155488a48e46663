"""Cheap file-writing study stages shared by tests/test_study_store.py and
tests/test_study_workers.py (a helper module, not a test file).

The stages write the same files as train_cell/evaluate (train_meta.json, results_*.json,
samples_*.jsonl) in a few milliseconds; tests/test_study_run.py runs the real ones.
A file ``FAIL`` in the run directory makes ``cheap_eval`` fail for the cells whose key
contains its text.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

from sftscale.io import atomic_write_json, atomic_write_jsonl
from sftscale.rundir.export import load_tables
from sftscale.study.runner import CellRunner, StageContext

STUDY = """\
name: cheap
models:
  - {name: m1, ref: toy-S}
  - {name: m2, ref: toy-M}
tasks:
  - {name: toy-math, limit: 6}
n: [0, 8, 32]
seeds: [3, 4]
"""


def cheap_train(cell, ctx: StageContext) -> None:
    out = ctx.out
    (out / "ckpt").mkdir()
    (out / "ckpt" / "w.bin").write_bytes(hashlib.sha256(cell.key.encode()).digest())
    atomic_write_json(out / "train_meta.json", {"n": cell.n, "seed": cell.seed, "complete": True})


def cheap_eval(cell, ctx: StageContext) -> None:
    out = ctx.out
    flag = ctx.run_dir / "FAIL"
    if flag.exists() and flag.read_text() in cell.key:
        raise RuntimeError(f"deliberate failure of {cell.key}")
    rows = []
    for i in range(cell.limit):
        h = hashlib.sha256(f"{cell.key}/{i}".encode()).digest()
        rows.append({"id": f"toy/{i}", "response": "x", "correct": h[0] < 100 + cell.n,
                     "format_ok": h[1] < 200, "score": h[2] / 255})
    acc = sum(r["correct"] for r in rows) / len(rows)
    atomic_write_jsonl(out / "samples_toy-math_t.jsonl", rows)
    atomic_write_json(out / "results_t.json", {"results": {"toy-math": {
        "alias": "toy-math", "accuracy,none": acc, "format_rate,none":
        sum(r["format_ok"] for r in rows) / len(rows)}}})


RUNNER = CellRunner(train=cheap_train, evaluate=cheap_eval)


def table(run_dir: Path):
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
