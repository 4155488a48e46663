"""The cheap file-writing study and its stages (a helper module, not a test file).

The stages write the same files as train_cell/evaluate (train_meta.json, ckpt/,
results_*.json, samples_*.jsonl) in a few milliseconds. A file ``FAIL`` in the run directory
makes ``cheap_eval`` fail for the cells whose key contains its text. This module imports only
``sftscale.io``, so that sftscale's code of an earlier commit can run these stages too (the
run directory of tests/test_stage_list.py's migration test); tests/study_helpers.py re-exports
them.
"""

from __future__ import annotations

import hashlib

from sftscale.io import atomic_write_json, atomic_write_jsonl

STUDY = """\
name: cheap
models:
  - {name: m1, ref: toy-S}
  - {name: m2, ref: toy-M}
tasks:
  - {name: toy-math, limit: 6}
n: [0, 8, 32]
seeds: [3, 4]
"""


def cheap_train(cell, ctx) -> None:
    out = ctx.out
    (out / "ckpt").mkdir()
    (out / "ckpt" / "w.bin").write_bytes(hashlib.sha256(cell.key.encode()).digest())
    atomic_write_json(out / "train_meta.json", {"n": cell.n, "seed": cell.seed, "complete": True})


def cheap_eval(cell, ctx) -> None:
    out = ctx.out
    flag = ctx.run_dir / "FAIL"
    if flag.exists() and flag.read_text() in cell.key:
        raise RuntimeError(f"deliberate failure of {cell.key}")
    rows = []
    for i in range(cell.limit):
        h = hashlib.sha256(f"{cell.key}/{i}".encode()).digest()
        rows.append({"id": f"toy/{i}", "response": "x", "correct": h[0] < 100 + cell.n,
                     "format_ok": h[1] < 200, "score": h[2] / 255})
    acc = sum(r["correct"] for r in rows) / len(rows)
    atomic_write_jsonl(out / "samples_toy-math_t.jsonl", rows)
    atomic_write_json(out / "results_t.json", {"results": {"toy-math": {
        "alias": "toy-math", "accuracy,none": acc, "format_rate,none":
        sum(r["format_ok"] for r in rows) / len(rows)}}})
