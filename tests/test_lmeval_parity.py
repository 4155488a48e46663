"""Parity with lm-evaluation-harness: same model, prompts, stop strings, max tokens, greedy.

lm-eval runs end to end (local task yaml + JSONL, ``simple_evaluate`` with the ``hf``
backend, offline); sftscale runs ``evaluate`` on the same rows. Every response must be
identical, and so must the accuracy. To make the accuracy non-trivial on a random tiny
model, the targets of even items are set to the model's own greedy output (found with a
sftscale generator first) and odd ones to text it never produces: both sides must then
report exactly 0.5, which fails if any even response differs.
"""

from __future__ import annotations

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
