"""Parity with lm-evaluation-harness: same model, prompts, stop strings, max tokens, greedy.

lm-eval runs end to end (local task yaml + JSONL, ``simple_evaluate`` with the ``hf``
backend, offline); sftscale runs ``evaluate`` on the same rows. Every response must be
identical, and so must the accuracy. To make the accuracy non-trivial on a random tiny
model, the targets of even items are set to the model's own greedy output (found with a
sftscale generator first) and odd ones to text it never produces: both sides must then
report exactly 0.5, which fails if any even response differs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "lmeval_parity"))

import parity  # noqa: E402

from sftscale.evaluation import evaluate  # noqa: E402
from sftscale.generation import Generator  # noqa: E402

N, MAX_GEN = 8, 16

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
def test_responses_and_accuracy_equal_lm_eval(tmp_path, tiny_model):
    model_dir = tiny_model("chars", seed=11)
    rows = parity.load_rows()[:N]
    g = Generator(str(model_dir), batch_size=4)
    probe = g.generate([r["prompt"] for r in rows], parity.ParityTask(rows, MAX_GEN).gen)
    assert len(set(probe)) > 1
    rows = [dict(r, target=p if i % 2 == 0 else "\x01never") for i, (r, p) in enumerate(zip(rows, probe))]

    ours = evaluate(None, parity.ParityTask(rows, MAX_GEN), generator=Generator(str(model_dir), batch_size=3))
    theirs = parity.lmeval_simple_evaluate(model_dir, rows, tmp_path / "lmeval", batch_size=4,
                                           max_gen_toks=MAX_GEN)
    assert theirs["prompts"] == [r["prompt"] for r in rows]
    assert [s["response"] for s in ours["samples"]] == theirs["responses"]
    assert ours["metrics"]["accuracy"] == pytest.approx(0.5)
    assert theirs["accuracy"] == pytest.approx(ours["metrics"]["accuracy"])


FEWSHOT_ITEMS = 4


@pytest.mark.slow
def test_gsm8k_5shot_prompts_responses_accuracy_equal_lm_eval_on_smollm2(tmp_path):
    """lm-eval's own gsm8k (local copy of the data), --num_fewshot 5, on the shipped
    SmolLM2-135M-Instruct (GGUF, dequantised to fp32 once and shared by both sides). The
    model gets these items wrong, so to make the accuracy non-trivial the gold of even items
    is set to the model's own strict answer (found by a first sftscale run, then reused from
    its cache): both sides must report 0.5 strict, which fails if any even response differs."""
    from sftscale.data import load_records
    from sftscale.models import load_model

    model, tok = load_model("smollm2-135m-instruct", device="cpu")
    gen = Generator((model, tok), batch_size=3, cache_dir=tmp_path / "cache")
    probe = evaluate(None, "gsm8k", generator=gen, limit=FEWSHOT_ITEMS, num_fewshot=5)
    rows = load_records("gsm8k", "test")[:FEWSHOT_ITEMS]
    assert all(s["extracted"] and not s["correct"] for s in probe["samples"])
    rows = [dict(r, answer=f"#### {s['extracted']}" if i % 2 == 0 else r["answer"])
            for i, (r, s) in enumerate(zip(rows, probe["samples"]))]
    test_file = tmp_path / "test.jsonl"
    test_file.write_text("".join(json.dumps(r) + "\n" for r in rows))

    ours = evaluate(None, "gsm8k", generator=gen, num_fewshot=5,
                    task_options={"path": str(test_file)})
    assert ours["timings"]["n_cached"] == FEWSHOT_ITEMS  # the same prompts as the probe
    theirs = parity.lmeval_gsm8k_evaluate(parity.lmeval_hflm(model, tok, batch_size=4),
                                          tmp_path / "lmeval", 5, FEWSHOT_ITEMS, rows)
    assert [s["prompt"] for s in ours["samples"]] == theirs["prompts"]
    assert theirs["prompts"][0].count("\nAnswer: ") == 5
    assert [s["response"] for s in ours["samples"]] == theirs["responses"]
    assert ours["metrics"]["accuracy_strict"] == pytest.approx(0.5)
    assert theirs["strict"] == pytest.approx(ours["metrics"]["accuracy_strict"])
    assert theirs["flexible"] == pytest.approx(ours["metrics"]["accuracy_flexible"])
