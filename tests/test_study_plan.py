"""sftscale plan: checks (file/line/field), token/FLOP/time estimates; external training data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli import run

from sftscale.config import parse_study
from sftscale.io import InputError
from sftscale.plan.check import GPUS, check_study, count_params, plan_study
from sftscale.tasks.taskdata import study_task


def _model_dir(tmp_path: Path) -> Path:
    """A model directory whose safetensors header says 1,000,000 + 500 parameters."""
    import numpy as np
    from safetensors.numpy import save_file

    d = tmp_path / "Some-Model-7B"  # the name's "7B" must NOT be used: the header wins
    if d.exists():
        return d
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    save_file({"a": np.zeros((1000, 1000), np.float32), "b": np.zeros((500,), np.float32)},
              str(d / "model.safetensors"))
    return d


def _study(tmp_path: Path, extra: str = "", task: str = "  - {name: gsm8k, limit: 10}\n") -> str:
    return (f"name: p\nmodels:\n  - {{name: m, ref: {_model_dir(tmp_path)}, gpus: 2}}\n"
            f"tasks:\n{task}n: [0, 100, 1000]\nseeds: [0, 1]\n{extra}")


def test_count_params_from_header_or_name(tmp_path):
    assert count_params(str(_model_dir(tmp_path))) == (1_000_500.0, "safetensors header")
    assert count_params("org/Llama-3-70B-Instruct") == (70e9, "from the name")
    assert count_params("HuggingFaceTB/SmolLM2-135M") == (135e6, "from the name")


def test_plan_rows_follow_the_training_rule_and_flop_formulas(tmp_path):
    from sftscale.train import default_recipe, steps_for

    text = _study(tmp_path, "recipe: {epochs: 2, batch_size: 8}\nevaluation: {max_new_tokens: 100}\n")
    cfg = parse_study(text, "p.yaml")
    plan = plan_study(cfg, gpu="h100")
    rows = {r["cell"]: r for r in plan.rows}
    assert len(rows) == 1 + 2 * 2
    rec = default_recipe(cfg.models[0].ref).model_copy(update={"epochs": 2, "batch_size": 8})
    r = rows["m__gsm8k__n1000__s1"]
    assert r["steps"] == steps_for(1000, rec)[0] == 250
    assert r["params"] == 1_000_500
    assert r["train_flops"] == pytest.approx(6 * 1_000_500 * r["train_tokens"], rel=1e-9)
    # tokens per example: a plausible number of tokens for a GSM8k question + solution
    assert 50 < r["train_tokens"] / (250 * 8) < 1000
    assert r["gen_tokens_max"] == 10 * 100 and r["eval_items"] == 10
    assert rows["m__gsm8k__n0"]["train_tokens"] == 0 and rows["m__gsm8k__n0"]["steps"] == 0
    # more data costs more; the GPU (2 of them for this model) is much faster than this CPU
    assert rows["m__gsm8k__n1000__s0"]["cpu_s"] > rows["m__gsm8k__n100__s0"]["cpu_s"]
    assert r["gpu_s"] < r["cpu_s"] / 100
    assert plan.assumptions["gpu_peak_flops"] == GPUS["H100"][0]
    assert plan.totals["cells"] == 5 and plan.totals["train_flops"] == pytest.approx(
        sum(x["train_flops"] for x in plan.rows))


@pytest.mark.parametrize("edit,line,field", [
    (("gsm8k, limit", "gsm9k, limit"), 5, "tasks[0].name"),
    (("Some-Model-7B", "No-Such-Model"), 3, "models[0].ref"),
    (("seeds: [0, 1]\n", "seeds: [0, 1]\nrecipe: {lora_rank: 8}\n"), 8, "recipe.lora_rank"),
    (("seeds: [0, 1]\n", "seeds: [0, 1]\nrecipe: {epochs: -1}\n"), 8, "recipe.epochs"),
])
def test_check_errors_name_line_and_field(tmp_path, edit, line, field):
    text = _study(tmp_path)
    if "No-Such" in edit[1]:
        text = text.replace(str(tmp_path / "Some-Model-7B"), str(tmp_path / "No-Such-Model"))
    else:
        text = text.replace(*edit)
    with pytest.raises(InputError) as ei:
        check_study(parse_study(text, "p.yaml"))
    assert (ei.value.path, ei.value.line, ei.value.field) == ("p.yaml", line, field)


def test_n_over_pool_checked_before_running(tmp_path):
    data = tmp_path / "code.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"task {i}", "output": f"x = {i}"}) + "\n"
                            for i in range(150)))
    task = f"  - {{name: gsm8k, limit: 5, train_data: {data}}}\n"
    cfg = parse_study(_study(tmp_path, task=task), "p.yaml")
    assert check_study(cfg).pool_sizes == {"gsm8k": 150}
    with pytest.raises(InputError, match="exceeds the training pool") as ei:
        plan_study(cfg)
    assert (ei.value.line, ei.value.field) == (6, "n")
    plan = plan_study(parse_study(_study(tmp_path, "n_over_pool: cap\n", task=task), "p.yaml"))
    assert sorted({r["n"] for r in plan.rows}) == [0, 100, 150]


def test_missing_train_data_points_at_the_field(tmp_path):
    task = f"  - name: gsm8k\n    train_data: {tmp_path / 'nope.jsonl'}\n"
    with pytest.raises(InputError) as ei:
        check_study(parse_study(_study(tmp_path, task=task), "p.yaml"))
    assert (ei.value.line, ei.value.field) == (6, "tasks[0].train_data")


def test_external_train_data_replaces_only_the_pool(tmp_path):
    data = tmp_path / "mix.jsonl"
    rows = [{"instruction": "Add", "input": "1 and 2", "output": "3"},
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
            {"id": "q7", "question": "2+2?", "answer": "4"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    t = study_task("gsm8k", {"train_data": str(data)}, max_new_tokens=7)
    base = study_task("gsm8k")
    assert [it.id for it in t.train_items()] == ["mix.jsonl/train/0", "mix.jsonl/train/1", "q7"]
    assert t.training_pair(t.train_items()[0]) == ("Add\n\n1 and 2\n\n", "3")
    assert t.test_items() == base.test_items() and t.gen.max_new_tokens == 7
    assert base.gen.max_new_tokens != 7  # the shared cached task was not mutated
    item = base.test_items()[0]
    assert t.score(item, "#### 5") == base.score(item, "#### 5")
    data.write_text(json.dumps({"instruction": "x"}) + "\n")
    with pytest.raises(InputError) as ei:
        study_task("gsm8k", {"train_data": str(data)}).train_items()
    assert ei.value.line == 1 and "completion" in ei.value.reason


def test_plan_cli_json(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(_study(tmp_path))
    res = run("plan", str(p), "--json", "--gpu", "A100")
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(lines) == 6 and lines[-1]["assumptions"]["gpu"] == "A100"
    res = run("plan", str(p), "--gpu", "Z80")
    assert res.exit_code == 2 and "unknown GPU" in res.output
