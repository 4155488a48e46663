"""HumanEval / HumanEval+: items, prompts, code extraction, evalplus-style verdicts, pass@k."""

from __future__ import annotations

import pytest

from sftscale.io import InputError
from sftscale.tasks import get_task
from sftscale.tasks.humaneval import HumanEval, HumanEvalPlus, extract_program, pass_at_k

PROMPT = 'def add(a, b):\n    """Add two numbers."""\n'


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("sftscale_cache")


@pytest.fixture(scope="module")
def he():
    return HumanEval(workers=2)


@pytest.fixture(scope="module")
def hep(cache_dir):
    import os
    old = os.environ.get("SFTSCALE_CACHE")
    os.environ["SFTSCALE_CACHE"] = str(cache_dir)  # ground truth computed here, not reused
    yield HumanEvalPlus(workers=2)
    if old is None:
        os.environ.pop("SFTSCALE_CACHE", None)
    else:
        os.environ["SFTSCALE_CACHE"] = old


def _item(task, tid):
    return next(it for it in task.test_items() if it.id == tid)


# --- items and prompts --------------------------------------------------------------------
def test_items_and_registry():
    h, p = get_task("humaneval"), get_task("humaneval+")
    assert isinstance(h, HumanEval) and isinstance(p, HumanEvalPlus)
    for t in (h, p):
        items = t.test_items()
        assert len(items) == 164 and items[0].id == "HumanEval/0" and items[-1].id == "HumanEval/163"
        assert len({it.id for it in items}) == 164
        assert t.prompt_text(items[0]).startswith("from typing import List")
        assert not t.has_train()
        with pytest.raises(NotImplementedError, match="no training pool"):
            t.train_items()
    assert h.describe()["license"] == "MIT" and p.describe()["license"] == "Apache-2.0"
    assert len(_item(p, "HumanEval/0").target["plus_input"]) > 100


def test_training_pair_and_chat_message(he):
    it = _item(he, "HumanEval/0")
    prompt, completion = he.training_pair(it)
    assert prompt == it.question and completion == it.completion
    msg = he.user_message(it)
    assert "```python" in msg and it.question in msg


def test_score_lines_resolve_by_task_id(he):
    it, resp = he.resolve_line({"task_id": "HumanEval/7", "completion": "    return []\n"}, line=1)
    assert it.id == "HumanEval/7" and resp == "    return []\n"
    it, resp = he.resolve_line({"task_id": "HumanEval/3", "solution": "def f(): pass"}, line=2)
    assert it.id == "HumanEval/3" and resp == "def f(): pass"
    with pytest.raises(InputError) as e:
        he.resolve_line({"task_id": "HumanEval/999", "completion": ""}, line=3, path="s.jsonl")
    assert e.value.line == 3 and e.value.field == "task_id"


def test_bad_data_file_names_line_and_field(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"task_id": "X/0", "prompt": "def f():\\n", "entry_point": "f"}\n')
    with pytest.raises(InputError) as e:
        HumanEval(path=str(p)).test_items()
    assert e.value.line == 1 and e.value.field == "canonical_solution"


# --- extraction ---------------------------------------------------------------------------
@pytest.mark.parametrize("response, kind, ok", [
    ("    return a + b\n", "text", True),                                        # continuation
    ("    return a + b\n```\n\nThis adds.", "text", True),                       # closing fence
    ("    return a + b\n\nif __name__ == '__main__':\n  junk(", "text", True),   # stop sequence
    ("Sure!\n```python\ndef add(a, b):\n    return a + b\n```\nDone.", "block", True),
    ("```python\n    return a + b\n```", "block", True),                         # fenced body
    ("def add(a, b):\n    return a + b\n", "text", True),                        # full function
    ("", "none", False),
    ("   \n# nothing\n", "none", False),
    ("Here is the answer: it adds them!", "text", False),                        # prose
])
def test_extract_program(response, kind, ok):
    program, got_kind = extract_program(PROMPT, "add", response)
    assert got_kind == kind
    if kind == "none":
        assert program is None
        return
    assert program.startswith(PROMPT)
    g: dict = {}
    try:
        exec(compile(program, "<t>", "exec"), g)
        runs = g["add"](2, 3) == 5
    except SyntaxError:
        runs = False
    assert runs == ok


def test_pass_at_k():
    assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(10, 10, 10) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 1, 10) == 1.0
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - (3 * 2) / (5 * 4))


# --- scoring: original HumanEval ----------------------------------------------------------
def test_humaneval_verdicts(he):
    it0, it2 = _item(he, "HumanEval/0"), _item(he, "HumanEval/2")
    cases = [
        (it0, it0.completion, "pass", True),
        (it0, "    return True\n", "fail", True),                 # wrong answer
        (it0, "    return numbers[99]\n", "fail", True),          # exception in a test
        (it0, "    while True:\n        pass\n", "timeout", True),
        (it0, "", "no_code", False),
        (it0, "    return (\n", "error", False),                  # syntax error
        (it0, "import sys\nsys.exit(0)\n", "error", True),        # exits before the tests
        (it2, "    import os\n    os._exit(0)\n", "error", True),  # exits inside the tests
        (it2, "```python\ndef truncate_number(number):\n    return number % 1.0\n```", "pass", True),
    ]
    task = HumanEval(workers=2, timeout_s=3.0)
    recs = task.score_many([c[0] for c in cases], [c[1] for c in cases])
    for (it, resp, status, fmt), r in zip(cases, recs):
        assert (r["status_base"], r["format_ok"]) == (status, fmt), (resp, r)
        assert r["correct"] == (status == "pass") and r["status_plus"] is None and r["id"] == it.id
    agg = task.aggregate(recs)
    # pass@1 is a mean over problems (HumanEval/0: 1 of 7 samples, HumanEval/2: 1 of 2)
    assert agg["pass@1_base"] == pytest.approx((1 / 7 + 1 / 2) / 2)
    assert agg["accuracy"] == pytest.approx(2 / 9) and agg["format_rate"] == pytest.approx(7 / 9)
    assert agg["rate_timeout"] == pytest.approx(1 / 9) and "pass@1_plus" not in agg


# --- scoring: HumanEval+ (evalplus semantics) ---------------------------------------------
def _base_only(it) -> str:
    """The canonical solution on the original test inputs, wrong on every other input."""
    ep = it.target["entry_point"]
    return (it.question + it.completion + f"\n_real = {ep}\n_BASE = {it.target['base_input']!r}\n"
            f"def {ep}(*args):\n    return _real(*args) if list(args) in _BASE else None\n")


def test_humaneval_plus_verdicts(hep):
    it0, it2, it32 = (_item(hep, f"HumanEval/{i}") for i in (0, 2, 32))
    # a more precise Newton iteration: other outputs than the canonical one, accepted
    # through evalplus's |poly(xs, x)| <= atol oracle
    precise = it32.completion.replace("1e-5", "1e-12")
    assert precise != it32.completion
    cases = [
        (it0, it0.completion, "pass", "pass"),
        (it0, _base_only(it0), "pass", "fail"),                       # plus inputs catch it
        (it0, "    return False\n", "fail", "fail"),
        (it2, "    return number % 1.0 + 1e-9\n", "pass", "pass"),    # within atol
        (it2, "    return number % 1.0 + 1e-3\n", "fail", "fail"),    # outside atol
        (it2, "    return str(number % 1.0)\n", "fail", "fail"),      # wrong type
        (it32, precise, "pass", "pass"),
        (it32, "    return 0.0\n", "fail", "fail"),
        (it0, "    import time\n    time.sleep(5)\n", "timeout", "timeout"),
        (it0, "nothing to see here", "error", "error"),
    ]
    recs = hep.score_many([c[0] for c in cases], [c[1] for c in cases])
    for (it, resp, sb, sp), r in zip(cases, recs):
        assert (r["status_base"], r["status_plus"]) == (sb, sp), (it.id, resp, r)
        assert r["correct"] == (sp == "pass")
    agg = hep.aggregate(recs)
    by_id: dict = {}
    for (it, _, sb, sp) in cases:
        by_id.setdefault(it.id, []).append((sb == "pass", sp == "pass"))
    want_b = sum(sum(b for b, _ in v) / len(v) for v in by_id.values()) / len(by_id)
    want_p = sum(sum(p for _, p in v) / len(v) for v in by_id.values()) / len(by_id)
    assert agg["pass@1_base"] == pytest.approx(want_b) and agg["pass@1_plus"] == pytest.approx(want_p)
    assert agg["accuracy"] == pytest.approx(3 / 10)


def test_pass_at_k_with_several_samples(hep):
    it = _item(hep, "HumanEval/0")
    good, bad = it.completion, "    return False\n"
    recs = hep.score_many([it] * 10, [good] * 3 + [bad] * 7)
    agg = hep.aggregate(recs)
    assert agg["pass@1_plus"] == pytest.approx(0.3) and agg["pass@10_plus"] == 1.0
    assert agg["accuracy"] == pytest.approx(0.3)


def test_ground_truth_is_cached_in_memory_and_on_disk(hep, cache_dir):
    it = _item(hep, "HumanEval/0")
    gt = hep.ground_truth([it])["HumanEval/0"]
    assert gt["base"] == [True, False, True, False, True, True, False]
    assert len(gt["plus"]) == len(it.target["plus_input"]) and len(gt["plus_time"]) == len(gt["plus"])
    files = list((cache_dir / "humanevalplus_gt").glob("*.json"))
    assert files
    from sftscale.tasks import humaneval as mod
    mod._GT_MEMO.clear()
    again = HumanEvalPlus(workers=1).ground_truth([it])["HumanEval/0"]  # from disk
    assert again["plus"] == gt["plus"] and again["base_time"] == gt["base_time"]


@pytest.mark.slow
def test_canonical_solutions_pass_all_164(hep):
    """Every canonical solution passes base and plus tests (ground truth computed here)."""
    items = hep.test_items()
    recs = hep.score_many(items, [it.completion for it in items])
    bad = [(r["id"], r["status_base"], r["status_plus"], r["info"]) for r in recs if not r["correct"]]
    assert bad == []
    assert all(r["status_base"] == "pass" for r in recs)


def test_canonical_solutions_pass_original_humaneval(he):
    items = he.test_items()
    recs = he.score_many(items, [it.completion for it in items])
    assert [r["id"] for r in recs if r["status_base"] != "pass"] == []


@pytest.mark.parametrize("plus", [False, True])
def test_hostile_solutions_never_pass(plus, he, hep):
    """Solutions that try to skip or fake the tests score non-pass in both tasks."""
    task = hep if plus else HumanEval(workers=2, timeout_s=3.0)
    it = _item(task, "HumanEval/0")
    sig = "def has_close_elements(numbers, threshold):\n"
    hostile = [
        "import sys\nsys.exit(0)\n",                                     # exit before the tests
        sig + "    import os\n    os._exit(0)\n",                        # exit inside a test
        sig + "    raise SystemExit(0)\n",
        sig + "    raise KeyboardInterrupt\n",
        sig + "    return False\ndef check(candidate):\n    pass\n",       # own check function
        sig + "    return False\nimport builtins\nbuiltins.exit = None\nexit = lambda *a: None\n",
        sig + "    print('{\"event\": \"end\"}')\n    import os\n    os._exit(0)\n",  # fake marker
        sig + "    import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)\n",
        sig + "    while True:\n        pass\n",
    ]
    recs = task.score_many([it] * len(hostile), hostile)
    for code, r in zip(hostile, recs):
        assert not r["correct"] and r["status_base"] != "pass", (code, r)


# --- the harness module, run directly (the sandbox runs its source) -----------------------
def test_harness_module_directly():
    import signal

    from sftscale.tasks import humaneval as mod
    from sftscale.tasks import humaneval_harness as hh

    for src, main in ((mod.GT_HARNESS, "gt_main"), (mod.PLUS_HARNESS, "plus_main"),
                      (mod.CHECK_HARNESS, "check_main")):
        assert src.startswith('"""HumanEval harness') and src.rstrip().endswith(f"main = {main}")
    code = "def sq(x):\n    return x * x\n"
    events: list[dict] = []
    hh.gt_main(code, "", {"entry_point": "sq", "groups": [("base", [[2], [3]])]}, events.append)
    assert events[0]["group"] == "base" and events[0]["outputs"] == [4, 9]
    assert len(events[0]["times"]) == 2
    # values travel encoded, big ones as digests that _eq compares exactly
    for v in (None, True, 1 << 60, float("inf"), (1, "a"), {1: [2.5]}, {3}, frozenset(), 1j, b"x"):
        assert mod.decode_value(hh._encode(v)) == v
    big = mod.decode_value(hh._encode("x" * 5000))
    assert big[0] == mod.DIGEST_MARK and hh._eq("x" * 5000, big) and not hh._eq("y" * 5000, big)

    events = []
    hh.check_main(code, "assert sq(3) == 9\n", {"entry_point": "sq"}, events.append)
    assert events == [{"group": "base", "status": "pass", "done": 1, "info": ""}]
    events = []
    hh.check_main(code, "assert sq(3) == 8\n", {"entry_point": "sq"}, events.append)
    assert events[0]["status"] == "fail" and events[0]["info"].startswith("AssertionError")
    events = []
    hh.check_main(code, "", {"entry_point": "nope"}, events.append)
    assert "load_error" in events[0]

    handler, timer = signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL)
    try:  # plus_main sets SIGALRM and an interval timer: restore pytest-timeout's afterwards
        events = []
        data = {"entry_point": "sq", "atol": 0.0,
                "groups": [("base", [[2], [1.5]], [4, 2.25 + 1e-9], [1.0, 1.0], []),
                           ("plus", [[3]], [10], [1.0], [])]}
        hh.plus_main(code, "", data, events.append)
    finally:
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, *timer)
    # float answers: closeness (atol 1e-6 once a float is expected); 9 != 10 fails "plus"
    assert [(e["group"], e["status"], e["done"]) for e in events] == [("base", "pass", 2),
                                                                      ("plus", "fail", 0)]
