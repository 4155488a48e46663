"""toy-instruct: pools, split by person, determinism, the corpus, and IFEval scoring
(gold answers, format errors, wrong facts, strict vs loose)."""

from __future__ import annotations

import random

import pytest

from sftscale.tasks import get_task
from sftscale.toyworld import instruct
from sftscale.toyworld.pieces import PIECE_RE, count_tokens, vocabulary_pieces
from sftscale.toyworld.world import CITIES, COMPANIES, World


@pytest.fixture(scope="module")
def task():
    return get_task("toy-instruct")


def test_pools_are_large_and_disjoint_by_person(task):
    world = World.generate(0)
    train, cands = task.train_items(), instruct.instruct_items(0)["test"]
    assert len(train) >= 2000 and len(cands) >= 2000
    assert {i.meta["person"] for i in train} <= {p.name for p in world.group("pool")}
    assert {i.meta["person"] for i in cands} <= {p.name for p in world.group("test")}
    assert not {i.meta["person"] for i in train} & {i.meta["person"] for i in cands}
    assert len({(i.question) for i in train}) == len(train)
    kinds = {k for i in train for k in i.meta["kinds"]}
    assert kinds == {*instruct.TASK_KINDS, "words"}
    for i in train:  # one style instruction, the word bound never alone
        assert len(set(i.meta["kinds"]) & set(instruct.TASK_KINDS)) == 1
        assert set(i.meta["kinds"]) - set(instruct.TASK_KINDS) <= {"words"}
    both = sum(len(i.meta["kinds"]) == 2 for i in train) / len(train)
    assert 0.4 < both < 0.6


def test_same_seed_same_items(task):
    a = [(i.id, i.question, i.completion) for i in task.test_items()[:40]]
    instruct.instruct_items.cache_clear()
    b = [(i.id, i.question, i.completion) for i in get_task("toy-instruct", limit=40).test_items()]
    assert a == b
    other = {i.question for i in instruct.instruct_items(1)["train"][:200]}
    assert other != {i.question for i in instruct.instruct_items(0)["train"][:200]}


def test_prompt_and_answer_fit_the_toy_models(task):
    items = task.test_items()[:300] + task.train_items()[:300]
    assert max(count_tokens(task.prompt_text(i)) + count_tokens(i.completion) for i in items) <= 120
    it = items[0]
    assert task.prompt_text(it) == f"Question: {it.question}\nResponse:\n"


def test_gold_answers_score_one(task):
    every = instruct.instruct_items(0)["train"] + instruct.instruct_items(0)["test"]
    for it in every:
        rec = task.score(it, it.completion)
        assert rec["correct"] and rec["format_ok"] and rec["fact_ok"], (it.question, it.completion)
    items = task.test_items()[:150]
    recs = [dict(id=i.id, **task.score(i, i.completion)) for i in items]
    agg = task.aggregate(recs)
    for k in ("accuracy", "format_rate", "prompt_level_strict_acc", "prompt_level_loose_acc",
              "inst_level_strict_acc", "inst_level_loose_acc", "fact_ok"):
        assert agg[k] == 1.0, k


def _with(task, *kinds, single_line=False):
    """A test item with these instructions (``single_line``: no postscript, whose extra line
    lets IFEval's loose check drop the broken line)."""
    return next(i for i in task.test_items() if set(kinds) <= set(i.meta["kinds"])
                and not (single_line and "ps" in i.meta["kinds"]))


def test_format_errors_score_zero_for_the_broken_instruction(task):
    # each corruption breaks every variant the loose check tries (first/last line dropped)
    cases = [
        (_with(task, "end"), lambda g: g.rstrip('"').rsplit(" ", 2)[0] + ('"' if g.endswith('"') else ""),
         "startend:end_checker"),
        (_with(task, "ps"), lambda g: g.replace("\nP.S.", " Also").replace("\np.s.", " also"),
         "detectable_content:postscript"),
        (_with(task, "keyword"), lambda g: " ".join(g.split(" ")[1:]), "keywords:existence"),
        (_with(task, "quote"), lambda g: g.replace('"', ""), "startend:quotation"),
        (_with(task, "words", single_line=True), lambda g: g + " and so on and so on and so on", "length_constraints:number_words"),
    ]
    for it, corrupt, iid in cases:
        resp = corrupt(it.completion)
        rec = task.score(it, resp)
        assert not rec["format_ok"] and not rec["correct"], (iid, resp)
        idx = it.target["instruction_id_list"].index(iid)
        assert rec["follow_instruction_list_loose"][idx] is False, (iid, resp)
        assert rec["fact_ok"] or iid == "keywords:existence", (iid, resp)


def test_wrong_fact_is_format_ok_but_not_correct(task):
    for it in task.test_items()[:40]:
        ans = it.target["answer"]
        pool = COMPANIES if it.target["relation"] == "works_for" else CITIES
        other = pool[(pool.index(ans) + 1) % len(pool)]
        resp = it.completion.replace(ans, other)
        rec = task.score(it, resp)
        assert rec["format_ok"] and not rec["fact_ok"] and not rec["correct"], resp
        both = task.score(it, it.completion.replace(ans, f"{ans} or {other}"))
        assert not both["fact_ok"] and not both["correct"]  # naming two candidates is not the fact


def test_loose_but_not_strict_is_format_ok_but_not_correct(task):
    it = _with(task, "quote")
    rec = task.score(it, "**" + it.completion)  # loose removes the asterisks, strict does not
    assert rec["prompt_level_loose"] and not rec["prompt_level_strict"]
    assert rec["format_ok"] and not rec["correct"]


def test_empty_response_is_neither(task):
    rec = task.score(task.test_items()[0], "")
    assert not rec["format_ok"] and not rec["correct"]


def test_corpus_documents_are_short_in_vocabulary_and_never_in_task_format():
    world = World.generate(0)
    docs = instruct.corpus_documents(world, random.Random(5), 1500)
    assert docs == instruct.corpus_documents(world, random.Random(5), 1500)
    vocab = vocabulary_pieces(instruct.vocabulary_texts())
    held = {p.name for p in world.heldout_people}
    for d in docs:
        assert 10 <= count_tokens(d) <= 120, d
        assert "Question:" not in d and "Response:" not in d
        assert not any(h in d or h.lower() in d for h in held)
        assert set(PIECE_RE.findall(d)) <= vocab, set(PIECE_RE.findall(d)) - vocab
    joined = "\n".join(docs)
    for phrase in ("P.S.", "That is all.", "in lowercase", " words"):
        assert phrase in joined
    task = get_task("toy-instruct", limit=200)
    for it in task.test_items() + task.train_items()[:500]:
        assert set(PIECE_RE.findall(task.prompt_text(it) + it.completion)) <= vocab
