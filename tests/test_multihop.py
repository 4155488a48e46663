"""Multi-hop QA: normalisation, em/f1/contains, FanOutQA, user files."""

from __future__ import annotations

import json

import pytest

from sftscale.io import InputError
from sftscale.tasks.multihop import (
    FanOutQA,
    MultihopFile,
    answer_parts,
    extract_answer,
    f1_score,
    flatten_answer,
    normalize_answer,
    score_answer,
)


@pytest.mark.parametrize("raw,norm", [
    ("The Eiffel Tower!", "eiffel tower"),
    ("  a   cat,  an apple ", "cat apple"),
    ("Theatre", "theatre"),                 # 'the' only as a whole word
    ("U.S.A.", "usa"),
    ("Barack  Obama\n", "barack obama"),
])
def test_normalize_answer(raw, norm):
    assert normalize_answer(raw) == norm


def test_f1_examples():
    assert f1_score("New York City", "New York") == pytest.approx(0.8)
    assert f1_score("the cat sat", "a cat") == pytest.approx(2 / 3)
    assert f1_score("Paris", "London") == 0.0
    assert f1_score("yes", "no") == 0.0 and f1_score("yes it is", "yes") == 0.0  # HotpotQA rule
    assert f1_score("no", "no") == 1.0
    assert f1_score("", "") == 1.0 and f1_score("the", "Paris") == 0.0


def test_extract_answer():
    assert extract_answer("Sub-question: x\nSub-answer: y\nAnswer: Paris\n") == ("Paris", True)
    assert extract_answer("answer:  Paris") == ("Paris", True)
    assert extract_answer("Final Answer: 12") == ("12", True)
    assert extract_answer("Answer: A\nAnswer: B") == ("A", True)   # first Answer line
    assert extract_answer("Answer:\nI think Rome") == ("I think Rome", False)
    assert extract_answer("The answer: Rome") == ("The answer: Rome", False)  # must start a line
    assert extract_answer("") == ("", False)


def test_score_answer():
    r = score_answer("Sub-answer: France\nAnswer: The Paris.", ["Paris", "City of Light"])
    assert r["em"] and r["correct"] and r["format_ok"] and r["f1"] == 1.0 and r["contains"]
    assert r["extracted"] == "The Paris."
    r = score_answer("It is in Paris, France", "paris")           # no Answer line: last line
    assert not r["format_ok"] and not r["em"] and r["f1"] == pytest.approx(1 / 3) and r["contains"]
    assert r["extracted"] is None
    r = score_answer("Answer: 10", ["1"])                          # word boundaries for contains
    assert not r["contains"] and not r["em"]
    # an article-only gold: plain SQuAD would turn "A" into "" and let "The" match it
    assert score_answer("Answer: A", "a")["em"] and not score_answer("Answer: The", "A")["em"]
    assert score_answer("Answer: vitamin A", "A")["contains"]
    assert not score_answer("Answer: vitamin B", "A")["contains"]
    r = score_answer("Answer: London\nbut maybe Paris", ["Paris"])
    assert not r["em"] and r["f1"] == 0.0 and r["contains"]


def test_flatten_fanoutqa_answers():
    assert flatten_answer({"A": 1, "B": True}) == "A - 1, B - yes"
    assert flatten_answer(["x", 2.0, 2.5]) == "x, 2, 2.5"
    assert answer_parts({"K": "x", "B": ""}) == ["K", "x", "B"]   # empty parts dropped
    assert answer_parts({"A": "x"}) == ["A", "x"]   # article-only answers are kept
    assert answer_parts([["x", "y"], "z"]) == ["x", "y", "z"]


@pytest.fixture(scope="module")
def fanout() -> FanOutQA:
    return FanOutQA()


def test_fanoutqa_items_keep_decomposition(fanout):
    items = fanout.test_items()
    assert len(items) == 310 and len({it.id for it in items}) == 310
    first = items[0]
    assert first.id == "fanoutqa/7dcbbbdc7f1120cd"
    subs = first.meta["sub_questions"]
    assert len(subs) == 6 and subs[1]["answer"] == "Right"
    assert subs[0]["answer"].startswith("Pat Burrell, Mark Mulder")
    assert subs[1]["depends_on"] == [subs[0]["id"]]
    assert first.target == ["Pat Burrell - Right, Mark Mulder - Left, Corey Patterson - Left, "
                            "Jeff Austin - Right, JD Drew - Left"]
    assert sum(bool(it.meta["sub_questions"]) for it in items) > 300
    assert fanout.prompt_text(first) == f"Question: {first.question}\n"
    assert not fanout.has_train()


def test_fanoutqa_scoring(fanout):
    items = fanout.test_items()
    gold = fanout.aggregate(fanout.score_many(items, ["Answer: " + it.target[0] for it in items]))
    assert gold["accuracy"] == 1.0 and gold["loose_accuracy"] == 1.0 and gold["all_found_rate"] == 1.0
    first = items[0]
    r = fanout.score(first, "Answer: Pat Burrell bats right, Mark Mulder left")
    # 10 parts (5 names, 5 hands); "right" and "left" each match every such value, as in
    # the official scorer: Burrell, Right x2, Mulder, Left x3 -> 7/10
    assert r["loose"] == pytest.approx(7 / 10) and not r["all_found"] and not r["correct"]
    empty = fanout.aggregate(fanout.score_many(items, [""] * len(items)))
    assert empty["loose_accuracy"] == 0.0 and empty["format_rate"] == 0.0


def test_fanoutqa_train_split_and_chain():
    t = FanOutQA(n_train=100, chain=True)
    train, test = t.train_items(), t.test_items()
    assert len(train) == 100 and len(test) == 210
    assert not {it.id for it in train} & {it.id for it in test}
    assert [it.id for it in FanOutQA(n_train=100).train_items()] == [it.id for it in train]  # fixed
    c = train[0].completion
    assert c.startswith("Sub-question: ") and "\nSub-answer: " in c
    assert extract_answer(c) == (train[0].target[0], True)
    assert t.gen.max_new_tokens >= 256


def _write(p, rows):
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(p)


def test_multihop_file(tmp_path):
    path = _write(tmp_path / "qa.jsonl", [
        {"question": "Where was the author of X born?", "answer": "Paris",
         "sub_questions": [{"question": "Who wrote X?", "answer": "Ann"},
                           {"question": "Where was Ann born?", "answer": "Paris"}], "split": "train"},
        {"_id": "h1", "question": "Q2?", "answer": ["NYC", "New York City"],
         "context": [["New York", ["New York is big.", " It has 8M people."]], "Plain paragraph."]},
        {"question": "Q3?", "answer": 1998},
    ])
    t = MultihopFile(path=path, chain=True)
    train, test = t.train_items(), t.test_items()
    assert [it.id for it in train] == ["multihop/qa/0"]
    assert [it.id for it in test] == ["h1", "multihop/qa/2"]
    assert train[0].completion == ("Sub-question: Who wrote X?\nSub-answer: Ann\n"
                                   "Sub-question: Where was Ann born?\nSub-answer: Paris\nAnswer: Paris")
    assert t.prompt_text(test[0]) == ("Context:\nNew York: New York is big. It has 8M people.\n"
                                      "Plain paragraph.\n\nQuestion: Q2?\n")
    assert MultihopFile(path=path, use_context=False).prompt_text(test[0]) == "Question: Q2?\n"
    assert t.score(test[0], "Answer: new york city")["em"]
    assert test[1].target == ["1998"] and t.score(test[1], "Answer: 1998")["correct"]
    assert MultihopFile(path=path, chain=False).train_items()[0].completion == "Answer: Paris"


@pytest.mark.parametrize("row,line,field", [
    ({"answer": "x"}, 2, "question"),
    ({"question": "q"}, 2, "answer"),
    ({"question": "q", "answer": []}, 2, "answer"),
    ({"question": "q", "answer": "a", "sub_questions": {"question": "s"}}, 2, "sub_questions"),
    ({"question": "q", "answer": "a", "sub_questions": [{"question": "s"}]}, 2, "sub_questions[0].answer"),
    ({"question": "q", "answer": "a", "context": [["t", "not a list"]]}, 2, "context[0]"),
    ({"question": "q", "answer": "a", "split": "dev"}, 2, "split"),
    ({"id": "a1", "question": "q", "answer": "a"}, 2, "id"),   # duplicate of line 1
])
def test_multihop_file_errors(tmp_path, row, line, field):
    path = _write(tmp_path / "bad.jsonl", [{"id": "a1", "question": "q0", "answer": "a"}, row])
    with pytest.raises(InputError) as e:
        MultihopFile(path=path).test_items()
    assert (e.value.line, e.value.field) == (line, field)
    assert "bad.jsonl" in str(e.value) and f"line {line}" in str(e.value)


def test_multihop_file_json_and_no_train(tmp_path):
    p = tmp_path / "qa.json"
    p.write_text(json.dumps([{"question": "q", "answer": "a"}, {"question": "r"}]))
    with pytest.raises(InputError, match="line 2, field 'answer'"):  # record index for JSON
        MultihopFile(path=str(p)).test_items()
    p.write_text(json.dumps([{"question": "q", "answer": "a"}]))
    assert not MultihopFile(path=str(p)).has_train()
    with pytest.raises(ValueError, match="path="):
        MultihopFile()
