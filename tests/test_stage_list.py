"""The stage list: a registered per-cell stage runs, is reused, is checked and shows in status;
run directories written before the list (schema-1 stores) are migrated and reused.

The new stage is one module's worth of code (``count_words``, ``counts_metrics`` and the
``StageSpec``) plus one registration (``register_stage``), with the cheap train and eval
stages of tests/cheap_stages.py.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cli import run
from study_helpers import RUNNER, STUDY, cheap_eval, cheap_train, tables

from sftscale.config import parse_study
from sftscale.io import atomic_write_json, read_jsonl
from sftscale.rundir import layout
from sftscale.rundir.stagespec import StageContext, StageSpec
from sftscale.rundir.store import SCHEMA_VERSION, Store
from sftscale.study import stages
from sftscale.study.runner import CellRunner, run_study
from sftscale.study.stages import register_stage, with_runs
from sftscale.study.status import status_rows

N_CELLS = 10
KEY = "m1__toy-math__n8__s3"
ROOT = Path(__file__).resolve().parents[1]
BEFORE = "477976d"  # the last commit with one store column per file (schema 1)


# --- the new stage: one module's worth ------------------------------------------------------

def count_words(cell, ctx: StageContext) -> None:
    """Words in the cell's responses (reads the eval stage's samples)."""
    samples = next(ctx.dir_of("eval").glob(layout.SAMPLES_GLOB))
    words = sum(len(str(r.get("response", "")).split()) for r in read_jsonl(samples))
    atomic_write_json(ctx.out / "counts.json", {"words": words, "cell": cell.key})


def counts_metrics(cell, stage_dir: Path) -> dict:
    return {"metrics": {"response_words": json.loads((stage_dir / "counts.json").read_text())["words"]}}


WORDCOUNT = StageSpec(name="wordcount", run=count_words, done=("counts.json",),
                      hashed=("counts.json",), needs=("eval",), collect=counts_metrics)


@pytest.fixture
def registered(monkeypatch):
    """``WORDCOUNT`` registered for this test only; the runner with the cheap train/eval."""
    monkeypatch.setattr(stages, "STAGES", list(stages.STAGES))
    register_stage(WORDCOUNT)
    return CellRunner(stages=with_runs(train=cheap_train, eval=cheap_eval))


def _run(out: Path, runner: CellRunner, **kw):
    return run_study(parse_study(STUDY, "cheap.yaml"), out=out, runner=runner, progress=False,
                     check=False, **kw)


def _files(out: Path) -> dict:
    with Store(layout.store_path(out), readonly=True) as st:
        return st.files()


def _mtime(p: Path) -> int:
    return p.stat().st_mtime_ns


def test_registration_refuses_what_cannot_run(monkeypatch):
    monkeypatch.setattr(stages, "STAGES", list(stages.STAGES))
    with pytest.raises(ValueError, match="taken"):
        register_stage(StageSpec(name="eval", run=count_words, done=("x",), hashed=("x",)))
    with pytest.raises(ValueError, match="needs"):
        register_stage(StageSpec(name="late", run=count_words, done=("x",), hashed=("x",),
                                 needs=("judge",)))
    assert [s.name for s in stages.STAGES] == ["train", "eval"]


def test_a_registered_stage_runs_is_recorded_exported_and_shown(tmp_path, registered):
    out = tmp_path / "run"
    r = _run(out, registered)
    assert r.counts["done"] == N_CELLS and not r.failed
    cdir = layout.cell_dir(out, KEY)
    doc = json.loads((cdir / "wordcount" / "counts.json").read_text())
    assert doc["cell"] == KEY and doc["words"] == 6  # six one-word responses
    assert not list(out.glob("cells/*/*.tmp"))
    files = _files(out)[KEY]
    assert list(files) == ["train", "eval", "wordcount"]
    assert list(files["wordcount"]) == [f"cells/{KEY}/wordcount/counts.json"]
    metrics, _ = tables(out)
    assert {m["value"] for m in metrics if m["metric"] == "response_words"} == {6.0}
    assert "response_words" in (out / "export.csv").read_text()
    rows, counts = status_rows(out)
    assert counts["done"] == N_CELLS
    assert all(list(row["stages"]) == ["train", "eval", "wordcount"] for row in rows)
    res = run("status", str(out))
    assert res.exit_code == 0 and "wordcount s" in res.output


def test_a_registered_stage_is_reused_and_checked(tmp_path, registered, caplog):
    out = tmp_path / "run"
    _run(out, registered)
    cdir = layout.cell_dir(out, KEY)
    ckpt, results = cdir / "train" / "ckpt" / "w.bin", next((cdir / "eval").glob("results_*"))
    stamps = _mtime(ckpt), _mtime(results)
    assert _run(out, registered).ran == 0  # reused

    (cdir / "wordcount" / "counts.json").write_text('{"words": 1000}')
    with caplog.at_level("WARNING", logger="sftscale.study"):
        r = _run(out, registered)
    assert r.ran == 1
    msgs = [m for m in caplog.messages if KEY in m]
    assert len(msgs) == 1 and "wordcount/counts.json changed" in msgs[0]
    assert "rerunning its wordcount stage" in msgs[0]
    assert (_mtime(ckpt), _mtime(results)) == stamps  # train and eval kept
    assert json.loads((cdir / "wordcount" / "counts.json").read_text())["words"] == 6

    caplog.clear()
    results.unlink()  # the stage it needs: both rerun, training is kept
    with caplog.at_level("WARNING", logger="sftscale.study"):
        assert _run(out, registered).ran == 1
    msgs = [m for m in caplog.messages if KEY in m]
    assert len(msgs) == 1 and "rerunning its eval, wordcount stages" in msgs[0]
    assert _mtime(ckpt) == stamps[0]
    assert _mtime(cdir / "wordcount" / "counts.json") > stamps[1]


def test_a_stage_registered_later_runs_on_done_cells_without_retraining(tmp_path, registered,
                                                                        caplog):
    out = tmp_path / "run"
    assert _run(out, RUNNER).counts["done"] == N_CELLS  # train and eval only
    ckpt = layout.cell_dir(out, KEY) / "train" / "ckpt" / "w.bin"
    results = next((layout.cell_dir(out, KEY) / "eval").glob("results_*"))
    stamps = _mtime(ckpt), _mtime(results)
    with caplog.at_level("WARNING", logger="sftscale.study"):
        r = _run(out, registered)
    assert r.ran == N_CELLS and r.counts["done"] == N_CELLS
    assert any("its wordcount stage has not run" in m for m in caplog.messages)
    assert (_mtime(ckpt), _mtime(results)) == stamps
    assert all("wordcount" in f for f in _files(out).values())


def test_a_store_rebuilt_from_cell_directories_has_every_stage(tmp_path, registered):
    out = tmp_path / "run"
    _run(out, registered)
    before = tables(out)
    for p in out.glob("study.sqlite*"):
        p.unlink()
    assert _run(out, registered).ran == 0
    assert tables(out) == before and "wordcount" in _files(out)[KEY]


def test_a_failed_stage_keeps_the_stages_before_it(tmp_path, monkeypatch):
    def broken(cell, ctx):
        raise RuntimeError("no words today")

    monkeypatch.setattr(stages, "STAGES", list(stages.STAGES))
    register_stage(StageSpec(name="wordcount", run=broken, done=("counts.json",),
                             hashed=("counts.json",), needs=("eval",)))
    out = tmp_path / "run"
    r = _run(out, CellRunner(stages=with_runs(train=cheap_train, eval=cheap_eval)))
    assert r.counts["failed"] == N_CELLS
    assert "no words today" in (layout.cell_dir(out, KEY) / "error.txt").read_text()
    assert (layout.cell_dir(out, KEY) / "eval").is_dir()
    stamp = _mtime(layout.cell_dir(out, KEY) / "train" / "ckpt" / "w.bin")
    r = _run(out, CellRunner(stages=with_runs(stages.STAGES[:2], train=cheap_train,
                                              eval=cheap_eval)), retry_failed=True)
    assert r.counts["done"] == N_CELLS
    assert _mtime(layout.cell_dir(out, KEY) / "train" / "ckpt" / "w.bin") == stamp


def test_a_stage_that_leaves_out_a_hashed_file_fails_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(stages, "STAGES", list(stages.STAGES))
    register_stage(StageSpec(name="wordcount", run=count_words, done=("counts.json",),
                             hashed=("counts.json", "extra.json"), needs=("eval",)))
    out = tmp_path / "run"
    r = _run(out, CellRunner(stages=with_runs(train=cheap_train, eval=cheap_eval)))
    assert r.counts["failed"] == N_CELLS
    with Store(layout.store_path(out), readonly=True) as st:
        err = st.cell(KEY)["error"]
    assert err == "RuntimeError: the wordcount stage finished without extra.json"
    assert not (layout.cell_dir(out, KEY) / "wordcount").exists()


# --- run directories written before the stage list --------------------------------------

OLD_RUN = """
import sys
sys.path.insert(0, sys.argv[2])
from cheap_stages import STUDY, cheap_eval, cheap_train
from sftscale.config import parse_study
from sftscale.study.runner import CellRunner, run_study

res = run_study(parse_study(STUDY, "cheap.yaml"), out=sys.argv[1], progress=False, check=False,
                runner=CellRunner(train=cheap_train, evaluate=cheap_eval))
assert res.counts["done"] == 10, res
"""


@pytest.fixture(scope="module")
def old_run(tmp_path_factory) -> Path:
    """A finished run directory written by sftscale at commit ``BEFORE`` (its store has one
    column per file), with the cheap stages."""
    return _run_at(BEFORE, tmp_path_factory)


def _run_at(commit: str, tmp_path_factory) -> Path:
    if shutil.which("git") is None or subprocess.run(
            ["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
            capture_output=True).returncode != 0:
        pytest.skip(f"needs the git history (commit {commit})")
    base = tmp_path_factory.mktemp("old")
    arch = base / "src.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(arch), commit, "src/sftscale"],
                   check=True)
    with tarfile.open(arch) as tf:
        tf.extractall(base, filter="data")
    out = base / "run"
    env = {**os.environ, "PYTHONPATH": str(base / "src"), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", OLD_RUN, str(out), str(Path(__file__).parent)],
                       env=env, capture_output=True, text=True, cwd=base)
    assert p.returncode == 0, p.stderr[-3000:]
    db = sqlite3.connect(out / "study.sqlite")
    cols = {r[1] for r in db.execute("PRAGMA table_info(cells)")}
    db.close()
    assert {"train_meta_sha", "results_sha", "samples_sha", "ckpt_sha"} <= cols  # schema 1
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    assert _run(out, RUNNER).counts["done"] == N_CELLS
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def test_an_old_run_directory_reads_as_it_is(tmp_path, old_run, reference):
    out = _copy(old_run, tmp_path / "run")
    rows, counts = status_rows(out)  # read-only: not migrated
    assert counts["done"] == N_CELLS and "files missing" not in counts
    assert all(list(r["stages"])[:2] == ["train", "eval"] for r in rows)
    assert tables(out) == tables(reference)
    db = sqlite3.connect(out / "study.sqlite")
    assert "ckpt_sha" in {r[1] for r in db.execute("PRAGMA table_info(cells)")}
    db.close()


def test_an_old_run_directory_is_migrated_and_reused_without_retraining(tmp_path, old_run,
                                                                         reference):
    out = _copy(old_run, tmp_path / "run")
    ckpt = layout.cell_dir(out, KEY) / "train" / "ckpt" / "w.bin"
    stamp = _mtime(ckpt)
    r = _run(out, RUNNER)
    assert r.ran == 0 and r.counts["done"] == N_CELLS
    assert _mtime(ckpt) == stamp and tables(out) == tables(reference)
    db = sqlite3.connect(out / "study.sqlite")
    cols = {r[1] for r in db.execute("PRAGMA table_info(cells)")}
    version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    attempts = {a for (a,) in db.execute("SELECT attempts FROM cells")}
    db.close()
    assert not cols & {"train_meta", "results", "samples", "ckpt_sha", "samples_sha"}
    assert int(version) == SCHEMA_VERSION and attempts == {1}
    files = _files(out)[KEY]
    assert set(files["train"]) == {f"cells/{KEY}/train/train_meta.json", f"cells/{KEY}/train/ckpt"}
    assert all(len(sha) == 64 for f in files.values() for sha in f.values())
    ckpt.write_bytes(b"changed")  # and the migrated hashes are checked
    assert _run(out, RUNNER).ran == 1


def test_an_old_store_without_checkpoint_hashes_records_them(tmp_path, old_run, reference):
    out = _copy(old_run, tmp_path / "run")
    db = sqlite3.connect(out / "study.sqlite")
    db.execute("ALTER TABLE cells DROP COLUMN ckpt_sha")  # as stores older still were written
    db.commit()
    db.close()
    assert status_rows(out)[1]["done"] == N_CELLS  # readable as it is
    assert _run(out, RUNNER).ran == 0 and tables(out) == tables(reference)
    trained = {k: f for k, f in _files(out).items() if "__n0" not in k}
    assert all(len(f["train"][f"cells/{k}/train/ckpt"]) == 64 for k, f in trained.items())
    (layout.cell_dir(out, KEY) / "train" / "ckpt" / "w.bin").write_bytes(b"changed")
    assert _run(out, RUNNER).ran == 1  # and now checked


def test_an_old_train_directory_is_checked_against_its_checkpoint_seal(tmp_path, old_run):
    """A train/ the store never recorded (a crash before the commit), written before seals
    named every file: its checkpoint.sha256 still guards the checkpoint."""
    out = _copy(old_run, tmp_path / "run")
    (out / "study.sqlite").unlink()
    for suffix in ("-wal", "-shm"):
        (out / f"study.sqlite{suffix}").unlink(missing_ok=True)
    shutil.rmtree(layout.cell_dir(out, KEY) / "eval")
    tdir = layout.cell_dir(out, KEY) / "train"
    assert (tdir / layout.CKPT_SHA).is_file() and not (tdir / layout.SEAL).exists()
    (tdir / "ckpt" / "w.bin").write_bytes(b"changed")
    r = _run(out, RUNNER)
    assert r.ran == 1 and r.counts["done"] == N_CELLS
    assert (tdir / "ckpt" / "w.bin").read_bytes() != b"changed"  # retrained


def test_layout_names_the_files_the_stages_write():
    from sftscale.train.cell import META

    assert layout.TRAIN_META == META
    assert [(s.name, s.directory) for s in stages.STAGES[:2]] == [(layout.TRAIN, layout.TRAIN),
                                                                 (layout.EVAL, layout.EVAL)]


# --- the store's value checksum (rows_sha) across store versions ----------------------------

RELIABILITY = "6c8566b"  # the reliability branch before main's merge: schema 1 with rows_sha


def _rows_sha(out: Path) -> dict:
    db = sqlite3.connect(out / "study.sqlite")
    try:
        return dict(db.execute("SELECT key, rows_sha FROM cells WHERE state='done'"))
    finally:
        db.close()


def _set(out: Path, sql: str) -> None:
    db = sqlite3.connect(out / "study.sqlite")
    db.execute(sql)
    db.commit()
    db.close()


def _changed_value_is_found_and_restored(out: Path, caplog) -> None:
    (want,) = sqlite3.connect(out / "study.sqlite").execute(
        f"SELECT value FROM metrics WHERE cell='{KEY}' AND metric='accuracy'").fetchone()
    _set(out, f"UPDATE metrics SET value=0.99 WHERE cell='{KEY}' AND metric='accuracy'")
    rows, counts = status_rows(out)
    assert counts["store changed"] == 1 and {r["key"]: r["state"] for r in rows}[KEY] == \
        "done (store changed)"
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert _run(out, RUNNER).ran == 0
    assert "accuracy: 0.99 in the store" in caplog.text
    (got,) = sqlite3.connect(out / "study.sqlite").execute(
        f"SELECT value FROM metrics WHERE cell='{KEY}' AND metric='accuracy'").fetchone()
    assert got == want and "store changed" not in status_rows(out)[1]


def test_a_schema_1_store_gets_its_checksums_when_migrated(tmp_path, old_run, reference, caplog):
    out = _copy(old_run, tmp_path / "run")
    with caplog.at_level("WARNING"):
        assert _run(out, RUNNER).ran == 0
    assert "differ from the cell's files" not in caplog.text  # values equal: checksum taken
    shas = _rows_sha(out)
    assert len(shas) == N_CELLS and all(len(v or "") == 64 for v in shas.values())
    assert shas == _rows_sha(reference) and tables(out) == tables(reference)
    _changed_value_is_found_and_restored(out, caplog)


def test_a_schema_2_store_without_rows_sha_opens_and_gets_it(tmp_path, reference, caplog):
    """A store of main before the merge: schema 2 (files table), no rows_sha column."""
    out = _copy(reference, tmp_path / "run")
    _set(out, "ALTER TABLE cells DROP COLUMN rows_sha")
    _, counts = status_rows(out)  # read-only: readable as it is, nothing to compare
    assert counts["done"] == N_CELLS and "store changed" not in counts
    with caplog.at_level("WARNING"):
        assert _run(out, RUNNER).ran == 0
    assert "differ from the cell's files" not in caplog.text
    assert _rows_sha(out) == _rows_sha(reference)
    _changed_value_is_found_and_restored(out, caplog)


def test_a_reliability_branch_store_keeps_its_checksums(tmp_path_factory, reference, caplog):
    """Schema 1 with rows_sha (the reliability branch before the merge): migrated, its
    checksums still match what it holds."""
    out = _run_at(RELIABILITY, tmp_path_factory)
    before = _rows_sha(out)
    assert len(before) == N_CELLS and all(before.values())
    with caplog.at_level("WARNING"):
        assert _run(out, RUNNER).ran == 0
    assert "differ from the cell's files" not in caplog.text
    assert _rows_sha(out) == before == _rows_sha(reference)
    _changed_value_is_found_and_restored(out, caplog)
