"""Cells trained by several processes (gloo on the CPU): DDP and FSDP2 equal one process,
a study's 2-process cell through torchrun (local) and Ray Train (Ray) gives the same table, a
killed worker fails the cell cleanly and a rerun finishes it with the same result.

The model is a random 2-layer Llama with the toy world's tokenizer (``tiny_model("toy")``); the
cells really finetune (full, 3 steps of 8 examples) and evaluate toy-math items.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from study_helpers import run_on_ray, tables

from sftscale.config import load_study
from sftscale.io import InputError
from sftscale.study.runner import CellRunner, run_study
from sftscale.train.launch import train_cell_launched

# a fixed 3 steps: the toy defaults' early stopping runs in one process only (a clear error otherwise)
RECIPE = dict(method="full", epochs=1, batch_size=8, micro_batch_size=4, max_length=128,
              lr=3e-3, min_steps=3, max_steps=3, early_stopping=False)
KEY = "tiny__toy-math__n16__s0"


@pytest.fixture(scope="module")
def model(tiny_model) -> Path:
    return tiny_model("toy")


@pytest.mark.parametrize("sharding", ["ddp", "fsdp"])
def test_two_processes_equal_one(model, tmp_path, sharding):
    from safetensors.torch import load_file

    one = train_cell_launched(str(model), "toy-math", 16, 0, tmp_path / "one",
                              recipe={**RECIPE}, world=1)
    events = []
    two = train_cell_launched(str(model), "toy-math", 16, 0, tmp_path / "two",
                              recipe={**RECIPE, "sharding": sharding}, world=2,
                              progress=events.append)
    assert (one["processes"], one["sharding"]) == (1, "none")
    assert (two["processes"], two["sharding"]) == (2, sharding)
    assert len(two["loss_curve"]) == 3
    for a, b in zip(one["loss_curve"], two["loss_curve"]):
        assert abs(a - b) / abs(a) <= 1e-5
    assert two["tokens_seen"] == one["tokens_seen"]  # summed over the processes
    assert [e.done for e in events] == [1, 2, 3]  # rank 0's progress reached this process
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == \
        sorted(p.name for p in (tmp_path / "two").iterdir())
    w1 = load_file(tmp_path / "one" / "ckpt" / "model.safetensors")
    w2 = load_file(tmp_path / "two" / "ckpt" / "model.safetensors")
    assert sorted(w1) == sorted(w2)  # the whole model, gathered, tied weights saved once
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-4


def _study(tmp: Path, model: Path) -> Path:
    p = tmp / "study.yaml"
    p.write_text(f"""\
name: dist
models:
  - {{name: tiny, ref: {model}, processes: 2}}
tasks:
  - {{name: toy-math, limit: 3, max_new_tokens: 4}}
n: [16]
recipe: {json.dumps({**RECIPE, "sharding": "ddp"})}
executor: {{num_cpus: 2}}
""")
    return p


@pytest.fixture(scope="module")
def study(tmp_path_factory, model) -> tuple[Path, Path]:
    """The study file and its uninterrupted run (local executor: torchrun)."""
    d = tmp_path_factory.mktemp("study")
    p = _study(d, model)
    res = run_study(load_study(p), out=d / "ref", progress=False)
    assert res.counts["done"] == 1, res
    return p, d / "ref"


class KillOneWorker:
    """Hook: at the first training step of the cell, SIGKILL one torchrun worker (once)."""

    def __call__(self, point: str, run_dir: Path, key: str) -> None:
        import psutil

        if point != "train":
            return
        me = psutil.Process()
        workers = [p for p in me.children(recursive=True)
                   if "sftscale.train.launch" in " ".join(p.cmdline())
                   and "torch.distributed.run" not in " ".join(p.cmdline())]
        assert len(workers) == 2, [p.cmdline() for p in workers]
        os.kill(workers[-1].pid, signal.SIGKILL)


@pytest.mark.slow
def test_killed_worker_fails_cell_then_rerun_equals(study, tmp_path):
    p, ref = study
    meta = json.loads((ref / "cells" / KEY / "train" / "train_meta.json").read_text())
    assert (meta["processes"], meta["sharding"], meta["steps"]) == (2, "ddp", 3)
    out = tmp_path / "killed"
    res = run_study(load_study(p), out=out, progress=False, runner=CellRunner(hooks=KillOneWorker()))
    assert res.failed == [KEY] and res.counts["failed"] == 1
    err = (out / "cells" / KEY / "error.txt").read_text()
    assert "torchrun (2 processes) exited" in err
    assert not (out / "cells" / KEY / "train").exists()  # nothing half-trained was kept
    res = run_study(load_study(p), out=out, progress=False, retry_failed=True)
    assert res.counts["done"] == 1 and not res.failed
    assert not list(out.glob("cells/*/*.tmp"))
    assert tables(out) == tables(ref)


@pytest.mark.slow
def test_ray_train_gives_the_local_table(study, monkeypatch):
    pytest.importorskip("ray")
    p, ref = study
    out = p.parent / "ray"
    res = run_on_ray(p, out, monkeypatch)
    assert res.counts["done"] == 1 and not res.failed, res
    assert tables(out) == tables(ref)
    meta = json.loads((out / "cells" / KEY / "train" / "train_meta.json").read_text())
    assert (meta["processes"], meta["sharding"]) == (2, "ddp")
    assert not list(out.glob("cells/*/.*ray_train"))


def test_processes_need_sharding(tmp_path, model):
    from sftscale.plan.check import check_study

    p = tmp_path / "s.yaml"
    p.write_text(f"models: [{{name: t, ref: {model}, processes: 2}}]\n"
                 "tasks: [{name: toy-math}]\nn: [0, 8]\n")
    with pytest.raises(InputError) as e:
        check_study(load_study(p))
    assert "sharding" in str(e.value) and e.value.line == 1


def test_plan_refuses_a_cell_that_cannot_fit(tmp_path, monkeypatch):
    from sftscale.plan.check import plan_study
    from sftscale.plan.memory import train_memory
    from sftscale.train import Recipe

    full = train_memory(8e9, Recipe(method="full", sharding="ddp"), 8)
    assert full["total"] == 8e9 * 16  # fp32 weights + grads + AdamW moments, replicated
    assert train_memory(8e9, Recipe(method="full", sharding="fsdp"), 8)["total"] == 8e9 * 2
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    p = tmp_path / "big.yaml"
    text = ("models:\n  - {name: l70, ref: meta-llama/Meta-Llama-3-70B, gpus: 8, "
            "recipe: {sharding: SH}}\ntasks: [{name: toy-math, limit: 2}]\nn: [8]\n")
    p.write_text(text.replace("SH", "ddp"))
    with pytest.raises(InputError) as e:
        plan_study(load_study(p), gpu="H100")
    assert "cannot train on H100" in str(e.value) and e.value.line == 2
    p.write_text(text.replace("SH", "fsdp"))
    plan = plan_study(load_study(p), gpu="H100")
    assert any("per process (8 process(es), sharding fsdp" in n for n in plan.notes)
