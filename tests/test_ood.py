"""Out-of-distribution twins of the toy tasks, and evaluation of a study's cells on other tasks.

The absence proofs: no item of the in-distribution task's training pool has its twin's OOD
property (docs/toy-models.md, "Out-of-distribution twins")."""

from __future__ import annotations

import pytest

from sftscale.tasks import get_task

TWINS = {"toy-math": "toy-math-ood", "toy-multihop": "toy-multihop-ood",
         "toy-code": "toy-code-ood", "toy-instruct": "toy-instruct-ood"}


@pytest.mark.parametrize("task,twin", sorted(TWINS.items()))
def test_an_ood_twin_has_its_task_format_deterministic_items_and_no_training_pool(task, twin):
    t, o = get_task(task), get_task(twin)
    items = o.test_items()
    assert len(items) >= 200
    assert [i.id for i in items] == [i.id for i in get_task(twin).test_items()]  # deterministic
    assert not o.has_train()
    with pytest.raises(NotImplementedError, match=f"finetune on '{task}'"):
        o.train_items()
    # the same prompt frame as the task: everything before the question is shared
    ti = t.test_items()[0]
    oi = items[0]
    assert t.prompt_text(ti).replace(ti.question, "{q}") == o.prompt_text(oi).replace(oi.question, "{q}")
    # every gold completion is scored right by the task's own scorer (format can transfer)
    recs = o.score_many(items[:40], [i.completion for i in items[:40]])
    assert all(r["format_ok"] and r["correct"] for r in recs)
    assert not {i.id for i in items} & {i.id for i in t.train_items()}


def test_no_toy_math_training_item_has_four_steps():
    from sftscale.toyworld.arith import OOD_STEPS

    pool = get_task("toy-math").train_items()
    assert max(i.meta["steps"] for i in pool) == OOD_STEPS - 1
    assert all(i.completion.count(" = ") < OOD_STEPS for i in pool)
    assert all(i.meta["steps"] == OOD_STEPS for i in get_task("toy-math-ood").test_items())
    assert all(i.completion.count(" = ") == OOD_STEPS for i in get_task("toy-math-ood").test_items())


def test_no_toy_multihop_training_item_composes_a_capital():
    pool = get_task("toy-multihop").train_items()
    assert len(pool) >= 10_000
    assert not any("capital" in (i.question + i.completion) for i in pool)
    assert all(i.completion.count(". ") == 1 for i in pool)  # two hop sentences, never three
    ood = get_task("toy-multihop-ood").test_items()
    assert all("capital" in i.question and i.completion.count(". ") == 2 for i in ood)
    pool_people = {i.meta["person"] for i in pool}
    assert not pool_people & {i.meta["person"] for i in ood}  # and the toy-multihop test people


def test_no_toy_code_training_item_combines_the_operations_of_an_ood_family():
    from sftscale.toyworld.code import OOD_FAMILIES, op_signature

    pool = get_task("toy-code").train_items()
    seen = {op_signature(i.completion.split("```python\n")[1].split("```")[0]) for i in pool}
    ood = get_task("toy-code-ood").test_items()
    sigs = {op_signature(i.completion.split("```python\n")[1].split("```")[0]) for i in ood}
    assert len(sigs) == len(OOD_FAMILIES)
    assert not sigs & seen, sigs & seen
    assert all(len(s) >= 2 for s in sigs)


def test_no_toy_instruct_training_item_has_two_style_instructions():
    from sftscale.toyworld.instruct import style_kinds

    pool = get_task("toy-instruct").train_items()
    assert max(len(style_kinds(i)) for i in pool) == 1
    ood = get_task("toy-instruct-ood").test_items()
    assert all(len(style_kinds(i)) == 2 for i in ood)
    pool_people = {i.meta["person"] for i in pool}
    assert not pool_people & {i.meta["person"] for i in ood}


# --- eval_tasks: the xeval stage in a tiny real study ---------------------------------------

STUDY_YAML = """\
name: xeval
models:
  - {{name: toy-S, ref: toy-S}}
tasks:
  - name: toy-math
{eval_tasks}n: [0, 16]
seeds: [0]
recipe: {{max_steps: 3, min_steps: 3, early_stopping: false}}
evaluation: {{limit: 8}}
executor: {{workers: 1}}
"""


def _study(tmp_path, eval_tasks: str):
    from sftscale.config import load_study

    p = tmp_path / "study.yaml"
    p.write_text(STUDY_YAML.format(eval_tasks=eval_tasks))
    return p, load_study(p)


def _evaluated_files(run_dir):
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.glob("cells/*/xeval/*/results_*.json"))


def test_eval_tasks_evaluate_every_cell_export_the_pair_resume_and_add_only_what_is_missing(tmp_path):
    import pandas as pd

    from sftscale.rundir.export import load_tables
    from sftscale.study.runner import run_study

    run_dir = tmp_path / "run"
    _, cfg = _study(tmp_path, "")  # first without eval tasks: no xeval stage, no column
    assert run_study(cfg, out=run_dir, progress=False).counts["done"] == 2
    assert "eval_task" not in load_tables(run_dir)[0].columns
    assert not list(run_dir.glob("cells/*/xeval"))
    train_meta = run_dir / "cells/toy-S__toy-math__n16__s0/train/train_meta.json"
    t_train = train_meta.stat().st_mtime_ns
    _, cfg = _study(tmp_path, "    eval_tasks: [toy-math-ood]\n")
    res = run_study(cfg, out=run_dir, progress=False)
    assert res.counts["done"] == 2 and not res.failed and res.ran == 2
    assert train_meta.stat().st_mtime_ns == t_train  # the finished cells were not retrained
    first = _evaluated_files(run_dir)
    assert len(first) == 2 and all("/toy-math-ood/" in f for f in first)
    metrics, items = load_tables(run_dir)
    assert set(metrics["eval_task"]) == {"toy-math", "toy-math-ood"}
    pair = metrics[(metrics.task == "toy-math→toy-math-ood") & (metrics.metric == "accuracy")]
    assert sorted(pair.n) == [0, 16] and set(pair.n_items) == {8}
    own = metrics[(metrics.task == "toy-math") & (metrics.metric == "accuracy")]
    assert set(own.eval_task) == {"toy-math"}
    cross_items = items[items.eval_task == "toy-math-ood"]
    assert len(cross_items) == 16 and set(cross_items.task) == {"toy-math→toy-math-ood"}
    assert cross_items.item_id.str.startswith("toy-math-ood/test/").all()
    # the accuracy row is the mean of its items
    for n, grp in cross_items.groupby("n"):
        acc = pair[pair.n == n].value.item()
        assert acc == pytest.approx(grp.correct.astype(float).mean())
    csv = pd.read_csv(run_dir / "export.csv")
    assert "eval_task" in csv.columns and "toy-math→toy-math-ood" in set(csv.task)

    # resume: nothing to do
    res = run_study(cfg, out=run_dir, progress=False)
    assert res.ran == 0
    # add an eval task: only it is evaluated, the first one's files are kept as they were
    stamps = {f: (run_dir / f).stat().st_mtime_ns for f in first}
    _, cfg = _study(tmp_path, "    eval_tasks: [toy-math-ood, {name: toy-multihop-ood, limit: 4}]\n")
    res = run_study(cfg, out=run_dir, progress=False)
    assert res.ran == 2 and not res.failed
    assert {f: (run_dir / f).stat().st_mtime_ns for f in first} == stamps
    assert train_meta.stat().st_mtime_ns == t_train
    after = _evaluated_files(run_dir)
    assert len(after) == 4 and sum("/toy-multihop-ood/" in f for f in after) == 2
    metrics, _ = load_tables(run_dir)
    mh = metrics[(metrics.task == "toy-math→toy-multihop-ood") & (metrics.metric == "accuracy")]
    assert sorted(mh.n) == [0, 16] and set(mh.n_items) == {4}
    assert run_study(cfg, out=run_dir, progress=False).ran == 0


def test_an_unknown_eval_task_is_an_input_error_at_its_line(tmp_path):
    from cli import run

    p, _ = _study(tmp_path, "    eval_tasks: [toy-math-ood, toy-mathh-ood]\n")
    r = run("plan", str(p), "--no-check")
    assert r.exit_code == 2, r.output
    assert "study.yaml" in r.output and "line 6" in r.output
    assert "toy-mathh-ood" in r.output and "eval_tasks" in r.output


def test_the_report_shows_the_transfer_table_side_by_side_curves_and_sentences(tmp_path):
    from sftscale.report import write_report
    from sftscale.study.runner import run_study

    run_dir = tmp_path / "run"
    _, cfg = _study(tmp_path, "    eval_tasks: [toy-math-ood]\n")
    assert run_study(cfg, out=run_dir, progress=False).counts["done"] == 2
    write_report(run_dir)
    html = (run_dir / "report" / "report.html").read_text(encoding="utf-8")
    assert "Does it generalise?" in html and (run_dir / "report" / "transfer_vs_n.png").is_file()
    assert "toy-math-ood" in html and "gain [95% interval]" in html
    assert "trained on toy-math: in distribution accuracy went from" in html


def test_the_transfer_interval_is_not_empty_at_zero_and_stays_within_one():
    from sftscale.report.transfer import _gain

    d, lo, hi = _gain(0.0, 30, 0.0, 30)
    assert d == 0 and lo < 0 < hi
    d, lo, hi = _gain(0.0, 60, 1.0, 60)
    assert d == 1 and 0.8 < lo < hi <= 1.0


@pytest.mark.parametrize("twin", sorted(TWINS.values()))
def test_no_two_twin_prompts_differ_only_in_words_the_models_cannot_tell_apart(twin):
    """As for the toy tasks (tests/test_toyworld.py): a twin's shift must be in words the
    shipped models can tell apart, or it would measure the tokenizer, not the skill."""
    from sftscale.toyworld import TOY_MODELS, toy_model_path
    from sftscale.toyworld.probe import indistinct_pairs

    task = get_task(twin)
    prompts = [task.prompt_text(it) for it in task.test_items()]
    assert indistinct_pairs(prompts, [toy_model_path(m) for m in TOY_MODELS]) == {}
