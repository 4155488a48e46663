"""A user's mistake or a damaged file, through the real command line: one clear error line
(what, where) and exit 2, never a traceback; an internal error keeps its traceback and says
it is a bug; Ctrl-C and disk errors are one line."""

from __future__ import annotations

import errno
import gzip
from pathlib import Path

import pytest
from cli import run, run_process, user_error


# --- damaged responses files -----------------------------------------------------------------
def test_truncated_gzip_responses(tmp_path):
    good = gzip.compress(b'{"id": "1", "response": "#### 3"}\n' * 50)
    f = tmp_path / "resp.jsonl.gz"
    f.write_bytes(good[: len(good) // 2])
    user_error(run("score", "--task", "gsm8k", "--responses", f), str(f), "damaged gzip data")


def test_binary_responses(tmp_path):
    f = tmp_path / "resp.jsonl"
    f.write_bytes(bytes(range(128, 256)) * 4)
    user_error(run("score", "--task", "gsm8k", "--responses", f), str(f), "not UTF-8")


def test_gzip_without_gz_suffix_is_read(tmp_path):
    f = tmp_path / "resp.jsonl"
    f.write_bytes(gzip.compress(b'{"id": "gsm8k/test/0", "response": "The answer is 18.\\n#### 18"}\n'))
    r = run("score", "--task", "gsm8k", "--responses", f)
    assert r.exit_code == 0, r.stderr
    assert '"accuracy"' in r.stdout


# --- helpers ---------------------------------------------------------------------------------
def toy_cell(root: Path, base: str = "toy-S", meta: bool = True) -> Path:
    """A finished full-finetune cell of a toy model without training: ckpt/ is a copy of the
    base's files (a legitimate checkpoint of it), train_meta.json records the base."""
    import json
    import shutil

    from sftscale.toyworld import toy_model_path

    cell = root / "cell"
    shutil.copytree(toy_model_path(base), cell / "ckpt")
    if meta:
        (cell / "train_meta.json").write_text(json.dumps(
            {"meta_version": 1, "complete": True, "model": base, "task": "toy-math", "n": 4,
             "seed": 0, "trained": True, "checkpoint": "ckpt", "checkpoint_kind": "full"}))
    return cell


# --- a checkpoint of another base ------------------------------------------------------------
def test_eval_refuses_checkpoint_of_another_base(tmp_path):
    cell = toy_cell(tmp_path)
    err = user_error(run("eval", "--model", "toy-M", "--task", "toy-math", "--limit", "1",
                         "--adapter", cell), "--adapter", "'toy-S'", "'toy-M'",
                     "train_meta.json", "--base-from-checkpoint")
    assert "wrote" not in err
    # no train_meta.json: the full checkpoint's own config.json tells the architectures apart
    bare = toy_cell(tmp_path / "bare", meta=False) / "ckpt"
    user_error(run("eval", "--model", "toy-M", "--task", "toy-math", "--limit", "1",
                   "--adapter", bare), "config.json", "not a finetune of --model 'toy-M'")


def test_eval_base_from_checkpoint_names_the_evaluated_model(tmp_path):
    import json

    study_cell = tmp_path / "study-cell"  # a study cell dir (train/ inside) works too
    study_cell.mkdir()
    toy_cell(tmp_path).rename(study_cell / "train")
    r = run("eval", "--task", "toy-math", "--limit", "1", "--adapter", study_cell,
            "--base-from-checkpoint", "--out", tmp_path / "ev", "--batch-size", "1")
    assert r.exit_code == 0, r.stderr
    assert "evaluating on toy-S" in r.stderr
    (res,) = (tmp_path / "ev").glob("results_*.json")
    config = json.loads(res.read_text())["config"]
    assert config["model"] == "toy-S" and config["adapter"].endswith("train/ckpt")


# --- fit --items that do not match the table -------------------------------------------------
def _fit_inputs(tmp_path: Path, item_model: str, cols=("correct", "format_ok")) -> tuple[Path, Path]:
    import json

    csv = tmp_path / "long.csv"
    rows = ["model,task,metric,n,value,seed,n_items"]
    for n, v in ((0, 0.1), (8, 0.3), (32, 0.5), (128, 0.6)):
        rows += [f"m,t,accuracy,{n},{v},0,10", f"m,t,format_rate,{n},{min(1, 2 * v)},0,10"]
    csv.write_text("\n".join(rows) + "\n")
    items = tmp_path / "items.jsonl"
    with items.open("w") as f:
        for n, v in ((0, 0.1), (8, 0.3), (32, 0.5), (128, 0.6)):
            for i in range(10):
                rec = {"model": item_model, "task": "t", "n": n, "seed": 0, "item_id": f"q{i}",
                       "correct": float(i < 10 * v), "format_ok": float(i < 20 * v)}
                f.write(json.dumps({k: v for k, v in rec.items() if k not in
                                    {"correct", "format_ok"} - set(cols)}) + "\n")
    return csv, items


def test_fit_items_of_another_model_warn_and_write_no_analysis(tmp_path):
    csv, items = _fit_inputs(tmp_path, item_model="other")
    r = run("fit", csv, "--items", items, "--n-boot", "20", "--form", "power")
    assert r.exit_code == 0, r.stderr
    assert "WARNING" in r.stderr and "other/t match no curve" in r.stderr, r.stderr
    assert "no per-item scores" in r.stderr and "m/t" in r.stderr
    assert not (tmp_path / "analysis.json").exists()  # never an analysis of 'other'
    import json

    doc = json.loads((tmp_path / "fits.json").read_text())
    assert any("other/t" in w for w in doc["input_warnings"])


def test_fit_items_without_correct_warn(tmp_path):
    csv, items = _fit_inputs(tmp_path, item_model="m", cols=("format_ok",))
    r = run("fit", csv, "--items", items, "--n-boot", "20", "--form", "power")
    assert r.exit_code == 0, r.stderr
    assert "no 'correct' values, so the accuracy curves of m/t" in r.stderr, r.stderr
    assert "no analysis.json" in r.stderr and not (tmp_path / "analysis.json").exists()


# --- bad outputs and arguments: one clear line -----------------------------------------------
def test_run_output_is_a_file_or_unwritable(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    study = tmp_path / "s.yaml"
    for out in (f, "/sys/sftscale-unwritable/run"):  # /sys: not writable, even for root
        study.write_text(f"name: s\noutput: {out}\nmodels: [{{ref: toy-S}}]\n"
                         "tasks: [{name: toy-math, limit: 1}]\nn: [0]\n")
        user_error(run("run", study, "--no-progress"), str(out))


def test_train_bad_inputs_are_clear_and_leave_nothing(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    base = ["train", "--model", "toy-S", "--n", "4", "-q"]
    user_error(run(*base, "--task", "toy-math", "--out", f), str(f), "--out", "not a directory")
    cases = [(["--task", "gsm9k"], ["--task", "unknown task 'gsm9k'"]),
             (["--task", "humaneval"], ["--task", "no training", "N = 0"]),
             (["--task", "toy-math", "--device", "tpu9"], ["--device", "unknown device 'tpu9'"]),
             (["--task", "multihop-file"], ["--task-option", "path="]),
             (["--task", "toy-math", "--seed", "-1"], ["--seed", ">= 0"])]  # as a study refuses it
    for i, (args, needles) in enumerate(cases):
        out = tmp_path / f"o{i}"
        user_error(run(*base, *args, "--out", out), *needles)
        assert not out.exists(), args  # validated before anything is created
    user_error(run(*base, "--task", "toy-math", "--out", "/sys/sftscale-unwritable/c"),
               "/sys/sftscale-unwritable", "not permitted")


def test_score_and_eval_bad_inputs(tmp_path):
    resp = tmp_path / "r.jsonl"
    resp.write_text('{"id": "gsm8k/test/0", "response": "#### 18"}\n')
    user_error(run("score", "--task", "gsm8k", "--responses", resp, "--samples-out", tmp_path),
               "--samples-out", "is a directory")
    user_error(run("score", "--task", "multihop-file", "--responses", resp),
               "--task-option", "path=")
    user_error(run("eval", "--model", "toy-S", "--task", "multihop-file", "--limit", "1"),
               "--task-option", "path=")


def test_eval_truncated_weights(tmp_path):
    cell = toy_cell(tmp_path)
    w = cell / "ckpt" / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    user_error(run("eval", "--model", "toy-S", "--task", "toy-math", "--limit", "1",
                   "--adapter", cell), "damaged checkpoint weights", str(w))


def test_plan_mfu_and_output_file(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    study = tmp_path / "s.yaml"
    study.write_text("name: s\nmodels: [{ref: toy-S}]\ntasks: [{name: toy-math, limit: 1}]\n"
                     "n: [0]\n")
    for mfu in ("0", "-0.5", "1.5"):
        user_error(run("plan", study, "--gpu", "H100", "--mfu", mfu), "--mfu", "(0, 1]")
    study.write_text(f"name: s\noutput: {f}\nmodels: [{{ref: toy-S}}]\n"
                     "tasks: [{name: toy-math, limit: 1}]\nn: [0]\n")
    user_error(run("plan", study), f"{study}, line 2, field 'output'", "not a directory")


# --- empty, special and unknown inputs --------------------------------------------------------
def test_fit_dev_null_and_empty_file(tmp_path):
    user_error(run("fit", "/dev/null"), "/dev/null", "not a regular file")
    empty = tmp_path / "e.csv"
    empty.write_text("")
    user_error(run("fit", empty), str(empty), "empty file")


def test_unknown_toy_model_said_once(tmp_path):
    err = user_error(run("eval", "--model", "toy-X", "--task", "toy-math"), "--model", "toy-X")
    assert err.count("unknown toy model") == 1, err


def test_knowledge_unknown_model_at_its_line(tmp_path):
    k = tmp_path / "k.yaml"
    k.write_text("name: k\nfacts: toy\nmodel: toy-X\n")
    user_error(run("knowledge", k, "--out", tmp_path / "out"),
               f"{k}, line 3, field 'model'", "toy-X")
    assert not (tmp_path / "out").exists()


def test_eval_adapter_of_an_untrained_cell(tmp_path):
    import json

    cell = tmp_path / "cell" / "train"
    cell.mkdir(parents=True)
    (cell / "train_meta.json").write_text(json.dumps({"complete": True, "n": 0, "model": "toy-S",
                                                      "trained": False, "checkpoint": None}))
    user_error(run("eval", "--model", "toy-S", "--task", "toy-math", "--adapter", cell.parent),
               "not trained (N = 0)", "without --adapter")


# --- one top-level handler ----------------------------------------------------------------
def _raising(monkeypatch, exc: BaseException) -> None:
    """Make ``sftscale score`` raise ``exc`` (its ``score_file`` replaced)."""
    import sftscale.commands.data as d

    def boom(*a, **k):
        raise exc
    monkeypatch.setattr(d, "score_file", boom)


def test_real_process_bad_input_exits_2_and_internal_error_says_report_it(tmp_path):
    """The one check in a real process of what the user sees: a bad input is one line and
    exit 2; an internal error keeps its traceback, then says it is a bug and where to report
    it (exit 1)."""
    user_error(run_process("score", "--task", "gsm8k", "--responses", tmp_path / "x.jsonl",
                           cwd=tmp_path, timeout=120), "no such file")
    r = run_process("score", "--task", "gsm8k", "--responses", "x.jsonl", cwd=tmp_path,
                    timeout=120, patch="import sftscale.commands.data as d\n"
                    "def boom(*a, **k):\n    raise RuntimeError('a bug of ours')\n"
                    "d.score_file = boom")
    assert r.exit_code == 1
    assert "Traceback" in r.stderr and "RuntimeError: a bug of ours" in r.stderr
    assert "internal error" in r.stderr and "please report it" in r.stderr
    assert "command you ran and this traceback" in r.stderr


def test_internal_error_keeps_traceback_and_says_report_it(tmp_path, monkeypatch):
    _raising(monkeypatch, RuntimeError("a bug of ours"))
    r = run("score", "--task", "gsm8k", "--responses", "x.jsonl", cwd=tmp_path)
    assert r.exit_code == 1
    assert "Traceback" in r.stderr and "RuntimeError: a bug of ours" in r.stderr
    assert "internal error" in r.stderr and "please report it" in r.stderr


@pytest.mark.parametrize("exc,needles", [
    (OSError(errno.ENOSPC, "No space left on device", "/data/x"),
     ("/data/x", "no space left on device")),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/x"),
     ("/mnt/ro/x", "read-only file system")),
    (FileNotFoundError(errno.ENOENT, "No such file", "gone.txt"),
     ("gone.txt", "no such file or directory")),
])
def test_disk_errors_are_one_line(tmp_path, monkeypatch, exc, needles):
    _raising(monkeypatch, exc)
    user_error(run("score", "--task", "gsm8k", "--responses", "x.jsonl", cwd=tmp_path), *needles)


def test_ctrl_c_is_one_line(tmp_path, monkeypatch):
    _raising(monkeypatch, KeyboardInterrupt())
    r = run("score", "--task", "gsm8k", "--responses", "x.jsonl", cwd=tmp_path)
    assert r.exit_code == 130 and "Traceback" not in r.stderr and "interrupted" in r.stderr
