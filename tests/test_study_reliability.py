"""The run directory under faults: one writer, content checks on reuse, a damaged or missing
store, a read-only run directory, SIGTERM, and random SIGKILLs of the whole process group.

Cheap file-writing stages (tests/study_helpers.py); the command line runs in-process
(``run`` of tests/cli.py) or, where a test signals or races it, in background processes
(``start_process``: tests/crash_driver.py's ``cli`` mode, the real ``sftscale`` with those
stages).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli import run, start_process
from study_helpers import RUNNER, STUDY, cell_states, cheap_eval, cheap_train, reap, tables

from sftscale.config import parse_study
from sftscale.io import atomic_write_json
from sftscale.rundir.lock import RunLock
from sftscale.study.runner import CellRunner, run_study
from sftscale.study.stages import with_runs
from sftscale.study.status import FILES_MISSING, status_rows

N_CELLS = 10
KEY = "m1__toy-math__n8__s3"


def _run(out: Path, runner: CellRunner = RUNNER, **kw):
    return run_study(parse_study(STUDY, "cheap.yaml"), out=out, runner=runner, progress=False,
                     check=False, **kw)


def _study_file(tmp_path: Path) -> Path:
    p = tmp_path / "cheap.yaml"
    p.write_text(STUDY)
    return p


def _cli(args: list[str], *opts: str, **popen: object) -> subprocess.Popen:
    """``sftscale ARGS`` in a background process, with the cheap stages."""
    return start_process(*args, driver=("--cheap", *opts), **popen)


def _wait_until(cond, what: str, proc: subprocess.Popen | None = None, limit: float = 120) -> None:
    t0 = time.monotonic()
    while not cond():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"process ended before {what}: {proc.stderr.read()[-3000:]}")
        if time.monotonic() - t0 > limit:
            pytest.fail(f"no {what} in {limit} s")
        time.sleep(0.02)


def _holds_lock(run_dir: Path, pid: int):
    return lambda: RunLock(run_dir).holder().get("pid") == pid



@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    assert _run(out).counts["done"] == N_CELLS
    return out


# --- 1. one writer --------------------------------------------------------------------------

def test_concurrent_runs_one_refused_one_waits(tmp_path, reference):
    study, out = _study_file(tmp_path), tmp_path / "run"
    args = ["run", str(study), "--out", str(out), "--no-progress"]
    first = _cli(args, "--slow", "0.4")
    try:
        _wait_until(_holds_lock(out, first.pid), "lock held by the first run", first)
        second = _cli(args)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2, err
        assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
        assert f"pid {first.pid}" in err and "--wait" in err
        third = _cli(args + ["--wait"])
        out3, err3 = third.communicate(timeout=300)
        assert first.wait(timeout=300) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert third.returncode == 0, err3
    assert f"waiting: another sftscale run writes {out} (pid {first.pid}" in err3
    summary = json.loads(out3.strip().splitlines()[-1])
    assert summary["ran"] == 0 and summary["done"] == N_CELLS
    assert tables(out) == tables(reference)
    for name in ("export.csv", "items.jsonl"):
        assert (out / name).read_text() == (reference / name).read_text()
    db = sqlite3.connect(out / "study.sqlite")
    assert {a for (a,) in db.execute("SELECT attempts FROM cells")} == {1}  # nothing ran twice
    db.close()


# --- 2. content checks on reuse -------------------------------------------------------------

def _ckpt(run_dir: Path, key: str = KEY) -> Path:
    return run_dir / "cells" / key / "train" / "ckpt" / "w.bin"


def _results(run_dir: Path, key: str = KEY) -> Path:
    return next((run_dir / "cells" / key / "eval").glob("results_*.json"))


@pytest.mark.parametrize("damage", ["truncate", "delete", "delete-dir"])
def test_changed_or_missing_weights_retrain(tmp_path, reference, caplog, damage):
    out = tmp_path / "run"
    _run(out)
    w = _ckpt(out)
    if damage == "truncate":
        w.write_bytes(w.read_bytes()[:5])
    elif damage == "delete":
        w.unlink()
    else:
        shutil.rmtree(w.parent)
    with caplog.at_level("WARNING", logger="sftscale.study"):
        r = _run(out)
    assert r.ran == 1 and r.counts["done"] == N_CELLS and not r.failed
    msgs = [m for m in caplog.messages if KEY in m]
    assert len(msgs) == 1 and "train/ckpt " in msgs[0] and "rerunning its train, eval" in msgs[0]
    assert tables(out) == tables(reference)
    assert _ckpt(out).read_bytes() == _ckpt(reference).read_bytes()


def test_missing_results_re_evaluate_only(tmp_path, reference, caplog):
    out = tmp_path / "run"
    _run(out)
    stamp = _ckpt(out).stat().st_mtime_ns
    _results(out).unlink()
    with caplog.at_level("WARNING", logger="sftscale.study"):
        r = _run(out)
    assert r.ran == 1 and r.counts["done"] == N_CELLS
    msgs = [m for m in caplog.messages if KEY in m]
    assert len(msgs) == 1 and "eval/results_t.json missing" in msgs[0]
    assert "rerunning its eval stage" in msgs[0]
    assert _ckpt(out).stat().st_mtime_ns == stamp  # not retrained
    assert tables(out) == tables(reference)


def test_weights_and_results_gone_is_not_a_permanent_failure(tmp_path, reference):
    """A cell whose weights and results are both gone is run again, not failed for good."""
    out = tmp_path / "run"
    _run(out)
    shutil.rmtree(_ckpt(out).parent)
    _results(out).unlink()
    r = _run(out)
    assert r.ran == 1 and not r.failed and tables(out) == tables(reference)


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_failed_cell_with_its_inputs_gone_is_recovered_by_retry_failed(tmp_path, reference,
                                                                        damage):
    out = tmp_path / "run"
    out.mkdir()
    (out / "FAIL").write_text(KEY)  # cheap_eval fails for this cell: train/ stays
    assert _run(out).failed == [KEY]
    (out / "FAIL").unlink()
    if damage == "delete":
        shutil.rmtree(_ckpt(out).parent)
    else:
        _ckpt(out).write_bytes(b"x")
    r = _run(out, retry_failed=True)
    assert r.ran == 1 and r.counts["done"] == N_CELLS and not r.failed
    assert tables(out) == tables(reference)
    assert not (out / "cells" / KEY / "error.txt").exists()  # the stale traceback is gone


# --- 3. damaged, missing and read-only stores ------------------------------------------------

def timed_train(cell, ctx) -> None:
    cheap_train(cell, ctx)
    meta = json.loads((ctx.out / "train_meta.json").read_text())
    atomic_write_json(ctx.out / "train_meta.json", {**meta, "wall_s": 1.5})


def timed_eval(cell, ctx) -> None:
    cheap_eval(cell, ctx)
    res = json.loads((ctx.out / "results_t.json").read_text())
    atomic_write_json(ctx.out / "results_t.json",
                      {**res, "total_evaluation_time_seconds": "2.5", "end_time": 1.7e9})


TIMED = CellRunner(stages=with_runs(train=timed_train, eval=timed_eval))


@pytest.fixture
def cheap_cli(monkeypatch):
    """The in-process command line with the timed cheap stages."""
    import functools

    import sftscale.study.runner as runner_mod

    monkeypatch.setattr(runner_mod, "run_study",
                        functools.partial(runner_mod.run_study, runner=TIMED, check=False))
    return run


def test_damaged_store_is_explained_then_repaired(tmp_path, cheap_cli, caplog):
    study, out = _study_file(tmp_path), tmp_path / "run"
    assert cheap_cli("run", study, "--out", out, "--no-progress").exit_code == 0
    before = tables(out)
    (out / "cells" / KEY / "error.txt").write_text("a stale traceback")
    (out / "study.sqlite").write_bytes(b"garbage, not a database" * 100)
    for args in (("status", out), ("export", out), ("run", study, "--out", out),
                 ("run", out)):
        res = cheap_cli(*args)
        assert res.exit_code == 2, (args, res.output)
        assert "Traceback" not in res.output and res.output.count("\n") == 1
        assert "study store is damaged" in res.output
        assert f"sftscale run {out} --repair" in res.output
    with caplog.at_level("WARNING", logger="sftscale.study"):
        res = cheap_cli("run", out, "--repair", "--no-progress")
    assert res.exit_code == 0, res.output
    msgs = [m for m in caplog.messages if "was damaged" in m]
    assert len(msgs) == 1 and "rebuilt from the cell directories" in msgs[0]
    assert json.loads(res.stdout.strip().splitlines()[-1])["ran"] == 0
    aside = [p for p in out.glob("study.sqlite.damaged-*") if not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"garbage")
    assert not list(out.glob("study.sqlite.rebuild*"))
    assert tables(out) == before
    rows, counts = status_rows(out)
    assert counts["done"] == N_CELLS
    trained = [r for r in rows if r["n"] > 0]
    assert {(r["train_s"], r["eval_s"]) for r in trained} == {(1.5, 2.5)}  # not 0.0
    assert not (out / "cells" / KEY / "error.txt").exists()
    caplog.clear()
    with caplog.at_level("WARNING", logger="sftscale.study"):
        res = cheap_cli("run", out, "--repair", "--no-progress")  # a sound store is left alone
    assert res.exit_code == 0 and any("nothing to repair" in m for m in caplog.messages)


def test_missing_store_is_rebuilt_and_says_so(tmp_path, reference, caplog):
    out = tmp_path / "run"
    _run(out, runner=TIMED)
    for p in out.glob("study.sqlite*"):
        p.unlink()
    with caplog.at_level("WARNING", logger="sftscale.study"):
        r = _run(out, runner=TIMED)
    assert r.ran == 0 and r.counts["done"] == N_CELLS
    assert any("no study.sqlite; rebuilt it" in m for m in caplog.messages)
    assert tables(out) == tables(reference)


def test_retry_failed_keeps_the_recorded_training_time(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "FAIL").write_text(KEY)
    _run(out, runner=TIMED)
    (out / "FAIL").unlink()
    _run(out, runner=TIMED, retry_failed=True)
    row = next(r for r in status_rows(out)[0] if r["key"] == KEY)
    assert row["state"] == "done" and row["train_s"] == 1.5
    assert not (out / "cells" / KEY / "error.txt").exists()


READ_ONLY_CHECK = """
import json, sys
from pathlib import Path
from sftscale.io import InputError
from sftscale.rundir.export import export, load_tables
from sftscale.study.status import status_rows
run, elsewhere = Path(sys.argv[1]), Path(sys.argv[2])
rows, counts = status_rows(run)
m, items = load_tables(run)
mp, _ = export(run, "csv", elsewhere / "export.csv")
try:
    export(run)
    refused = None
except InputError as e:
    refused = str(e)
print(json.dumps({"done": counts["done"], "metrics": len(m), "items": len(items),
                  "exported": mp.read_text().count("\\n"), "refused": refused}))
"""


def test_read_only_run_directory_can_be_read(tmp_path):
    """A real read-only filesystem (a read-only bind mount in a private mount namespace: the
    tests run as root, for whom chmod a-w changes nothing); skipped where that is refused."""
    out = tmp_path / "run"
    _run(out)
    (tmp_path / "elsewhere").mkdir()
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {out} {out} && "
                            f"mount -o remount,ro,bind {out} {out} && touch {out}/x"],
                           capture_output=True, text=True)
    if "Read-only file system" not in probe.stderr:
        pytest.skip(f"cannot make a read-only mount here: {probe.stderr.strip()[:200]}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for side_files in (True, False):  # with the -wal/-shm a reader left, and without them
        if not side_files:
            for p in out.glob("study.sqlite-*"):
                p.unlink()
        assert bool(list(out.glob("study.sqlite-*"))) == side_files
        res = subprocess.run(
            ["unshare", "-m", "sh", "-c", f"mount --bind {out} {out} && mount -o remount,ro,bind "
             f"{out} {out} && exec {sys.executable} -c '{READ_ONLY_CHECK}' {out} "
             f"{tmp_path}/elsewhere"], capture_output=True, text=True, env=env, timeout=120)
        assert res.returncode == 0, res.stderr
        got = json.loads(res.stdout.strip().splitlines()[-1])
        assert got["done"] == N_CELLS and got["metrics"] == N_CELLS * 2
        assert got["items"] == N_CELLS * 6 and got["exported"] == N_CELLS * 2 + 1
        assert "cannot write the table" in got["refused"] and "--out" in got["refused"]


def test_readonly_store_falls_back_to_immutable(tmp_path, monkeypatch):
    """Where SQLite cannot make the -shm file, the store is opened immutable."""
    out = tmp_path / "run"
    _run(out)
    real = sqlite3.connect
    tried: list[str] = []

    def connect(target, *a, **kw):
        tried.append(str(target))
        if kw.get("uri") and "immutable=1" not in str(target):
            raise sqlite3.OperationalError("unable to open database file")
        return real(target, *a, **kw)

    monkeypatch.setattr(sqlite3, "connect", connect)
    rows, counts = status_rows(out)
    assert counts["done"] == N_CELLS and any("immutable=1" in t for t in tried)


# --- 4. SIGTERM -------------------------------------------------------------------------------

def test_sigterm_is_handled_like_ctrl_c(tmp_path, reference):
    study, out = _study_file(tmp_path), tmp_path / "run"
    proc = _cli(["run", str(study), "--out", str(out), "--no-progress"], "--hook", f"eval.written@{KEY}")
    try:
        _wait_until((out / ".hook-eval.written").exists, "the eval hook", proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    states = cell_states(out)
    assert "running" not in states.values() and states[KEY] == "pending"
    assert (out / "cells" / KEY / "eval.tmp").is_dir()
    (out / ".hook-eval.written").unlink()
    r = _run(out)
    assert r.counts["done"] == N_CELLS and tables(out) == tables(reference)


# --- 5. status of a deleted cell --------------------------------------------------------------

def test_status_does_not_call_a_deleted_cell_done(tmp_path, reference, cheap_cli):
    out = tmp_path / "run"
    _run(out)
    shutil.rmtree(out / "cells" / KEY)
    rows, counts = status_rows(out)
    assert next(r for r in rows if r["key"] == KEY)["state"] == FILES_MISSING
    assert counts["done"] == N_CELLS - 1 and counts["files missing"] == 1
    res = cheap_cli("status", out)
    assert res.exit_code == 0 and FILES_MISSING in res.output
    r = _run(out)
    assert r.ran == 1 and tables(out) == tables(reference)


# --- 6. SIGKILL of the process group at random moments ------------------------------------------

def test_random_sigkills_then_resume_give_the_uninterrupted_tables(tmp_path, reference):
    study, out = _study_file(tmp_path), tmp_path / "run"
    rng = random.Random(14)
    for _ in range(3):
        proc = _cli(["run", str(study), "--out", str(out), "--no-progress"], "--slow", "0.1",
                    start_new_session=True)
        try:
            _wait_until(_holds_lock(out, proc.pid), "the run's lock", proc)
            time.sleep(rng.uniform(0.0, 1.5))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            reap(proc)
        assert proc.returncode == -signal.SIGKILL  # killed, not finished
    r = _run(out)
    assert r.counts["done"] == N_CELLS and not r.failed
    assert tables(out) == tables(reference)
    db = sqlite3.connect(out / "study.sqlite")
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT cell || '/' || idx) FROM items"
                      ).fetchone() == (N_CELLS * 6, N_CELLS * 6)
    db.close()
    assert not list(out.glob("cells/*/*.tmp"))
