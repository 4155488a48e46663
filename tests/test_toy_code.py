"""toy-code: pools, split, determinism, the corpus, and scoring in the sandbox (gold and corrupted)."""

from __future__ import annotations

import random

import pytest

from sftscale.tasks import get_task
from sftscale.toyworld import code
from sftscale.toyworld.pieces import PIECE_RE, count_tokens, vocabulary_pieces
from sftscale.toyworld.world import World


def _derivation(item):
    return item.meta["family"], tuple(item.meta["constants"])


def test_pools_are_large_disjoint_by_derivation_and_cover_every_family():
    task = get_task("toy-code")
    train, test = task.train_items(), task.test_items()
    assert len(train) >= 2000 and len(test) >= 2000
    assert not {_derivation(i) for i in train} & {_derivation(i) for i in test}
    assert not {i.id for i in train} & {i.id for i in test}
    assert {i.meta["family"] for i in train} == {f.key for f in code.FAMILIES}
    assert {i.meta["entry_point"] for i in [*train, *test]} == {code.ENTRY}  # one entry point: see code.ENTRY
    assert len({i.id for i in test}) == len(test)


def test_same_seed_same_items_other_seed_other_split():
    a = [(i.id, i.question, i.completion, i.target["test"]) for i in code.code_items(0)["test"][:50]]
    code.code_items.cache_clear()
    b = [(i.id, i.question, i.completion, i.target["test"]) for i in code.code_items(0)["test"][:50]]
    assert a == b
    assert {_derivation(i) for i in code.code_items(1)["test"]} != {_derivation(i) for i in code.code_items(0)["test"]}


def test_prompt_and_answer_fit_the_toy_models():
    task = get_task("toy-code")
    items = task.test_items()[:300] + task.train_items()[:300]
    assert max(count_tokens(task.prompt_text(i)) + count_tokens(i.completion) for i in items) <= 120
    it = items[0]
    assert task.prompt_text(it) == f"Task: {it.question}\nSolution:\n"
    assert it.completion.startswith("```python\ndef ") and it.completion.endswith("\n```")


def _mutant(fam, c):
    """The reference with its constant changed: must fail the hidden tests."""
    if fam.consts in ("k", "km"):
        return (c[0] + 1,) + c[1:]
    pool = {"company": code.COMPANIES, "city": code.CITIES, "country": code.COUNTRIES}[fam.consts]
    return (pool[(pool.index(c[0]) + 1) % len(pool)],)


def test_hidden_tests_pass_the_reference_and_reject_a_changed_constant():
    # In-process (trusted code only): every derivation's tests accept its reference and reject
    # the reference with the constant changed, so a test cannot be passed by a near miss.
    by_derivation = {}
    for it in code.code_items(0)["test"] + code.code_items(0)["train"]:
        by_derivation.setdefault(_derivation(it), it)
    for (key, c), it in by_derivation.items():
        fam = code.FAMILY[key]
        for consts, ok in ((c, True), (_mutant(fam, c), False)):
            src = it.target["preamble"] + code.render_code(fam, consts, "f")
            g: dict = {}
            exec(src + "\n" + it.target["test"], g)
            try:
                g["check"](g["f"])
                passed = True
            except AssertionError:
                passed = False
            assert passed is ok, (key, c, consts)


@pytest.fixture(scope="module")
def task():
    return get_task("toy-code", workers=2, timeout_s=2.0)


def test_gold_answers_score_one(task):
    # two test items of every family, through the real sandbox
    items, seen = [], {}
    for it in task.test_items():
        if seen.get(it.meta["family"], 0) < 2:
            seen[it.meta["family"]] = seen.get(it.meta["family"], 0) + 1
            items.append(it)
    recs = task.score_many(items, [it.completion for it in items])
    assert len(items) == 2 * len(code.FAMILIES)
    assert all(r["format_ok"] and r["correct"] and r["status_base"] == "pass" for r in recs), \
        [r for r in recs if not r["correct"]][:2]
    agg = task.aggregate(recs)
    assert agg["accuracy"] == 1.0 and agg["format_rate"] == 1.0 and agg["pass@1_base"] == 1.0


def _item(task, family):
    return next(it for it in task.test_items() if it.meta["family"] == family)


def test_format_errors_score_zero_without_running(task):
    it = _item(task, "add")
    ep = it.meta["entry_point"]
    body = it.completion.removeprefix("```python\n").removesuffix("\n```")
    cases = {
        "bare code, no fence": body,
        "syntax error": f"```python\ndef {ep}(x)\n    return x +\n```",
        "other name": it.completion.replace(f"def {ep}(", "def other("),
        "prose": "The answer is seven.",
    }
    recs = task.score_many([it] * len(cases), list(cases.values()))
    for (why, _), r in zip(cases.items(), recs):
        assert not r["format_ok"] and not r["correct"], why
        assert r["status_base"] in ("no_code", "error"), why
    assert recs[0]["info"] == "no fenced code block"
    assert recs[1]["info"] == "syntax error"


def test_failing_code_is_format_ok_but_not_correct(task):
    items = [_item(task, "affine"), _item(task, "worksat"), _item(task, "countequal")]
    wrong = [items[0].completion.replace("return", "return 1 +"),
             items[1].completion.replace("employer(name)", "birthplace(name)"),
             items[2].completion.replace("n = n + 1", "n = n + 2")]
    slow = items[0].completion.replace("return", "while True:\n        pass\n    return")
    recs = task.score_many(items + [items[0]], wrong + [slow])
    for r in recs[:3]:
        assert r["format_ok"] and not r["correct"] and r["status_base"] == "fail", r
    assert recs[3]["format_ok"] and not recs[3]["correct"] and recs[3]["status_base"] in ("timeout", "fail")


def test_record_helpers_come_from_the_hidden_preamble(task):
    it = _item(task, "livesincountry")
    assert "def country(city)" in it.target["preamble"] and "country" not in task.prompt_text(it).split("(")[0]
    rec = task.score(it, it.completion)
    assert rec["correct"]


def test_corpus_documents_are_short_in_vocabulary_and_never_in_task_format():
    world = World.generate(0)
    docs = code.corpus_documents(world, random.Random(3), 1500)
    assert docs == code.corpus_documents(world, random.Random(3), 1500)
    vocab = vocabulary_pieces(code.vocabulary_texts())
    held = {p.name for p in world.heldout_people}
    for d in docs:
        assert 10 <= count_tokens(d) <= 120, d
        assert "```" not in d and "Task:" not in d and "Solution:" not in d
        assert not any(h in d for h in held)
        assert set(PIECE_RE.findall(d)) <= vocab, set(PIECE_RE.findall(d)) - vocab
        assert "_" not in d
    kinds = {"def": sum(d.startswith("def ") for d in docs), "table": sum("] = " in d for d in docs)}
    assert kinds["def"] > 1000 and kinds["table"] > 50
    # the task's pieces are in the vocabulary too
    task = get_task("toy-code", limit=200)
    for it in task.test_items():
        assert set(PIECE_RE.findall(task.prompt_text(it) + it.completion)) <= vocab
