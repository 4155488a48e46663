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
