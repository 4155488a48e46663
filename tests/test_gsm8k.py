"""GSM8K task: items, training pairs, strict/flexible scoring, lm-eval agreement."""

from __future__ import annotations

import json
import re

import pytest

from sftscale.io import InputError
from sftscale.tasks import get_task
from sftscale.tasks.gsm8k import GSM8K, clean_solution, normalize_number, score_response


@pytest.fixture(scope="module")
def task() -> GSM8K:
    return GSM8K()


def test_sizes_and_ids(task):
    te, tr = task.test_items(), task.train_items()
    assert len(te) == 1319 and len(tr) == 7473
    assert te[0].id == "gsm8k/test/0" and te[-1].id == "gsm8k/test/1318"
    assert tr[5].id == "gsm8k/train/5"
    assert len({it.id for it in te + tr}) == 1319 + 7473
    assert all(it.completion is None for it in te)
    assert task.describe()["n_train"] == 7473
    assert get_task("gsm8k", limit=7).test_items() == te[:7]


def test_training_completion_has_no_calculator_annotations(task):
    for it in task.train_items():
        assert "<<" not in it.completion and ">>" not in it.completion
        assert re.search(r"\n#### \S+$", it.completion), it.id
    first = task.train_items()[0]
    prompt, completion = task.training_pair(first)
    assert prompt == f"Question: {first.question}\nAnswer:"
    assert completion.startswith(" ") and completion.endswith("#### 72")
    assert "48/2 = 24 clips" in completion
    assert clean_solution("a <<2*3=6>>6 b\n#### 6") == "a 6 b\n#### 6"


def test_gold_solutions_score_one_and_wrong_ones_zero(task):
    items = task.test_items()
    gold = task.aggregate(task.score_many(items, [" " + it.meta["solution"] for it in items]))
    assert gold["accuracy"] == 1.0 and gold["accuracy_strict"] == 1.0
    assert gold["accuracy_flexible"] == 1.0 and gold["format_rate"] == 1.0 and gold["n"] == 1319
    # the same chains of thought with every final number shifted by one
    wrong = []
    for it in items:
        body, ans = it.meta["solution"].rsplit("#### ", 1)
        wrong.append(f"{body}#### {int(ans.replace(',', '')) + 1}")
    agg = task.aggregate(task.score_many(items, wrong))
    assert agg["accuracy_strict"] == 0.0 and agg["accuracy_flexible"] == 0.0
    assert agg["format_rate"] == 1.0
    # no marker at all: format fails, flexible still finds the last number
    bare = [it.meta["solution"].replace("#### ", "so ") for it in items[:50]]
    agg = task.aggregate(task.score_many(items[:50], bare))
    assert agg["format_rate"] == 0.0 and agg["accuracy_strict"] == 0.0
    assert agg["accuracy_flexible"] == 1.0
    assert agg["accuracy_strict_stderr"] == 0.0 and "format_rate_stderr" in agg


@pytest.mark.parametrize("raw,norm", [
    ("1,234", "1234"), ("$1,234", "1234"), ("18.", "18"), ("18.0", "18"), ("18.00", "18"),
    ("18.50", "18.5"), ("100", "100"), ("-3", "-3"), ("-0", "0"), (".5", "0.5"), (" 42 ", "42"),
    ("$ 5", "5"), ("1,000,000.", "1000000"),
])
def test_normalize_number(raw, norm):
    assert normalize_number(raw) == norm


@pytest.mark.parametrize("response,gold,strict,flex,fmt,extracted", [
    ("So 9 * 2 = 18.\n#### 18", "18", True, True, True, "18"),
    ("#### $1,080.00", "1,080", True, True, True, "1080"),
    ("####18.", "18", True, True, True, "18"),
    ("The answer is 18.", "18", False, True, False, None),
    ("#### 17\nActually it is 18", "18", False, True, True, "17"),   # strict takes the FIRST
    ("#### 18 then #### 17", "18", True, False, True, "18"),
    ("#### -5", "-5", True, True, True, "-5"),
    ("#### 5", "-5", False, False, True, "5"),
    ("#### ...", "3", False, False, False, None),                     # digit required
    ("####\n18", "18", False, True, False, None),                     # no newline after ####
    ("", "7", False, False, False, None),
    ("Total: 12 + 6 = 18", "Janet ... so\n#### 18", False, True, False, None),  # gold as a solution
])
def test_score_response_cases(response, gold, strict, flex, fmt, extracted):
    r = score_response(response, gold)
    assert (r["correct_strict"], r["correct_flexible"], r["format_ok"], r["extracted"]) == \
        (strict, flex, fmt, extracted)
    assert r["correct"] == r["correct_strict"]
    assert not r["correct"] or r["format_ok"]


def test_agrees_with_lm_eval_filters_where_documented(task):
    """lm-eval's own regex filters + exact_match on the same responses give the same verdicts,
    except on the deliberate differences listed in the module docstring."""
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter

    strict_f = RegexFilter(r"#### (\-?[0-9\.\,]+)", 0)
    flex_f = RegexFilter(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", -1)
    ignore = [",", "\\$", "(?s).*#### ", "\\.$"]
    items = task.test_items()[:200]
    responses = []
    for k, it in enumerate(items):
        body, ans = it.meta["solution"].rsplit("#### ", 1)
        variants = [it.meta["solution"], f"{body}#### {ans}.", f"{body}#### 9{ans}",
                    body + f"The answer is {ans}", f"{body}#### {ans}\nQuestion: next"]
        responses.append(variants[k % len(variants)])

    def lm_eval_verdicts(filt):
        out = filt.apply([[r] for r in responses], None)
        return [bool(exact_match_hf_evaluate([o[0]], [it.meta["solution"]], regexes_to_ignore=ignore,
                                             ignore_case=True)["exact_match"]) for o, it in zip(out, items)]

    ours = [score_response(r, it.target) for r, it in zip(responses, items)]
    assert [o["correct_strict"] for o in ours] == lm_eval_verdicts(strict_f)
    assert [o["correct_flexible"] for o in ours] == lm_eval_verdicts(flex_f)
    assert 0 < sum(o["correct_strict"] for o in ours) < len(ours)


def test_local_path_and_errors(tmp_path):
    p = tmp_path / "mine.jsonl"
    p.write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n"
                 + json.dumps({"question": "2+2?", "answer": "so\n#### 4"}) + "\n")
    t = GSM8K(path=str(p))
    items = t.test_items()
    assert [it.id for it in items] == ["gsm8k/mine/0", "gsm8k/mine/1"]
    assert [it.target for it in items] == ["2", "4"]
    assert t.score(items[0], "#### 2")["correct"]
    p.write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n\n"
                 + json.dumps({"question": "x", "answer": "two"}) + "\n")
    with pytest.raises(InputError) as e:
        GSM8K(path=str(p)).test_items()
    assert e.value.line == 3 and e.value.field == "answer"
    p.write_text(json.dumps({"answer": "2"}) + "\n")
    with pytest.raises(InputError, match="field 'question'"):
        GSM8K(path=str(p)).test_items()


def test_resolve_line_by_id_and_question(task):
    it = task.test_items()[3]
    assert task.resolve_line({"id": it.id, "response": "x"}, 1, "f")[0] is it
    assert task.resolve_line({"question": it.question + "  ", "response": "y"}, 1, "f") == (it, "y")
    with pytest.raises(InputError, match="field 'response'"):
        task.resolve_line({"id": it.id}, 4, "f")
    with pytest.raises(InputError, match="line 5, field 'question'"):
        task.resolve_line({"question": "not a gsm8k question", "response": "y"}, 5, "f")
