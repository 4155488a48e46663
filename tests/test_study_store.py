"""Store, resume, failure and export logic of the study runner, with cheap file-writing stages.

The stages here write the same files as train_cell/evaluate (train_meta.json, results_*.json,
samples_*.jsonl) in a few milliseconds; tests/test_study_run.py runs the real ones.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sftscale.config import parse_study
from sftscale.io import InputError, atomic_write_json, atomic_write_jsonl
from sftscale.study.export import export, load_tables
from sftscale.study.runner import CellRunner, run_study
from sftscale.study.status import status_rows
from sftscale.study.store import Store

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
N_CELLS = 2 * (1 + 2 * 2)


def cheap_train(cell, out: Path, progress=None) -> None:
    (out / "ckpt").mkdir()
    (out / "ckpt" / "w.bin").write_bytes(hashlib.sha256(cell.key.encode()).digest())
    atomic_write_json(out / "train_meta.json", {"n": cell.n, "seed": cell.seed, "complete": True})


def cheap_eval(cell, train_dir: Path, out: Path) -> None:
    flag = Path(train_dir).parents[2] / "FAIL"
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


def _run(tmp_path: Path, text: str = STUDY, **kw):
    cfg = parse_study(text, "cheap.yaml")
    return run_study(cfg, out=tmp_path / "run", runner=RUNNER, progress=False, check=False, **kw)


def _table(run_dir: Path):
    m, i = load_tables(run_dir)
    return m.to_dict(orient="records"), i.to_dict(orient="records")


def test_run_then_resume_recomputes_nothing(tmp_path):
    r = _run(tmp_path)
    assert r.counts["done"] == N_CELLS and r.ran == N_CELLS and not r.failed
    before = _table(r.run_dir)
    stamps = {p: p.stat().st_mtime_ns for p in (r.run_dir / "cells").rglob("*") if p.is_file()}
    r2 = _run(tmp_path)
    assert r2.ran == 0 and r2.counts["done"] == N_CELLS
    assert _table(r2.run_dir) == before
    after = {p: p.stat().st_mtime_ns for p in (r.run_dir / "cells").rglob("*") if p.is_file()
             if p.name != "cell.json"}
    assert all(stamps[p] == t for p, t in after.items())  # no stage output rewritten
    # one row per cell; metrics and items not duplicated
    db = sqlite3.connect(r.run_dir / "study.sqlite")
    assert db.execute("SELECT COUNT(*) FROM cells").fetchone()[0] == N_CELLS
    assert db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == N_CELLS * 6
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_failed_cell_is_recorded_and_retried(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "FAIL").write_text("m2__toy-math__n8__s4")
    r = _run(tmp_path)
    assert r.failed == ["m2__toy-math__n8__s4"]
    assert r.counts == {"pending": 0, "running": 0, "done": N_CELLS - 1, "failed": 1}
    rows, counts = status_rows(r.run_dir)
    bad = [x for x in rows if x["state"] == "failed"][0]
    assert "deliberate failure" in bad["error"]
    tb = (r.run_dir / bad["traceback"]).read_text()
    assert "Traceback" in tb and "cheap_eval" in tb
    # without --retry-failed the failed cell stays failed
    assert _run(tmp_path).ran == 0
    (tmp_path / "run" / "FAIL").unlink()
    r3 = _run(tmp_path, retry_failed=True)
    assert r3.ran == 1 and r3.counts["done"] == N_CELLS
    rows, _ = status_rows(r.run_dir)
    fixed = [x for x in rows if x["key"] == "m2__toy-math__n8__s4"][0]
    assert fixed["error"] is None and fixed["attempts"] == 2


def test_changed_outputs_fail_verification_and_are_recomputed(tmp_path):
    r = _run(tmp_path)
    before = _table(r.run_dir)
    samples = next((r.run_dir / "cells" / "m1__toy-math__n32__s3" / "eval").glob("samples_*"))
    samples.write_text(samples.read_text().replace('"x"', '"y"'))
    r2 = _run(tmp_path)
    assert r2.ran == 1
    assert _table(r2.run_dir) == before


def test_interrupted_cell_restarts_from_clean_stage_dirs(tmp_path):
    r = _run(tmp_path)
    before = _table(r.run_dir)
    key = "m2__toy-math__n32__s4"
    cdir = r.run_dir / "cells" / key
    # what a kill in the middle of this cell leaves: a 'running' row, no eval/, a partial eval.tmp/
    import shutil
    shutil.rmtree(cdir / "eval")
    (cdir / "eval.tmp").mkdir()
    (cdir / "eval.tmp" / "samples_toy-math_t.jsonl").write_text('{"id": "partial"')
    with Store(r.run_dir / "study.sqlite") as st:
        st.reset(key)
        st.mark_running(key)
    r2 = _run(tmp_path)
    assert r2.ran == 1 and r2.counts["done"] == N_CELLS
    assert not (cdir / "eval.tmp").exists()
    assert _table(r2.run_dir) == before


def test_changed_spec_is_refused_unless_rerun_changed(tmp_path):
    _run(tmp_path)
    changed = STUDY.replace("limit: 6", "limit: 4")
    with pytest.raises(InputError, match="different spec"):
        _run(tmp_path, changed)
    r = _run(tmp_path, changed, rerun_changed=True)
    assert r.ran == N_CELLS
    m, items = load_tables(r.run_dir)
    assert (m["n_items"] == 4).all() and len(items) == N_CELLS * 4


def test_grid_extension_runs_only_new_cells(tmp_path):
    _run(tmp_path)
    r = _run(tmp_path, STUDY.replace("n: [0, 8, 32]", "n: [0, 8, 32, 64]"))
    assert r.ran == 2 * 2 and r.counts["done"] == N_CELLS + 4


def test_load_tables_and_export_formats(tmp_path):
    r = _run(tmp_path)
    m, items = load_tables(r.run_dir)
    assert list(m.columns) == ["model", "task", "metric", "n", "value", "seed", "n_items"]
    assert set(m["metric"]) == {"accuracy", "format_rate"}
    assert len(m) == N_CELLS * 2
    assert set(m.loc[m["n"] == 0, "seed"]) == {3}  # N=0 carries the first seed
    assert list(items.columns[:7]) == ["model", "task", "n", "seed", "item_id", "correct", "format_ok"]
    assert "score" in items.columns and str(items["correct"].dtype) == "boolean"
    # accuracy in the metrics table is the mean of the items' correct
    sub = items[(items.model == "m1") & (items.n == 8) & (items.seed == 4)]
    acc = m[(m.model == "m1") & (m.n == 8) & (m.seed == 4) & (m.metric == "accuracy")]["value"].item()
    assert acc == pytest.approx(sub["correct"].mean())
    # the run wrote the default exports
    assert (r.run_dir / "export.csv").exists() and (r.run_dir / "items.jsonl").exists()
    import pandas as pd
    for fmt in ("csv", "parquet", "jsonl"):
        mp, ip = export(r.run_dir, fmt)
        back = {"csv": pd.read_csv, "parquet": pd.read_parquet,
                "jsonl": lambda p: pd.read_json(p, lines=True)}[fmt](mp)
        assert len(back) == len(m) and list(back.columns) == list(m.columns)
        assert sorted(back["value"].round(9)) == sorted(m["value"].round(9))
        first = json.loads(ip.read_text().splitlines()[0]) if fmt == "jsonl" else None
        assert first is None or set(first) >= {"item_id", "correct", "format_ok"}


def test_cli_status_and_export(tmp_path):
    from sftscale.cli import app

    r = _run(tmp_path)
    res = CliRunner().invoke(app, ["status", str(r.run_dir), "--json"])
    assert res.exit_code == 0
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(rows) == N_CELLS and all(x["state"] == "done" for x in rows)
    res = CliRunner().invoke(app, ["export", str(r.run_dir), "--format", "jsonl"])
    assert res.exit_code == 0 and (r.run_dir / "export.jsonl").exists()
    res = CliRunner().invoke(app, ["status", str(tmp_path / "nothing")])
    assert res.exit_code == 2
