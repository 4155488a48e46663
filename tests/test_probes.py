"""The probe suite: bad inputs and faults, one table row each, through the command line.

Every case runs ``sftscale ARGS`` (``run`` of tests/cli.py, in-process; the study runner with
the cheap file-writing stages of tests/study_helpers.py) in a work directory holding a copy of
one finished run directory (built once per session) and the case's own input files, and
asserts:

- the exit code, and no traceback in the output;
- the message names the file (or flag) and the field, when the case gives them;
- that no file outside what the command owns changed: a hash of the work directory before and
  after (file contents and the directory tree; ``study.sqlite`` by its SQL dump, its -wal and
  -shm files left out), with only the case's ``owned`` paths allowed to differ.

Add a row whenever a defect is found. The cases name what they probe; see docs/reliability.md
for what each command may write and what it promises under each fault.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import io
import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from cli import run as run_cli
from study_helpers import RUNNER, STUDY

KEY = "m1__toy-math__n8__s3"  # a trained cell of the finished run


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """A finished run directory of the cheap study (10 cells), made once per session."""
    from sftscale.config import parse_study
    from sftscale.study.runner import run_study

    out = tmp_path_factory.mktemp("probe-run") / "R"
    res = run_study(parse_study(STUDY, "cheap.yaml"), out=out, runner=RUNNER, progress=False,
                    check=False)
    assert res.counts["done"] == 10
    return out


@pytest.fixture
def cli(monkeypatch):
    """``sftscale ARGS`` in-process, the runner with the cheap stages (models still checked)."""
    import sftscale.study.runner as runner_mod

    monkeypatch.setattr(runner_mod, "run_study", functools.partial(runner_mod.run_study,
                                                                   runner=RUNNER))
    return lambda args: run_cli(*args)


# --- the work directory and its hash -------------------------------------------------------------

def tree_hash(root: Path) -> dict[str, str]:
    """Relative path -> hash of every file and directory under ``root`` (see the docstring)."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.name.endswith(("-wal", "-shm")) or p.name.startswith(".sftscale-probe"):
            continue
        if p.is_dir():
            out[rel + "/"] = "dir"
        elif p.name == "study.sqlite":
            db = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
            try:
                out[rel] = hashlib.sha256("\n".join(db.iterdump()).encode()).hexdigest()
            except sqlite3.DatabaseError:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            finally:
                db.close()
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


@dataclass
class W:
    """A case's work directory: ``run`` is a copy of the finished run, ``path(name)`` a file."""

    root: Path
    template: Path

    @functools.cached_property
    def run(self) -> Path:
        shutil.copytree(self.template, self.root / "R")
        return self.root / "R"

    def path(self, name: str) -> Path:
        if name.startswith("R/"):
            self.run  # noqa: B018 - the copy of the finished run first
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write(self, name: str, text: str | bytes) -> Path:
        p = self.path(name)
        (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
        return p


@dataclass
class Case:
    """One probe: ``setup(w)`` writes the inputs and returns the arguments; ``code`` the exit
    code; ``needles`` text the output must contain;
    ``owned`` glob patterns (relative to the work directory) that may change."""

    name: str
    setup: Callable[[W], list]
    code: int = 2
    needles: tuple[str, ...] = ()
    owned: tuple[str, ...] = ()
    check: Callable[[W, str], None] | None = None


# --- inputs ----------------------------------------------------------------------------------------

LONG = "model,task,metric,n,value,seed,n_items\n" + "".join(
    f"m,t,accuracy,{n},{v},0,50\n" for n, v in ((0, 0.1), (8, 0.3), (32, 0.5), (128, 0.6),
                                                (512, 0.7)))


def long_csv(w: W, text: str = LONG, name: str = "in.csv") -> Path:
    return w.write(name, text)


def with_row(row: str) -> str:
    return LONG + row + "\n"


def items_jsonl(w: W, extra: list[dict] | None = None) -> Path:
    rows = [{"model": "m", "task": "t", "n": n, "seed": 0, "item_id": f"q{i}",
             "correct": float(i < 50 * v), "format_ok": 1.0}
            for n, v in ((0, 0.1), (8, 0.3), (32, 0.5), (128, 0.6), (512, 0.7)) for i in range(50)]
    return w.write("items.jsonl", "".join(json.dumps(r) + "\n" for r in rows + (extra or [])))


def fit(*args) -> Callable[[W], list]:
    return lambda w: ["fit", long_csv(w), "--n-boot", "20", *args]


STUDY_FILE = "study.yaml"


def study(w: W, text: str = STUDY, name: str = STUDY_FILE) -> Path:
    return w.write(name, text)


def edited_study(old: str, new: str) -> Callable[[W], Path]:
    assert old in STUDY, old
    return lambda w: study(w, STUDY.replace(old, new))


def responses(w: W, lines: list[dict], name: str = "resp.jsonl", encoding: str = "utf-8") -> Path:
    return w.write(name, "".join(json.dumps(x) + "\n" for x in lines).encode(encoding))


def samples_file(run: Path, key: str = KEY) -> Path:
    return next((run / "cells" / key / "eval").glob("samples_*.jsonl"))


def set_store(run: Path, sql: str) -> None:
    db = sqlite3.connect(run / "study.sqlite")
    db.execute(sql)
    db.commit()
    db.close()


def user_file(w: W, name: str, text: str = "my own notes\n") -> Path:
    return w.write(name, text)


# --- the cases ------------------------------------------------------------------------------------

CASES: list[Case] = [
    # fit: targets and --at against the metric's range
    Case("fit target above 1", fit("--target", "1.5"), needles=("--target", "1.5", "between 0 and 1")),
    Case("fit target below 0", fit("--target=-0.5"), needles=("--target", "-0.5", "between 0 and 1")),
    Case("fit target 0", fit("--target", "0"), needles=("--target", "between 0 and 1")),
    Case("fit target nan", fit("--target", "nan"), needles=("--target", "nan", "finite")),
    Case("fit target inf", fit("--target", "inf"), needles=("--target", "inf", "finite")),
    Case("fit at nan", fit("--at", "nan"), needles=("--at", "finite")),
    Case("fit at negative", fit("--at=-3"), needles=("--at", "> 0")),
    Case("fit at 0", fit("--at", "0"), needles=("--at", "> 0")),
    Case("fit level 1.5", fit("--level", "1.5"), needles=("level", "(0, 1)")),
    Case("fit forecast level 0", fit("--forecast-level", "0"), needles=("forecast-level",)),
    Case("fit n-boot negative", fit("--n-boot", "-1"), needles=("n-boot", ">= 0")),
    Case("fit unknown metric", fit("--metric", "acc"), needles=("--metric", "'acc'", "accuracy")),
    Case("fit unknown form", fit("--form", "cubic"), needles=("cubic",)),
    # fit: the CSV's encoding, values and duplicates
    Case("fit csv utf-16", lambda w: ["fit", w.write("in.csv", LONG.encode("utf-16"))],
         needles=("in.csv", "UTF-16", "save the file as UTF-8")),
    Case("fit csv latin-1", lambda w: ["fit", w.write("in.csv", (LONG + "m,tâche,accuracy,2,0.2,0,50\n")
                                                     .encode("latin-1"))],
         needles=("in.csv", "line 7", "not UTF-8")),
    Case("fit csv with a BOM is read", lambda w: ["fit", w.write("in.csv", "\ufeff" + LONG),
                                                  "--n-boot", "20", "--form", "power"],
         code=0, needles=("wrote",), owned=("fits.json",)),
    Case("fit conflicting duplicate rows",
         lambda w: ["fit", long_csv(w, with_row("m,t,accuracy,8,0.35,0,50"))],
         needles=("in.csv", "line 7", "field 'value'", "lines 3 and 7", "0.3", "0.35")),
    Case("fit duplicate rows with different n_items",
         lambda w: ["fit", long_csv(w, with_row("m,t,accuracy,8,0.3,0,60"))],
         needles=("in.csv", "line 7", "field 'n_items'", "lines 3 and 7")),
    Case("fit exact duplicate rows dropped with a warning",
         lambda w: ["fit", long_csv(w, with_row("m,t,accuracy,8,0.3,0,50")), "--n-boot", "20",
                    "--form", "power"],
         code=0, needles=("1 exact duplicate row(s) dropped", "line 7"), owned=("fits.json",),
         check=lambda w, out: _has_input_warning(w.root / "fits.json", "exact duplicate")),
    Case("fit accuracy as a percentage", lambda w: ["fit", long_csv(w, with_row("m,t,accuracy,2048,85,0,50"))],
         needles=("in.csv", "line 7", "field 'value'", "rate", "percentage")),
    Case("fit negative accuracy", lambda w: ["fit", long_csv(w, with_row("m,t,accuracy,2048,-0.1,0,50"))],
         needles=("in.csv", "line 7", "field 'value'", "[0, 1]")),
    Case("fit value not a number", lambda w: ["fit", long_csv(w, with_row("m,t,accuracy,2048,high,0,50"))],
         needles=("in.csv", "line 7", "field 'value'", "not a number")),
    Case("fit value nan", lambda w: ["fit", long_csv(w, with_row("m,t,accuracy,2048,nan,0,50"))],
         needles=("in.csv", "line 7", "field 'value'", "finite")),
    Case("fit negative n", lambda w: ["fit", long_csv(w, with_row("m,t,accuracy,-8,0.3,0,50"))],
         needles=("in.csv", "line 7", "field 'n'", ">= 0")),
    Case("fit fractional n", lambda w: ["fit", long_csv(w, with_row("m,t,accuracy,8.5,0.3,0,50"))],
         needles=("in.csv", "line 7", "field 'n'", "integer")),
    Case("fit n_items 0", lambda w: ["fit", long_csv(w, with_row("m,t,accuracy,2048,0.3,0,0"))],
         needles=("in.csv", "line 7", "field 'n_items'")),
    Case("fit missing column", lambda w: ["fit", long_csv(w, "model,task,metric,n\nm,t,accuracy,8\n")],
         needles=("in.csv", "line 1", "field 'value'", "missing column")),
    Case("fit row with more fields than the header",
         lambda w: ["fit", long_csv(w, with_row("m,t,accuracy,2048,0.3,0,50,extra"))],
         needles=("in.csv", "line 7", "more fields")),
    Case("fit empty model", lambda w: ["fit", long_csv(w, with_row(",t,accuracy,2048,0.3,0,50"))],
         needles=("in.csv", "line 7", "field 'model'")),
    Case("fit empty file", lambda w: ["fit", w.write("in.csv", "")], needles=("in.csv", "empty file")),
    Case("fit a directory that is not a run", lambda w: ["fit", w.path("notarun/x").parent],
         needles=("notarun", "not a run directory")),
    Case("fit missing file", lambda w: ["fit", w.root / "nope.csv"], needles=("nope.csv", "no such file")),
    # fit: per-item scores
    Case("fit items conflicting duplicates",
         lambda w: ["fit", long_csv(w), "--items", items_jsonl(w, [
             {"model": "m", "task": "t", "n": 8, "seed": 0, "item_id": "q0", "correct": 0.0,
              "format_ok": 1.0}])],
         needles=("items.jsonl", "line 251", "field 'correct'", "lines 51 and 251")),
    Case("fit items exact duplicate dropped",
         lambda w: ["fit", long_csv(w), "--items", items_jsonl(w, [
             {"model": "m", "task": "t", "n": 8, "seed": 0, "item_id": "q0", "correct": 1.0,
              "format_ok": 1.0}]), "--n-boot", "20", "--form", "power"],
         code=0, needles=("items.jsonl", "1 exact duplicate item row(s) dropped"),
         owned=("fits.json", "analysis.json")),
    Case("fit items score outside [0, 1]",
         lambda w: ["fit", long_csv(w), "--items", items_jsonl(w, [
             {"model": "m", "task": "t", "n": 8, "seed": 0, "item_id": "q99", "correct": 2,
              "format_ok": 1.0}])],
         needles=("items.jsonl", "line 251", "field 'correct'", "[0, 1]")),
    Case("fit items utf-16", lambda w: ["fit", long_csv(w), "--items",
                                        w.write("items.jsonl", '{"model": "m"}\n'.encode("utf-16"))],
         needles=("items.jsonl", "UTF-16")),
    Case("fit items not JSON", lambda w: ["fit", long_csv(w), "--items", w.write("items.jsonl", "{oops\n")],
         needles=("items.jsonl", "line 1", "not valid JSON")),
    # fit: what it writes
    Case("fit --out beside a user's analysis.json",
         lambda w: [user_file(w, "X/analysis.json"), "fit", w.run, "--out", w.path("X/fits.json"),
                    "--n-boot", "20", "--form", "power"][1:],
         code=0, needles=("fits.analysis.json",), owned=("X/fits.json", "X/fits.analysis.json")),
    Case("fit --out whose side file is a user's",
         lambda w: [user_file(w, "X/fits.analysis.json"), "fit", w.run, "--out",
                    w.path("X/fits.json"), "--n-boot", "20"][1:],
         needles=("X/fits.analysis.json", "--out", "does not overwrite")),
    Case("fit --out onto a user's file",
         lambda w: [user_file(w, "X/notes.json"), "fit", long_csv(w), "--out", w.path("X/notes.json")][1:],
         needles=("X/notes.json", "--out", "does not overwrite")),
    Case("fit --out a directory", lambda w: ["fit", long_csv(w), "--out", w.path("X/d/f").parent],
         needles=("X/d", "--out", "is a directory")),
    Case("fit beside a user's fits.json", lambda w: [user_file(w, "fits.json"), "fit", long_csv(w)][1:],
         needles=("fits.json", "does not overwrite")),
    Case("fit run directory writes its own files",
         lambda w: ["fit", w.run, "--n-boot", "20", "--form", "power"], code=0,
         needles=("wrote",), owned=("R/fits.json", "R/analysis.json")),
    # export
    Case("export beside a user's items.csv keeps it",
         lambda w: [user_file(w, "X/items.csv"), "export", w.run, "--out", w.path("X/metrics.csv")][1:],
         code=0, needles=("metrics.items.csv",), owned=("X/metrics.csv", "X/metrics.items.csv"),
         check=lambda w, out: _same_text(w.root / "X/items.csv", "my own notes\n")),
    Case("export whose side file is a user's",
         lambda w: [user_file(w, "X/metrics.items.csv"), "export", w.run, "--out",
                    w.path("X/metrics.csv")][1:],
         needles=("X/metrics.items.csv", "--out", "does not overwrite")),
    Case("export onto a user's file",
         lambda w: [user_file(w, "X/metrics.csv"), "export", w.run, "--out", w.path("X/metrics.csv")][1:],
         needles=("X/metrics.csv", "--out", "does not overwrite")),
    Case("export again over its own files",
         lambda w: [_export_once(w), "export", w.run, "--out", w.path("X/metrics.csv")][1:],
         code=0, needles=("metrics.items.csv",), owned=("X/metrics.csv", "X/metrics.items.csv")),
    Case("export unknown format", lambda w: ["export", w.run, "--format", "xlsx"], needles=("format", "xlsx")),
    Case("export --out a directory", lambda w: ["export", w.run, "--out", w.path("X/d/f").parent],
         needles=("X/d", "is a directory")),
    Case("export a directory that is not a run", lambda w: ["export", w.path("notarun/x").parent],
         needles=("notarun", "not a run directory")),
    Case("export a damaged store",
         lambda w: [w.write("R/study.sqlite", b"not a database" * 50) and "export", w.run],
         needles=("study.sqlite", "damaged", "--repair")),
    # run
    Case("run a changed config on the run directory",
         lambda w: ["run", edited_study("limit: 6", "limit: 5")(w), "--out", w.run, "--no-progress"],
         needles=("study.sqlite", "different spec", "--rerun-changed")),
    Case("run a run directory whose study.yaml has a boolean for a number",
         lambda w: [w.write("R/study.yaml", STUDY.replace("limit: 6", "limit: true")) and "run",
                    w.run, "--no-progress"],
         needles=("R/study.yaml", "line 6", "tasks[0].limit", "boolean, not a number")),
    Case("run with a boolean in the N grid", lambda w: ["run", edited_study("n: [0, 8, 32]", "n: [0, true, 32]")(w)],
         needles=(STUDY_FILE, "line 7", "field 'n[1]'", "boolean")),
    Case("run with a boolean seed", lambda w: ["run", edited_study("seeds: [3, 4]", "seeds: [3, false]")(w)],
         needles=(STUDY_FILE, "line 8", "field 'seeds[1]'", "boolean")),
    Case("run with a number for chat", lambda w: ["run", edited_study("ref: toy-S}", "ref: toy-S, chat: 1}")(w)],
         needles=(STUDY_FILE, "line 3", "models[0].chat", "not a boolean")),
    Case("run with an unknown recipe field and an unwritable output",
         lambda w: ["run", edited_study("name: cheap", "name: cheap\noutput: /sys/sftscale-probe/run\n"
                                        "recipe: {lrr: 0.1, lr: true}")(w), "--no-progress"],
         needles=("3 problem(s)", "line 2, output", "/sys/sftscale-probe/run",
                  "line 3, recipe.lrr", "unknown recipe field", "line 3, recipe.lr:", "boolean")),
    Case("run --out under a file", lambda w: ["run", study(w), "--out", user_file(w, "afile") / "run"],
         needles=("afile", "--out", "not a directory")),
    Case("run --out a file", lambda w: ["run", study(w), "--out", user_file(w, "afile")],
         needles=("afile", "--out", "not a directory")),
    Case("run unknown executor", lambda w: ["run", study(w), "--executor", "slurm", "--out", w.root / "new"],
         needles=("--executor", "slurm")),
    Case("run a config that is not UTF-8",
         lambda w: ["run", w.write(STUDY_FILE, STUDY.encode("utf-16")), "--out", w.root / "new"],
         needles=(STUDY_FILE, "UTF-16")),
    Case("run a config with a BOM",
         lambda w: ["run", w.write(STUDY_FILE, ("\ufeff" + STUDY).encode()), "--out", w.root / "new",
                    "--no-progress"],
         code=0, needles=('"done": 10',), owned=("new", "new/*")),
    Case("run a damaged store", lambda w: [w.write("R/study.sqlite", b"garbage" * 100) and "run", w.run],
         needles=("study.sqlite", "damaged", "--repair")),
    Case("run repairs a store value that disagrees with the cell's files",
         lambda w: [set_store(w.run, f"UPDATE metrics SET value=0.99 WHERE cell='{KEY}' AND "
                              "metric='accuracy'"), "run", w.run, "--no-progress"][1:],
         code=0, needles=(KEY, "differ from the cell's files", "0.99 in the store"),
         owned=("R/study.sqlite", "R/study.yaml", "R/plan.json", "R/export.csv", "R/items.jsonl"),
         check=lambda w, out: _store_value_restored(w)),
    Case("status of a cell left running by a killed run",
         lambda w: [set_store(w.run, f"UPDATE cells SET state='running' WHERE key='{KEY}'"), "status",
                    w.run][1:],
         code=0, needles=("interrupted",), check=lambda w, out: _no_running(out)),
    # plan
    Case("plan with every problem at once",
         lambda w: ["plan", edited_study("name: cheap", "name: cheap\noutput: /sys/sftscale-probe/run\n"
                                         "recipe: {lrr: 0.1}")(w)],
         needles=("2 problem(s)", "line 2, output", "cannot be created", "line 3, recipe.lrr")),
    Case("plan --no-check with a bad recipe field",
         lambda w: ["plan", edited_study("name: cheap", "name: cheap\nrecipe: {lrr: 0.1}")(w), "--no-check"],
         needles=("line 2, recipe.lrr", "unknown recipe field")),
    Case("plan with a boolean learning rate",
         lambda w: ["plan", edited_study("name: cheap", "name: cheap\nrecipe: {lr: true}")(w)],
         needles=("recipe.lr", "boolean, not a number")),
    Case("plan with output a file",
         lambda w: ["plan", edited_study("name: cheap", f"name: cheap\noutput: {user_file(w, 'afile')}")(w)],
         needles=("line 2", "output", "not a directory")),
    Case("plan with an unknown model and task",
         lambda w: ["plan", study(w, STUDY.replace("ref: toy-M", "ref: toy-X")
                                  .replace("name: toy-math", "name: toy-nope"))],
         needles=("2 problem(s)", "toy-X", "toy-nope")),
    Case("plan mfu out of range", lambda w: ["plan", study(w), "--gpu", "H100", "--mfu", "2"],
         needles=("--mfu", "(0, 1]")),
    # status
    Case("status lists the missing files",
         lambda w: [samples_file(w.run).unlink(), "status", w.run, "--json"][1:], code=0,
         needles=("done (files missing)", "missing: cells/" + KEY + "/eval/samples_")),
    Case("status of a deleted cell directory",
         lambda w: [shutil.rmtree(w.run / "cells" / KEY), "status", w.run][1:], code=0,
         needles=("files missing", f"cells/{KEY}/")),
    Case("status of a changed store value",
         lambda w: [set_store(w.run, f"UPDATE metrics SET value=0.99 WHERE cell='{KEY}' AND "
                              "metric='accuracy'"), "status", w.run, "--json"][1:], code=0,
         needles=("done (store changed)",)),
    Case("status of a directory that is not a run", lambda w: ["status", w.path("notarun/x").parent],
         needles=("notarun", "not a run directory")),
    Case("status of a damaged store",
         lambda w: [w.write("R/study.sqlite", b"garbage" * 100) and "status", w.run],
         needles=("study.sqlite", "damaged")),
    # score
    Case("score a repeated item",
         lambda w: ["score", "--task", "gsm8k", "--responses", responses(w, [
             {"id": "gsm8k/test/0", "response": "#### 18"}, {"id": "gsm8k/test/1", "response": "#### 3"},
             {"id": "gsm8k/test/0", "response": "#### 18"}])],
         needles=("resp.jsonl", "line 3", "field 'id'", "line 1", "count twice")),
    Case("score a repeated sample index",
         lambda w: ["score", "--task", "gsm8k", "--responses", responses(w, [
             {"id": "gsm8k/test/0", "response": "#### 18", "sample": 0},
             {"id": "gsm8k/test/0", "response": "#### 1", "sample": 0}])],
         needles=("resp.jsonl", "line 2", "field 'sample'")),
    Case("score a sample index that is not a number",
         lambda w: ["score", "--task", "gsm8k", "--responses", responses(w, [
             {"id": "gsm8k/test/0", "response": "#### 18", "sample": "a"}])],
         needles=("resp.jsonl", "line 1", "field 'sample'")),
    Case("score utf-16 responses",
         lambda w: ["score", "--task", "gsm8k", "--responses", responses(w, [
             {"id": "gsm8k/test/0", "response": "#### 18"}], encoding="utf-16")],
         needles=("resp.jsonl", "UTF-16")),
    Case("score responses with a BOM",
         lambda w: ["score", "--task", "gsm8k", "--responses", responses(w, [
             {"id": "gsm8k/test/0", "response": "#### 18"}], encoding="utf-8-sig")],
         code=0, needles=('"accuracy": 1.0',)),
    Case("score samples of a pass@k task may repeat",
         lambda w: ["score", "--task", "humaneval", "--responses", responses(w, [
             {"task_id": "HumanEval/0", "completion": "    return False\n"}] * 2)],
         code=0, needles=('"n": 2.0',)),
    # report
    Case("report with a damaged samples file changes nothing",
         lambda w: [samples_file(w.run).write_text('{"id": "x", "corr'), "report", w.run,
                    "--n-boot", "20"][1:],
         needles=("samples_", "line 1", "not valid JSON")),
    Case("report of a directory that is not a run", lambda w: ["report", w.path("notarun/x").parent],
         needles=("notarun", "not a run directory")),
    Case("report after fit, with a damaged samples file, keeps fit's files",
         lambda w: [_fit_run(w), samples_file(w.run).write_text("not json\n"), "report", w.run,
                    "--n-boot", "20"][2:],
         needles=("samples_", "line 1", "not valid JSON")),
    Case("report refitting a stale fits.json, with a damaged samples file, keeps it",
         lambda w: [_fit_run(w), set_store(w.run, f"UPDATE items SET correct = 1 - correct WHERE "
                                           f"cell='{KEY}' AND idx=0"),
                    samples_file(w.run).write_text("not json\n"), "report", w.run, "--n-boot", "20"][3:],
         needles=("refitting fits.json", "samples_", "line 1", "not valid JSON")),
    Case("report beside a user's fits.json", lambda w: [user_file(w, "R/fits.json"), "report", w.run][1:],
         needles=("R/fits.json", "does not overwrite")),
    Case("report beside a user's analysis.json",
         lambda w: [user_file(w, "R/analysis.json"), "report", w.run, "--n-boot", "20"][1:],
         needles=("R/analysis.json", "does not overwrite")),
    Case("report writes fits.json, analysis.json and report/ only",
         lambda w: ["report", w.run, "--n-boot", "20"], code=0, needles=("report.html",),
         owned=("R/fits.json", "R/analysis.json", "R/report")),
    # knowledge config
    Case("knowledge config with a boolean seed",
         lambda w: ["knowledge", w.write("k.yaml", "name: k\nmodel: toy-S\nworld_seed: true\n"),
                    "--out", w.root / "kout"],
         needles=("k.yaml", "line 3", "world_seed", "boolean, not a number")),
    Case("knowledge config with a number for a boolean",
         lambda w: ["knowledge", w.write("k.yaml", "name: k\nmodel: toy-S\nbase: 1\n"),
                    "--out", w.root / "kout"],
         needles=("k.yaml", "line 3", "base", "not a boolean")),
    Case("knowledge config not UTF-8",
         lambda w: ["knowledge", w.write("k.yaml", "name: k\nmodel: toy-S\n".encode("utf-16")),
                    "--out", w.root / "kout"],
         needles=("k.yaml", "UTF-16")),
]


def _fit_run(w: W) -> None:
    res = run_cli("fit", w.run, "--n-boot", "20", "--form", "power")
    assert res.exit_code == 0 and (w.run / "fits.json").is_file(), res.output


def _has_input_warning(path: Path, text: str) -> None:
    doc = json.loads(path.read_text())
    assert any(text in w for w in doc.get("input_warnings", [])), doc.get("input_warnings")


def _same_text(path: Path, text: str) -> None:
    assert path.read_text() == text


def _export_once(w: W) -> bool:
    from sftscale.rundir.export import export

    export(w.run, "csv", w.path("X/metrics.csv"))
    return True


def _store_value_restored(w: W) -> None:
    db = sqlite3.connect(w.run / "study.sqlite")
    (v,) = db.execute(f"SELECT value FROM metrics WHERE cell='{KEY}' AND metric='accuracy'").fetchone()
    db.close()
    assert v != 0.99


def _no_running(out: str) -> None:
    assert " running " not in out.split("\n", 1)[1], out


def test_enough_cases():
    assert len(CASES) >= 60 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_probe(case: Case, tmp_path, finished_run, cli, caplog, monkeypatch):
    w = W(tmp_path / "w", finished_run)
    w.root.mkdir()
    monkeypatch.chdir(w.root)  # a default output (runs/<name>) lands in the hashed directory
    args = case.setup(w)
    before = tree_hash(w.root)
    with caplog.at_level("WARNING"):
        res = cli(args)
    out = res.output
    logged = "\n".join(r.getMessage() for r in caplog.records)  # stderr outside pytest
    assert "Traceback" not in out, out
    assert res.exit_code == case.code, (res.exit_code, out)
    flat = out.replace("\n", "")  # rich wraps long lines (paths) at 80 columns here
    for needle in case.needles:
        assert needle in out or needle in flat or needle in logged, (needle, out, logged)
    after = tree_hash(w.root)
    extra = {p for p in changed(before, after)
             if not any(fnmatch.fnmatch(p.rstrip("/"), pat) or p.rstrip("/").startswith(pat + "/")
                        for pat in case.owned)}
    assert not extra, f"changed outside what the command owns: {sorted(extra)}"
    if case.code == 2:
        assert out.count("error: ") == 1, out
    if case.check is not None:
        case.check(w, out)


# --- big inputs: same numbers, a summary, the curve data built once ---------------------------------

def _many_curves(k: int, seeds: int = 1) -> str:
    rows = ["model,task,metric,n,value,seed,n_items"]
    for c in range(k):
        for n, v in ((0, 0.1), (8, 0.2), (32, 0.35), (128, 0.5), (512, 0.6)):
            rows += [f"m{c},t,accuracy,{n},{min(1.0, v + 0.01 * (c % 7) + 0.002 * s)},{s},100"
                     for s in range(seeds)]
    return "\n".join(rows) + "\n"


def test_run_fits_equals_one_call_each():
    """Curve by curve under the progress bar gives what fit_table, joint_fits and
    forecast_table give in one call each."""
    import io

    from sftscale.fit.data import load_long
    from sftscale.fit.fitting import fit_table
    from sftscale.fit.forecast import forecast_table
    from sftscale.fit.joint import joint_fits
    from sftscale.fit.progress import run_fits

    df = load_long(pd_csv(io.StringIO(_many_curves(4))))
    kw = dict(n_boot=30, seed=1)
    fits, joint, fc = run_fits(df, None, metric=None, forms=["power", "loglinear"], level=0.9,
                               targets=[0.5], forecast_level=0.8, **kw)
    want = fit_table(df, None, forms=["power", "loglinear"], level=0.9, **kw)
    assert [f.to_dict() for f in fits] == [f.to_dict() for f in want]
    assert joint == joint_fits(df, None, level=0.9, **kw)
    assert fc == forecast_table(df, None, targets=[0.5], level=0.8, **kw)


def pd_csv(buf: io.StringIO):
    import pandas as pd

    return pd.read_csv(buf)


def test_big_fit_prints_a_summary(tmp_path, cli):
    csv = tmp_path / "big.csv"
    csv.write_text(_many_curves(25))
    res = cli(["fit", csv, "--n-boot", "20", "--form", "power,loglinear"])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) < 20, res.output
    assert "scaling-law fits: 25 curves × 2 forms" in res.output
    assert "joint fits: 300 exponent differences" in res.output
    assert not any(ln.startswith(("│", "┃")) for ln in lines)  # no table
    doc = json.loads((tmp_path / "fits.json").read_text())
    assert len(doc["fits"]) == 50


def test_curve_data_memo_is_transparent():
    import numpy as np

    from sftscale.fit import bootstrap
    from sftscale.fit.bootstrap import curve_data, curve_rng
    from sftscale.fit.data import load_long

    rows = load_long(pd_csv(io.StringIO(_many_curves(1, seeds=120))))  # 600 cells: memoised
    bootstrap._MEMO.clear()
    r1 = curve_rng(0, "m0", "t", "accuracy")
    a = curve_data(rows, None, 50, r1)
    r2 = curve_rng(0, "m0", "t", "accuracy")
    b = curve_data(rows, None, 50, r2)
    assert len(bootstrap._MEMO) == 1
    assert np.array_equal(a.reps, b.reps) and np.array_equal(a.y, b.y) and a.method == b.method
    assert r1.bit_generator.state == r2.bit_generator.state  # as if drawn again
    b.reps[:] = -1  # a consumer changing its copy changes nothing else
    c = curve_data(rows, None, 50, curve_rng(0, "m0", "t", "accuracy"))
    assert np.array_equal(a.reps, c.reps)
    d = curve_data(rows, None, 50, curve_rng(1, "m0", "t", "accuracy"))  # another seed: drawn
    assert not np.array_equal(a.reps, d.reps) and len(bootstrap._MEMO) == 2


def test_numpy_warnings_of_the_fit_code_are_silenced():
    """quiet.py: numpy's RuntimeWarnings raised in sftscale.fit / sftscale.report are not the
    user's (the fits' own warnings name the curve); anyone else's still show."""
    import warnings

    from sftscale.quiet import quiet_third_party_warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_third_party_warnings()
        for module in ("sftscale.fit.forms", "sftscale.report.figures", "sftscale.study.runner"):
            warnings.warn_explicit("overflow encountered in exp", RuntimeWarning, "x.py", 1,
                                   module=module)
    assert [str(w.message) for w in seen] == ["overflow encountered in exp"]
