"""Study config: validation with file/line/field errors, cell expansion, shipped examples."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli import run

from sftscale.config import load_study, parse_study
from sftscale.grid.cells import expand_cells
from sftscale.io import InputError

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
name: t
models:
  - ref: toy-S
  - name: big
    ref: org/Some-Model-7B
    gpus: 2
    recipe: fast
tasks:
  - name: toy-math
    limit: 20
  - name: toy-multihop
n: [64, 0, 16]
seeds: [0, 1]
recipes:
  fast: {lr: 0.001}
"""


def _err(text: str, tmp_path: Path) -> InputError:
    p = tmp_path / "study.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as ei:
        load_study(p)
    assert str(p) in str(ei.value)
    return ei.value


def test_good_config_fields_and_defaults():
    cfg = parse_study(GOOD, "x.yaml")
    assert [m.label for m in cfg.models] == ["toy-S", "big"]
    assert cfg.n == [0, 16, 64]  # sorted
    assert cfg.models[1].gpus == 2
    assert cfg.recipe_overrides(cfg.models[1], cfg.tasks[0]) == {"lr": 0.001}
    assert cfg.output_dir() == Path("runs/t")
    assert cfg.line_of("models", 1, "gpus") == 6


def test_unknown_field_names_line_and_field(tmp_path):
    e = _err(GOOD.replace("    gpus: 2\n", "    gpu: 2\n"), tmp_path)
    assert e.line == 6 and e.field == "models[1].gpu"
    assert "unknown field" in e.reason and "gpus" in e.reason  # lists the allowed ones


def test_bad_value_in_nested_list(tmp_path):
    e = _err(GOOD.replace("    limit: 20", "    limit: -5"), tmp_path)
    assert (e.line, e.field) == (10, "tasks[0].limit")
    e = _err(GOOD.replace("n: [64, 0, 16]", "n: [64, 0, sixteen]"), tmp_path)
    assert (e.line, e.field) == (12, "n[2]")


def test_missing_field_points_at_parent(tmp_path):
    e = _err(GOOD.replace("  - name: toy-multihop\n", "  - limit: 3\n"), tmp_path)
    assert e.field == "tasks[1].name" and e.line == 11 and "missing" in e.reason


def test_cross_field_errors_have_lines(tmp_path):
    e = _err(GOOD.replace("recipe: fast", "recipe: slow"), tmp_path)
    assert (e.line, e.field) == (7, "models[1].recipe")
    e = _err(GOOD.replace("  - name: toy-multihop", "  - name: toy-math"), tmp_path)
    assert e.line == 11 and e.field == "tasks[1]" and "duplicate" in e.reason
    e = _err(GOOD.replace("seeds: [0, 1]", "seeds: [1, 1]"), tmp_path)
    assert e.line == 13 and e.field == "seeds"


def test_duplicate_key_and_yaml_syntax(tmp_path):
    e = _err(GOOD + "seeds: [3]\n", tmp_path)
    assert e.line == 16 and "twice" in e.reason
    e = _err(GOOD.replace("n: [64, 0, 16]", "n: [64, 0, 16"), tmp_path)
    assert e.line is not None and "YAML" in e.reason


def test_cli_config_error_exit_2(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(GOOD.replace("seeds:", "seedz:"))
    r = run("plan", p)
    assert r.exit_code == 2
    assert f"{p}, line 13, field 'seedz'" in r.stderr


def test_expand_cells_n0_once_and_keys():
    cfg = parse_study(GOOD, "x.yaml")
    cells = expand_cells(cfg)
    # per model/task: N=0 once + 2 N values x 2 seeds
    assert len(cells) == 2 * 2 * (1 + 2 * 2)
    keys = [c.key for c in cells]
    assert len(set(keys)) == len(keys)
    assert "toy-S__toy-math__n0" in keys and "toy-S__toy-math__n0__s1" not in keys
    assert "big__toy-multihop__n64__s1" in keys
    c = next(c for c in cells if c.key == "big__toy-math__n16__s0")
    assert (c.gpus, c.limit, c.recipe) == (2, 20, {"lr": 0.001})
    # the N=0 spec ignores recipe and seed: changing them keeps the base cell's identity
    cfg2 = parse_study(GOOD.replace("{lr: 0.001}", "{lr: 0.01}").replace("[0, 1]", "[5, 1]"), "y")
    z1 = {c.key: c.spec_hash for c in cells}
    z2 = {c.key: c.spec_hash for c in expand_cells(cfg2)}
    assert z1["big__toy-math__n0"] == z2["big__toy-math__n0"]
    assert z1["big__toy-math__n16__s1"] != z2["big__toy-math__n16__s1"]


def test_spec_holds_the_task_version_and_a_toy_models_own_defaults(tmp_path, monkeypatch):
    """A run directory must not reuse cells of an older task version or of a toy model whose
    own finetuning defaults (toy_meta.json ``sft_defaults``) changed."""
    import json
    import shutil

    from sftscale.toyworld import toy_model_path
    from sftscale.toyworld.instruct import ToyInstruct

    d = tmp_path / "toy"
    shutil.copytree(toy_model_path("toy-S"), d)
    meta = json.loads((d / "toy_meta.json").read_text())
    (d / "toy_meta.json").write_text(json.dumps({**meta, "sft_defaults": {}}))  # the shared ones
    text = f"""name: v
models: [{{name: a, ref: toy-S}}, {{name: b, ref: toy-M}}, {{name: c, ref: {d}}}]
tasks: [{{name: toy-instruct}}]
n: [0, 16]
seeds: [0]
"""
    cells = {c.key: c for c in expand_cells(parse_study(text, "v.yaml"))}
    assert cells["a__toy-instruct__n16__s0"].spec()["task_version"] == "3"
    # toy-S's and toy-M's lr are their own; the copy has the shared defaults; N = 0 never trains
    assert cells["a__toy-instruct__n16__s0"].spec()["model_defaults"] == {"lr": 5e-4}
    assert cells["b__toy-instruct__n16__s0"].spec()["model_defaults"] == {"lr": 5e-4}
    assert "model_defaults" not in cells["c__toy-instruct__n16__s0"].spec()
    assert "model_defaults" not in cells["b__toy-instruct__n0"].spec()
    before = {k: c.spec_hash for k, c in cells.items()}
    (d / "toy_meta.json").write_text(json.dumps({**meta, "sft_defaults": {"lr": 3e-4}}))
    own = {c.key: c.spec_hash for c in expand_cells(parse_study(text, "v.yaml"))}
    assert [k for k in before if own[k] != before[k]] == ["c__toy-instruct__n16__s0"]
    monkeypatch.setattr(ToyInstruct, "version", "4")
    after = {c.key: c.spec_hash for c in expand_cells(parse_study(text, "v.yaml"))}
    assert all(after[k] != own[k] for k in own)  # every cell: the task's version


def test_n_over_pool_policies():
    text = GOOD.replace("n: [64, 0, 16]", "n: [0, 16, 64, 100]")
    pools = {"toy-math": 50, "toy-multihop": 1000}
    with pytest.raises(InputError) as ei:
        expand_cells(parse_study(text, "p.yaml"), pools)
    assert "N=64" in str(ei.value) and ei.value.line == 12
    cells = expand_cells(parse_study(text + "n_over_pool: skip\n", "p"), pools)
    assert {c.n for c in cells if c.task == "toy-math"} == {0, 16}
    cells = expand_cells(parse_study(text + "n_over_pool: cap\n", "p"), pools)
    capped = [c for c in cells if c.task == "toy-math" and c.model == "toy-S"]
    assert sorted({c.n for c in capped}) == [0, 16, 50]  # 64 and 100 both capped to 50, once
    assert len([c for c in capped if c.n == 50]) == 2  # one per seed


@pytest.mark.parametrize("name", ["toy.yaml", "toy-quick.yaml", "smollm2.yaml", "paper.yaml"])
def test_shipped_studies_parse_and_say_how_to_run(name):
    path = ROOT / "studies" / name
    cfg = load_study(path)
    assert expand_cells(cfg)
    header = path.read_text().split("\nname:")[0]
    assert f"sftscale run studies/{name}" in header
