"""Real studies on a tiny model: SIGKILL at different stages and resume; Ray equals local.

The model is a randomly initialised 2-layer Llama (hidden 32) with a word-level tokenizer over
300 GSM8k train problems (shipped data; the ``tiny_model`` fixture of conftest.py); the cells
really finetune it (full finetuning, a few steps) and really generate and score on GSM8k test
problems.
Greedy decoding of a deterministic CPU training run makes every table reproducible, so the
killed-and-resumed study must reproduce the uninterrupted one exactly.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli import run_process
from study_helpers import cell_states, reap, run_on_ray, tables

from sftscale.config import load_study
from sftscale.io import sha256_file
from sftscale.rundir.export import load_tables
from sftscale.study.runner import run_study

CELLS = ["tiny__gsm8k__n0", "tiny__gsm8k__n8__s0", "tiny__gsm8k__n8__s1"]
N_ITEMS = 4


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_model) -> Path:
    from sftscale.data import load_records

    texts = [r["question"] + "\n" + r["answer"] for r in load_records("gsm8k", split="train")[:300]]
    model = tiny_model("words", texts=texts, hidden=32, heads=2, intermediate=64,
                       max_positions=1024)
    d = tmp_path_factory.mktemp("study")
    p = d / "study.yaml"
    p.write_text(f"""\
name: e2e
models:
  - {{name: tiny, ref: {model}}}
tasks:
  - {{name: gsm8k, limit: 4, max_new_tokens: 8}}
n: [0, 8]
seeds: [0, 1]
recipe: {{method: full, epochs: 1, batch_size: 4, micro_batch_size: 4, max_length: 512,
         lr: 0.003, min_steps: 2}}
executor: {{cpus_per_cell: 2, num_cpus: 2}}
""")
    return p


@pytest.fixture(scope="module")
def reference(study: Path) -> Path:
    """The uninterrupted run, in a fresh process like the killed runs: run in this process it
    would inherit process-wide torch state from earlier tests (after tests/test_study_workers.py
    its weights differed in the last bits)."""
    out = study.parent / "ref"
    proc = run_process("run", study, "--out", out, "--no-progress", env={"HF_HUB_OFFLINE": "1"})
    assert proc.exit_code == 0, proc.stderr[-3000:]
    assert cell_states(out) == {k: "done" for k in CELLS}
    return out


def _weights(run_dir: Path) -> dict[str, str]:
    return {k: sha256_file(run_dir / "cells" / k / "train" / "ckpt" / "model.safetensors")
            for k in CELLS if "n0" not in k.split("__")[-1:]}


CRASH_DRIVER = Path(__file__).with_name("crash_driver.py")


def _run_until_hook_then_kill(study: Path, out: Path, hook: str) -> None:
    """Run the study in a subprocess (tests/crash_driver.py: the runner with a hook that
    stops at ``hook``), wait until it gets there, SIGKILL it."""
    point = hook.split("@")[0]
    marker = out / f".hook-{point}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, str(CRASH_DRIVER), str(study), str(out), hook],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"run ended before {hook}: {proc.stderr.read()[-3000:]}")
            if time.monotonic() - t0 > 400:  # generous: a loaded 2-core machine is slow
                pytest.fail(f"run did not reach {hook} in 400 s")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        reap(proc)
    marker.unlink()



@pytest.mark.slow
def test_sigkill_during_training_and_evaluation_then_resume(study, reference):
    out = study.parent / "killed"
    # 1) killed in the middle of training the 2nd cell (after its first optimizer step)
    _run_until_hook_then_kill(study, out, "train@n8__s0")
    st = cell_states(out)
    assert [st[k] for k in CELLS] == ["done", "running", "pending"]
    assert (out / "cells" / CELLS[1] / "train.tmp").is_dir()  # partial, never renamed
    assert not (out / "cells" / CELLS[1] / "train").exists()
    # 2) killed after the last cell's evaluation wrote its files, before they were moved in
    _run_until_hook_then_kill(study, out, "eval.written@n8__s1")
    st = cell_states(out)
    assert [st[k] for k in CELLS] == ["done", "done", "running"]
    assert (out / "cells" / CELLS[2] / "eval.tmp").is_dir()
    assert (out / "cells" / CELLS[2] / "train" / "train_meta.json").is_file()
    # 3) resume: the same final table as the uninterrupted run, no cell lost or duplicated
    res = run_study(load_study(study), out=out, progress=False)
    assert res.ran == 1 and res.counts["done"] == len(CELLS)
    assert tables(out) == tables(reference)
    assert _weights(out) == _weights(reference)  # the retrained cell's weights are identical
    db = sqlite3.connect(out / "study.sqlite")
    n_items = db.execute("SELECT COUNT(*), COUNT(DISTINCT cell || '/' || idx) FROM items").fetchone()
    assert n_items == (len(CELLS) * N_ITEMS, len(CELLS) * N_ITEMS)
    attempts = dict(db.execute("SELECT key, attempts FROM cells"))
    assert [attempts[k] for k in CELLS] == [1, 2, 2]
    db.close()
    assert not list(out.glob("cells/*/*.tmp"))


def test_reference_run_is_real(reference):
    """The stages really trained and evaluated (not placeholders)."""
    import json

    meta = json.loads((reference / "cells" / CELLS[2] / "train" / "train_meta.json").read_text())
    assert meta["n"] == 8 and meta["seed"] == 1 and meta["steps"] == 2
    assert len(meta["subset_ids"]) == 8 and meta["tokens_seen"] > 0
    m, items = load_tables(reference)
    assert set(items["item_id"]) == {f"gsm8k/test/{i}" for i in range(N_ITEMS)}
    assert {"accuracy", "format_rate"} <= set(m["metric"])


@pytest.mark.slow
def test_ray_executor_gives_the_local_table(study, reference, monkeypatch):
    pytest.importorskip("ray")
    out = study.parent / "ray"
    res = run_on_ray(study, out, monkeypatch)
    assert res.counts["done"] == len(CELLS) and not res.failed
    assert tables(out) == tables(reference)
    db = sqlite3.connect(out / "study.sqlite")
    workers = {w for (w,) in db.execute("SELECT worker FROM cells")}
    db.close()
    assert all(w and int(w.rsplit(":", 1)[1]) != os.getpid() for w in workers)  # ran in Ray workers
