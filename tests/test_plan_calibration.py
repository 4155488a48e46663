"""Plan calibration (plan/calibrate.py, runplan.py), every problem at once and --no-check
(offline.py, problems.py), the GPU constants file (gpucal.py), status --plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sftscale.config import parse_study
from sftscale.plan import calibrate as cal
from sftscale.plan.gpucal import gpu_mfu, write_gpu_calibration


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SFTSCALE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _pairs(rates, tasks=("a", "b")):
    """Synthetic (store cell, plan row) pairs that follow the cost model exactly."""
    out = []
    for t in tasks:
        for n, tok in ((0, 0), (16, 4000), (64, 9000), (256, 30000)):
            gen = 3000 if t == "a" else 800
            train = rates["fixed"] + rates["tr"][t] * tok
            ev = rates["ev"][t] * gen
            row = {"task": t, "train_tokens": tok, "gen_tokens_max": gen, "n": n}
            out.append(({"train_s": train, "eval_s": ev, "wall_s": train + ev + 0.5}, row))
    return out


def test_fit_rates_recovers_the_cost_model_and_predicts_cells(cache):
    truth = {"fixed": 1.5, "tr": {"a": 1e-3, "b": 3e-3}, "ev": {"a": 2e-3, "b": 5e-4}}
    pairs = _pairs(truth)
    rates = cal.fit_rates(pairs)
    assert rates["train_fixed_s"] == pytest.approx(1.5)
    assert rates["train_s_per_token"] == pytest.approx(truth["tr"])
    assert rates["eval_s_per_gen_token"] == pytest.approx(truth["ev"])
    assert rates["other_s"] == pytest.approx(0.5)
    fp = {"cpu": "x", "cores": 2, "torch": "t", "threads": 1, "workers": 2}
    p = cal.save_calibration(fp, "ab" * 32, "toy-S", "run", rates)
    assert p.is_relative_to(cache)
    c = cal.load_calibration(fp, "ab" * 32)
    for cell, row in pairs:
        t, src = cal.cell_seconds(c, row)
        assert t == pytest.approx(cell["wall_s"]) and src == "run"
    # another machine setting (two threads) has no calibration: the FLOP constants apply
    assert cal.load_calibration({**fp, "threads": 2}, "ab" * 32) is None
    # a measured source does not override the run's rates; a task only it knows is used
    cal.save_calibration(fp, "ab" * 32, "toy-S", "measure",
                         {"train_s_per_token": {"a": 9.0, "c": 2e-3},
                          "eval_s_per_gen_token": {"a": 9.0, "c": 1e-3}})
    c = cal.load_calibration(fp, "ab" * 32)
    assert cal.cell_seconds(c, pairs[1][1])[0] == pytest.approx(pairs[1][0]["wall_s"])
    row_c = {"task": "c", "train_tokens": 1000, "gen_tokens_max": 1000}
    t, src = cal.cell_seconds(c, row_c)
    assert src == "measure" and t == pytest.approx(1.5 + 2.0 + 1.0 + 0.5)


BAD = """\
name: bad
models:
  - {name: m, ref: toy-S}
tasks:
  - name: multihop-file
    label: one
    options: {path: /nonexistent/a.jsonl}
  - name: no-such-task
  - name: multihop-file
    label: two
    options: {path: /nonexistent/b.jsonl}
n: [0, 16]
"""


def test_check_lists_every_problem_with_its_line(tmp_path):
    from sftscale.plan.check import check_study
    from sftscale.plan.problems import CheckProblems

    cfg = parse_study(BAD, tmp_path / "bad.yaml")
    with pytest.raises(CheckProblems) as ei:
        check_study(cfg)
    e = ei.value
    assert len(e.problems) == 3
    assert [p.line for p in e.problems] == [7, 8, 11]
    msg = str(e)
    assert "a.jsonl" in msg and "no-such-task" in msg and "b.jsonl" in msg


PAPERISH = """\
name: offline
models:
  - {name: l8, ref: meta-llama/Meta-Llama-3-8B, gpus: 1}
  - {name: mine, ref: someone/private-model, params: 3.0e9}
  - {name: shaped, ref: someone/other, arch: {layers: 2, hidden: 64, heads: 4, vocab: 1000}}
tasks:
  - name: gsm8k
  - name: multihop-file
    options: {path: /nonexistent/subqa.jsonl}
n: [0, 100]
"""


def test_no_check_estimates_gpu_hours_from_hints(tmp_path, cache):
    from sftscale.plan.offline import DEFAULT_TEST_ITEMS, plan_offline

    cfg = parse_study(PAPERISH, tmp_path / "p.yaml")
    plan = plan_offline(cfg, "H100", None)
    assert plan.totals["cells"] == 3 * 2 * 2
    by = {(r["model"], r["task"], r["n"]): r for r in plan.rows}
    assert by[("l8", "gsm8k", 0)]["params"] == 8.03e9
    assert by[("mine", "gsm8k", 0)]["params"] == 3.0e9
    assert by[("shaped", "gsm8k", 0)]["params"] == 12 * 2 * 64 * 64 + 2 * 1000 * 64
    assert by[("l8", "gsm8k", 0)]["eval_items"] == 1319  # gsm8k builds locally
    assert by[("l8", "multihop-file", 0)]["eval_items"] == DEFAULT_TEST_ITEMS
    assert plan.totals["gpu_hours"] > 0
    assert any("GPU-hours" in n for n in plan.notes)
    assert any("1000 items assumed" in n for n in plan.notes)


def test_gpu_calibration_file(tmp_path):
    p = tmp_path / "g.json"
    src = Path(cal.__file__).with_name("gpu_calibration.json")
    shipped = json.loads(src.read_text())
    assert shipped["default"]["measured"] is False  # unmeasured defaults until a GPU session
    p.write_text(src.read_text())
    assert gpu_mfu("H100", "lora", p) == 0.35
    write_gpu_calibration("H100", mfu_lora=0.21, mfu_full=0.43, source="test", path=p)
    assert gpu_mfu("H100", "lora", p) == 0.21
    assert gpu_mfu("H100", "full", p) == 0.43
    assert gpu_mfu("A100", "lora", p) == 0.35
    assert json.loads(p.read_text())["gpus"]["H100"]["measured"] is True


def test_run_saves_plan_recalibrates_and_status_compares(tmp_path, cache):
    from study_helpers import RUNNER

    from sftscale.study.runner import run_study
    from sftscale.study.status import plan_vs_measured

    study = """\
name: cal
models:
  - {name: m1, ref: toy-S}
tasks:
  - {name: toy-math, limit: 4}
n: [0, 8, 32]
seeds: [3]
"""
    cfg = parse_study(study, tmp_path / "cal.yaml")
    res = run_study(cfg, out=tmp_path / "run", runner=RUNNER, progress=False)
    assert res.counts["done"] == 3
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert set(plan["rows"]) == {"m1__toy-math__n0", "m1__toy-math__n8__s3",
                                 "m1__toy-math__n32__s3"}
    assert plan["run_wall_s"] > 0
    files = list((cache / "calibration").rglob("*.json"))
    assert len(files) == 1
    run = json.loads(files[0].read_text())["sources"]["run"]
    assert run["cells"] == 3 and "toy-math" in run["eval_s_per_gen_token"]
    rows, tot = plan_vs_measured(tmp_path / "run")
    assert tot["compared"] == 3
    assert all(r["planned_s"] is not None and r["wall_s"] is not None for r in rows)
