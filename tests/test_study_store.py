"""Store, resume, failure and export logic of the study runner, with cheap file-writing stages.

The stages (``tests/study_helpers.py``) write the same files as train_cell/evaluate
(train_meta.json, results_*.json, samples_*.jsonl) in a few milliseconds;
tests/test_study_run.py runs the real ones.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from cli import run
from study_helpers import RUNNER, STUDY, tables

from sftscale.config import parse_study
from sftscale.io import InputError
from sftscale.rundir.export import export, load_tables
from sftscale.rundir.store import Store
from sftscale.study.runner import run_study
from sftscale.study.status import status_rows

N_CELLS = 2 * (1 + 2 * 2)


def _run(tmp_path: Path, text: str = STUDY, **kw):
    cfg = parse_study(text, "cheap.yaml")
    return run_study(cfg, out=tmp_path / "run", runner=RUNNER, progress=False, check=False, **kw)


def test_run_then_resume_recomputes_nothing(tmp_path):
    r = _run(tmp_path)
    assert r.counts["done"] == N_CELLS and r.ran == N_CELLS and not r.failed
    before = tables(r.run_dir)
    stamps = {p: p.stat().st_mtime_ns for p in (r.run_dir / "cells").rglob("*") if p.is_file()}
    r2 = _run(tmp_path)
    assert r2.ran == 0 and r2.counts["done"] == N_CELLS
    assert tables(r2.run_dir) == before
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
    before = tables(r.run_dir)
    samples = next((r.run_dir / "cells" / "m1__toy-math__n32__s3" / "eval").glob("samples_*"))
    samples.write_text(samples.read_text().replace('"x"', '"y"'))
    r2 = _run(tmp_path)
    assert r2.ran == 1
    assert tables(r2.run_dir) == before


def test_interrupted_cell_restarts_from_clean_stage_dirs(tmp_path):
    r = _run(tmp_path)
    before = tables(r.run_dir)
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
    assert tables(r2.run_dir) == before


def test_changed_spec_is_refused_unless_rerun_changed(tmp_path, caplog):
    _run(tmp_path)
    changed = STUDY.replace("limit: 6", "limit: 4")
    with pytest.raises(InputError, match="different spec"):
        _run(tmp_path, changed)
    r = _run(tmp_path, changed, rerun_changed=True)
    assert f"{N_CELLS} cell(s) were run here with a different spec" in caplog.text  # said, not silent
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
    r = _run(tmp_path)
    res = run("status", str(r.run_dir), "--json")
    assert res.exit_code == 0
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(rows) == N_CELLS and all(x["state"] == "done" for x in rows)
    res = run("export", str(r.run_dir), "--format", "jsonl")
    assert res.exit_code == 0 and (r.run_dir / "export.jsonl").exists()
    res = run("status", str(tmp_path / "nothing"))
    assert res.exit_code == 2


def test_failed_export_logs_a_warning_naming_the_file(tmp_path, monkeypatch, caplog):
    import sftscale.rundir.export as export_mod

    def broken(run_dir):
        raise OSError("disk full")

    monkeypatch.setattr(export_mod, "write_default_exports", broken)
    with caplog.at_level("WARNING", logger="sftscale.study.runner"):
        r = _run(tmp_path)
    assert r.counts["done"] == N_CELLS  # the run itself succeeded; the store has the results
    assert not (r.run_dir / "export.csv").exists()
    msgs = [rec.getMessage() for rec in caplog.records if rec.levelname == "WARNING"]
    assert len(msgs) == 1
    assert str(r.run_dir / "export.csv") in msgs[0] and "OSError: disk full" in msgs[0]


def test_stages_and_the_reporter_share_one_progress_event(tmp_path):
    from study_helpers import cheap_eval, cheap_train

    from sftscale.events import ProgressEvent
    from sftscale.study.runner import CellRunner
    from sftscale.study.stages import with_runs

    seen: list[ProgressEvent] = []

    class Recorder:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def start(self, cell):
            pass

        def event(self, ev):
            seen.append(ev)

        def done(self, cell, outcome):
            pass

    def train_reporting(cell, ctx):
        for step in (1, 2) if cell.n else ():  # N = 0: no optimizer step, no event
            ctx.progress(ProgressEvent("train", step, 2))
        cheap_train(cell, ctx)

    hooked: list[tuple[str, str]] = []
    runner = CellRunner(stages=with_runs(train=train_reporting, eval=cheap_eval),
                        hooks=lambda point, run_dir, key: hooked.append((point, key)))
    cfg = parse_study(STUDY, "cheap.yaml")
    run_study(cfg, out=tmp_path / "run", runner=runner, progress=Recorder(), check=False)
    key = "m1__toy-math__n8__s3"
    mine = [ev.describe() for ev in seen if ev.cell == key]
    assert mine[0] == "train" and "train step 2/2" in mine and mine[-2:] == ["eval", "score"]
    assert [p for p, k in hooked if k == key] == ["train", "train.written", "eval.written",
                                                  "commit"]
    assert [p for p, k in hooked if k == "m1__toy-math__n0"] == ["train.written", "eval.written",
                                                                 "commit"]
