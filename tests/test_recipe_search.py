"""Recipe search (study/search.py): the choice is made on training-pool items only, picks the
best validation score, resumes per candidate, and shows in the store, status, export and report.

Fake stages (files only, milliseconds) for the choice, the resume and the tables; one real cell
on toy-S (two candidates, two optimizer steps each) for the real train/validate path with a
task whose ``test_items`` raise.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sftscale.config import parse_study
from sftscale.grid.cells import expand_cells
from sftscale.io import InputError, atomic_write_json, atomic_write_jsonl
from sftscale.rundir.stagespec import StageContext
from sftscale.study.runner import CellRunner, run_study
from sftscale.study.search import choose, validation_ids
from sftscale.study.stages import with_runs
from sftscale.train import recipe_with

# the validation score a fake candidate gets, by lr: 3e-4 is the best
SCORES = {1e-4: 0.25, 3e-4: 0.75, 1e-3: 0.5}

STUDY = """\
name: search
models:
  - {name: m, ref: toy-S}
tasks:
  - {name: toy-math, limit: 4}
n: [0, 16]
seeds: [0, 1]
recipe_search:
  lr: [1.0e-4, 3.0e-4, 1.0e-3]
  validation: {n: 8, seed: 5}
"""


def _log(run_dir: Path, rec: dict) -> None:
    with open(run_dir / "calls.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")


def _calls(run_dir: Path) -> list[dict]:
    p = run_dir / "calls.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def fake_train(cell, ctx: StageContext) -> None:
    lr = cell.recipe.get("lr")
    flag = ctx.run_dir / "CRASH_AT"
    if flag.exists() and lr == float(flag.read_text()):
        flag.unlink()
        raise RuntimeError("deliberate crash in the middle of the search")
    _log(ctx.run_dir, {"stage": "train", "cell": cell.key, "lr": lr})
    (ctx.out / "ckpt").mkdir()
    (ctx.out / "ckpt" / "w.bin").write_bytes(repr(lr).encode())
    atomic_write_json(ctx.out / "train_meta.json", {"n": cell.n, "seed": cell.seed, "lr": lr,
                                                    "complete": True, "final_loss": 1.0})


def fake_eval(cell, ctx: StageContext) -> None:
    """Validation (ctx.validation set): the known score of the candidate's lr. Test: 1.0."""
    meta = json.loads((ctx.train_dir / "train_meta.json").read_text()) if cell.n else {}
    lr = meta.get("lr")
    if ctx.validation is not None:
        ids, score = list(ctx.validation), SCORES[lr]
    else:
        ids, score = [f"toy-math/test/{i}" for i in range(cell.limit)], 1.0
    _log(ctx.run_dir, {"stage": "val" if ctx.validation is not None else "test",
                       "cell": cell.key, "lr": lr, "ids": ids})
    rows = [{"id": i, "response": "x", "correct": k < score * len(ids), "format_ok": True}
            for k, i in enumerate(ids)]
    atomic_write_jsonl(ctx.out / "samples_toy-math_t.jsonl", rows)
    atomic_write_json(ctx.out / "results_t.json", {"results": {"toy-math": {
        "accuracy,none": sum(r["correct"] for r in rows) / len(rows), "format_rate,none": 1.0}}})


FAKE = CellRunner(stages=with_runs(train=fake_train, eval=fake_eval))


@pytest.fixture
def no_test_items(monkeypatch):
    """The toy tasks' test_items raise: whatever reads them fails the cell."""
    from sftscale.toyworld import tasks as toytasks

    def boom(self):
        raise AssertionError("the test items were read")
    for cls in vars(toytasks).values():
        if isinstance(cls, type) and "test_items" in vars(cls):
            monkeypatch.setattr(cls, "test_items", boom)


def test_picks_the_best_validation_score_on_training_items_only(tmp_path, no_test_items):
    cfg = parse_study(STUDY)
    res = run_study(cfg, out=tmp_path, runner=FAKE, progress=False, check=False)
    assert res.counts["done"] == 3 and not res.failed
    from sftscale.tasks import get_task

    pool = [it.id for it in get_task("toy-math").train_items()]
    calls = _calls(tmp_path)
    for seed in (0, 1):
        key = f"m__toy-math__n16__s{seed}"
        # toy-S's recipe stops early on validation items of its own, so the search's split
        # also avoids those and the subset drawn around them (the candidates' recipes)
        recipes = [recipe_with("toy-S", {"lr": lr}) for lr in SCORES]
        subset, val = validation_ids(pool, 16, seed, expand_cells(cfg)[1].search, recipes)
        from sftscale.train.examples import split_pool
        es_sub, es_val = split_pool(pool, 16, seed, recipes[0].val_items)
        assert subset == es_sub and not set(val) & set(es_val)  # what the train stage uses
        vals = [c for c in calls if c["cell"] == key and c["stage"] == "val"]
        assert sorted(c["lr"] for c in vals) == sorted(SCORES)
        for c in vals:  # validation: 8 training-pool items, none in the subset
            assert c["ids"] == val and len(val) == 8
            assert all(i.startswith("toy-math/train/") for i in val) and not set(val) & set(subset)
        test = [c for c in calls if c["cell"] == key and c["stage"] == "test"]
        assert [c["lr"] for c in test] == [3e-4]  # only the chosen checkpoint meets the test set
        meta = json.loads((tmp_path / "cells" / key / "train" / "train_meta.json").read_text())
        s = meta["recipe_search"]
        assert meta["lr"] == 3e-4 and s["chosen"] == {"lr": 3e-4}
        assert {c["values"]["lr"]: c["metrics"]["accuracy"] for c in s["candidates"]} == SCORES
        assert s["validation"]["n"] == 8 and s["validation"]["seed"] == 5
        # only the chosen candidate keeps its checkpoint
        kept = sorted(p.parent.parent.name for p in (tmp_path / "cells" / key / "search").glob("*/train/ckpt"))
        assert kept == ["lr=0.0003"]


def test_status_export_and_report_show_the_choice(tmp_path):
    from sftscale.report.html import _search_table
    from sftscale.rundir.export import load_tables
    from sftscale.study.status import status_rows

    run_study(parse_study(STUDY), out=tmp_path, runner=FAKE, progress=False, check=False)
    rows, _ = status_rows(tmp_path)
    by_n = {(r["n"], r["seed"]): r for r in rows}
    assert by_n[(0, 0)]["search"] is None
    assert by_n[(16, 1)]["search"]["chosen"] == {"lr": 3e-4}
    assert [c["score"] for c in by_n[(16, 1)]["search"]["candidates"]] == [0.25, 0.75, 0.5]
    metrics, _ = load_tables(tmp_path)
    acc = metrics[metrics.metric == "accuracy"].set_index(["n", "seed"])
    assert acc.loc[(16, 0), "search_lr"] == 3e-4 and acc.loc[(16, 0), "search_val"] == 0.75
    assert math.isnan(acc.loc[(0, 0), "search_lr"])
    assert len(json.loads(acc.loc[(16, 1), "search_candidates"])) == 3
    html = _search_table(metrics)
    assert "Recipe search" in html and "lr=0.0003 (s0)" in html and "lr=0.0001: 0.25" in html


def test_a_choice_at_the_edge_of_the_grid_is_flagged_in_status_export_and_report(tmp_path):
    """3e-4 is the best score; a grid that starts there has not bracketed its optimum."""
    from sftscale.grid.searchspec import describe_choice, grid_edges
    from sftscale.report.html import _search_table
    from sftscale.rundir.export import load_tables
    from sftscale.study.status import status_rows

    assert grid_edges({"lr": [3e-4, 1e-3, 3e-3]}, {"lr": 3e-4}) == {"lr": "low"}
    assert grid_edges({"lr": [1e-4, 3e-4, 1e-3]}, {"lr": 3e-4}) == {}
    assert grid_edges({"lr": [1e-4, 3e-4]}, {"lr": 3e-4}) == {}  # two values: always an edge
    cfg = parse_study(STUDY.replace("lr: [1.0e-4, 3.0e-4, 1.0e-3]", "lr: [3.0e-4, 1.0e-3, 1.0e-4]")
                      .replace("seeds: [0, 1]", "seeds: [0]"))
    run_study(cfg, out=tmp_path / "inside", runner=FAKE, progress=False, check=False)
    rows, _ = status_rows(tmp_path / "inside")
    search = next(r["search"] for r in rows if r["n"] == 16)
    assert search["edges"] == {} and "in the grid" not in describe_choice(json.dumps(search))
    edge = parse_study(STUDY.replace("lr: [1.0e-4, 3.0e-4, 1.0e-3]", "lr: [3.0e-4, 1.0e-3, 3.0e-3]")
                       .replace("seeds: [0, 1]", "seeds: [0]"))
    SCORES[3e-3] = 0.1
    try:
        run_study(edge, out=tmp_path / "edge", runner=FAKE, progress=False, check=False)
    finally:
        del SCORES[3e-3]
    rows, _ = status_rows(tmp_path / "edge")
    search = next(r["search"] for r in rows if r["n"] == 16)
    assert search["edges"] == {"lr": "low"}
    assert describe_choice(json.dumps(search)).endswith("; lowest lr in the grid)")
    metrics, _ = load_tables(tmp_path / "edge")
    acc = metrics[(metrics.metric == "accuracy") & (metrics.n == 16)]
    assert list(acc["search_edges"]) == ["lr=low"]
    assert "⚠ lr lowest in the grid" in _search_table(metrics)
    metrics, _ = load_tables(tmp_path / "inside")
    assert "⚠" not in _search_table(metrics).split("</p>", 1)[1]


def test_a_crash_mid_search_resumes_without_retraining_finished_candidates(tmp_path):
    cfg = parse_study(STUDY.replace("seeds: [0, 1]", "seeds: [0]"))
    (tmp_path / "CRASH_AT").write_text(repr(1e-3))  # the third candidate fails once
    first = run_study(cfg, out=tmp_path, runner=FAKE, progress=False, check=False)
    assert first.failed == ["m__toy-math__n16__s0"]
    second = run_study(cfg, out=tmp_path, runner=FAKE, progress=False, check=False,
                       retry_failed=True)
    assert not second.failed
    trained = [c["lr"] for c in _calls(tmp_path) if c["stage"] == "train" and c["cell"].endswith("s0")]
    assert trained == [1e-4, 3e-4, 1e-3]  # each candidate trained once


def test_the_search_is_part_of_the_cell_spec():
    with_search = {c.key: c for c in expand_cells(parse_study(STUDY))}
    plain = {c.key: c for c in expand_cells(parse_study(STUDY.split("recipe_search")[0]))}
    assert with_search["m__toy-math__n0"].spec_hash == plain["m__toy-math__n0"].spec_hash
    assert with_search["m__toy-math__n16__s0"].spec_hash != plain["m__toy-math__n16__s0"].spec_hash
    other = STUDY.replace("seed: 5", "seed: 6")
    assert ({c.key: c for c in expand_cells(parse_study(other))}["m__toy-math__n16__s0"].spec_hash
            != with_search["m__toy-math__n16__s0"].spec_hash)


def test_choose_breaks_ties_by_validation_loss_then_grid_order():
    recs = [{"metrics": {"accuracy": 0.5}, "val_loss": 2.0},
            {"metrics": {"accuracy": 0.5}, "val_loss": 1.0},
            {"metrics": {"accuracy": float("nan")}, "val_loss": 0.1},
            {"metrics": {"accuracy": 0.5}, "val_loss": 1.0}]
    assert choose(recs, "accuracy") == 1
    assert choose([{"metrics": {"accuracy": 0.0}}, {"metrics": {"accuracy": 0.0}}], "accuracy") == 0


@pytest.mark.parametrize("extra, field", [
    ("recipe_search:\n  lr: []\n", "recipe_search.lr"),
    ("recipe_search:\n  lr: [1, 1]\n", "recipe_search.lr"),
    ("recipe_search:\n  validation: {n: 8}\n", "recipe_search"),
])
def test_bad_search_configs_are_input_errors(extra, field):
    base = STUDY.split("recipe_search")[0]
    with pytest.raises(InputError) as e:
        parse_study(base + extra)
    assert e.value.field == field and e.value.line is not None


def test_no_room_for_the_validation_split_is_an_input_error():
    cfg = parse_study(STUDY.replace("n: 8", "n: 100"))
    with pytest.raises(InputError) as e:
        expand_cells(cfg, {"toy-math": 110})
    assert e.value.field == "recipe_search.validation.n"


def test_plan_rejects_an_invalid_candidate():
    from sftscale.plan.check import check_study

    with pytest.raises(InputError, match="recipe_search"):
        check_study(parse_study(STUDY.replace("1.0e-4,", "-1.0,")))


@pytest.mark.usefixtures("one_torch_thread")
def test_real_search_on_toy_s_never_reads_test_items(tmp_path, monkeypatch):
    """Real train and eval stages (two candidates, two steps each) with test_items raising."""
    from sftscale.study.search import run_search

    cfg = parse_study(STUDY.replace("limit: 4", "limit: 4, max_new_tokens: 16").replace(
        "[1.0e-4, 3.0e-4, 1.0e-3]", "[1.0e-5, 3.0e-3]").replace("n: 8,", "n: 4,")
        + "recipe: {max_steps: 2, batch_size: 4}\n")
    cell = expand_cells(cfg)[1]
    cdir = tmp_path / "cells" / cell.key
    cdir.mkdir(parents=True)
    ctx = StageContext(run_dir=tmp_path, cell_dir=cdir, out=cdir / "train.tmp",
                       train_dir=cdir / "train", cache_dir=tmp_path / "cache",
                       share_generator=False)
    ctx.out.mkdir()
    from sftscale.tasks import get_task
    from sftscale.toyworld import tasks as toytasks

    def boom(self):
        raise AssertionError("the test items were read")
    with monkeypatch.context() as mp:
        for cls in vars(toytasks).values():
            if isinstance(cls, type) and "test_items" in vars(cls):
                mp.setattr(cls, "test_items", boom)
        with pytest.raises(AssertionError, match="test items were read"):
            get_task("toy-math").test_items()  # the instrument works
        run_search(CellRunner(share_generator=False), cell, ctx)
    meta = json.loads((ctx.out / "train_meta.json").read_text())
    s = meta["recipe_search"]
    recs = s["candidates"]
    assert [r["values"]["lr"] for r in recs] == [1e-5, 3e-3]
    assert recs[0]["val_loss"] != recs[1]["val_loss"]  # the lrs trained different weights
    assert all(r["val_loss"] is not None and r["val_loss"] > 0 for r in recs)
    assert s["chosen"] == recs[choose(recs, "accuracy")]["values"]
    assert meta["recipe"]["lr"] == s["chosen"]["lr"]  # the cell's checkpoint is the chosen one's
    test_ids = {it.id for it in get_task("toy-math").test_items()}
    for r in recs:
        samples = (cdir / "search" / r["id"] / "val").glob("samples_*.jsonl")
        ids = [json.loads(x)["id"] for p in samples for x in p.read_text().splitlines()]
        assert len(ids) == 4 and not set(ids) & test_ids
        assert not set(ids) & set(meta["subset_ids"])
