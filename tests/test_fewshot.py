"""Few-shot evaluation: gsm8k contexts byte-identical to lm-eval's (its own gsm8k yaml, its
sampler and default seed), the exclusion rule for a study cell's finetuning subset, refusals,
and the study plumbing. The end-to-end parity on a real model is in test_lmeval_parity.py.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "lmeval_parity"))

import parity  # noqa: E402

from sftscale.evaluation import evaluate  # noqa: E402
from sftscale.io import InputError  # noqa: E402
from sftscale.tasks import get_task  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def gsm8k():
    return get_task("gsm8k")


def _examples(prompt: str) -> list[str]:
    """The questions of a few-shot prompt's examples (all blocks but the last)."""
    return prompt.split("\n\n")[:-1]


@pytest.mark.parametrize("k", [5, 2])
def test_gsm8k_fewshot_prompts_equal_lm_evals(tmp_path, gsm8k, k):
    theirs = parity.lmeval_gsm8k_prompts(tmp_path / "lm", k, limit=25)
    ours = gsm8k.fewshot_prompts(gsm8k.test_items()[:25], k)
    assert ours == theirs
    assert ours[0].endswith("Question: " + gsm8k.test_items()[0].question + "\nAnswer:")
    assert ours[0].count("\nAnswer: ") == k and "<<" in ours[0]  # raw answers, annotations kept


def test_fewshot_examples_follow_lm_evals_sampler(gsm8k):
    """One Random(1234) across items, sample(train, k) per item, in order."""
    pool = gsm8k.train_items()
    rnd = random.Random(1234)
    for it, got in zip(gsm8k.test_items()[:5], gsm8k.fewshot_prompts(gsm8k.test_items()[:5], 3)):
        want = [pool[i] for i in rnd.sample(range(len(pool)), 3)]
        assert got == "".join(f"Question: {e.question}\nAnswer: {e.meta['answer']}\n\n"
                              for e in want) + f"Question: {it.question}\nAnswer:"


def test_excluded_ids_are_replaced_by_the_next_allowed_ones(gsm8k):
    items, pool = gsm8k.test_items()[:30], gsm8k.train_items()
    plain = gsm8k.fewshot_prompts(items, 5)
    pos = {it.question: i for i, it in enumerate(pool)}
    drawn0 = [pos[b.split("\nAnswer: ")[0][len("Question: "):]] for b in _examples(plain[0])]
    banned = {pool[drawn0[1]].id, pool[drawn0[1] + 1].id, pool[drawn0[3]].id}
    got = gsm8k.fewshot_prompts(items, 5, exclude=banned)
    used0 = [pos[b.split("\nAnswer: ")[0][len("Question: "):]] for b in _examples(got[0])]
    nxt1 = drawn0[1] + 2 if drawn0[1] + 2 not in drawn0 else drawn0[1] + 3
    assert used0[0] == drawn0[0] and used0[2] == drawn0[2] and used0[4] == drawn0[4]
    assert used0[1] == nxt1 and used0[3] not in drawn0 and len(set(used0)) == 5
    assert all(pool[i].id not in banned for i in used0)
    # the draws stay lm-eval's: items whose examples were not excluded keep their prompts
    for a, b in zip(plain[1:], got[1:]):
        hit = any(pool[pos[x.split("\nAnswer: ")[0][len("Question: "):]]].id in banned
                  for x in _examples(a))
        assert (a == b) != hit


def test_too_many_exclusions_and_tasks_without_fewshot_refuse(gsm8k, tiny_model):
    small = get_task("gsm8k", train_path=None)
    small._train = small.train_items()[:6]
    with pytest.raises(ValueError, match="fewer than num_fewshot"):
        small.fewshot_prompts(small.test_items()[:1], 5, exclude=[it.id for it in small._train[:2]])
    model = str(tiny_model("chars"))
    for task in ("humaneval", "ifeval"):  # test sets only: no pool unless given train_data
        with pytest.raises(InputError, match="no few-shot pool") as ei:
            evaluate(model, task, limit=1, num_fewshot=3)
        assert ei.value.field == "num_fewshot"
    with pytest.raises(InputError, match="plain prompts only"):
        evaluate(model, "gsm8k", limit=1, num_fewshot=3, chat=True)


def test_evaluate_fewshot_records_n_shot(tmp_path, tiny_model, gsm8k):
    task = get_task("gsm8k")
    task.gen = dataclasses.replace(task.gen, max_new_tokens=3)
    res = evaluate(str(tiny_model("chars")), task, limit=3, num_fewshot=2, out=tmp_path)
    assert [s["prompt"] for s in res["samples"]] == gsm8k.fewshot_prompts(gsm8k.test_items()[:3], 2)
    saved = json.loads(Path(res["paths"]["results"]).read_text())
    assert saved["n-shot"] == {"gsm8k": 2} and saved["configs"]["gsm8k"]["num_fewshot"] == 2
    assert saved["config"]["num_fewshot"] == 2 and saved["config"]["fewshot_seed"] == 1234
    zero = evaluate(str(tiny_model("chars")), task, limit=1)
    assert zero["n-shot"] == {"gsm8k": 0} and "num_fewshot" not in zero["config"]


def test_study_cell_passes_fewshot_and_excludes_its_subset(tmp_path, tiny_model, gsm8k):
    from sftscale.config import parse_study
    from sftscale.grid.cells import expand_cells
    from sftscale.study.stages import StageContext, eval_stage

    base = "models: [{ref: toy-S}]\ntasks: [{name: toy-math}]\nn: [0, 4]\nseeds: [0]\n"
    plain = expand_cells(parse_study(base))
    cells = expand_cells(parse_study(base + "evaluation: {num_fewshot: 3, temperature: 0.5, "
                                            "n_samples: 2}\n"))
    assert all(c.num_fewshot == 3 and c.sampling == {"temperature": 0.5, "n": 2} for c in cells)
    assert plain[0].spec_hash == expand_cells(parse_study(base))[0].spec_hash
    assert "num_fewshot" not in plain[0].spec() and "sampling" not in plain[0].spec()
    assert cells[0].spec_hash != plain[0].spec_hash

    # eval_stage: the cell's subset (train_meta.json subset_ids) never appears in context
    cell = dataclasses.replace(plain[0], model_ref=str(tiny_model("chars")), task_name="gsm8k",
                               task="gsm8k", limit=2, max_new_tokens=2, num_fewshot=3)
    first = gsm8k.fewshot_prompts(gsm8k.test_items()[:1], 3)[0]
    by_q = {it.question: it.id for it in gsm8k.train_items()}
    subset = [by_q[b.split("\nAnswer: ")[0][len("Question: "):]] for b in _examples(first)]
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    (train_dir / "train_meta.json").write_text(json.dumps({"subset_ids": subset}))
    out = tmp_path / "eval"
    out.mkdir()
    eval_stage(cell, StageContext(run_dir=tmp_path, cell_dir=tmp_path, out=out, train_dir=train_dir,
                                  cache_dir=tmp_path / "cache", share_generator=False))
    rec = json.loads(next(out.glob("samples_*.jsonl")).read_text().splitlines()[0])
    shots = [by_q[b.split("\nAnswer: ")[0][len("Question: "):]] for b in _examples(rec["prompt"])]
    assert len(shots) == 3 and not set(shots) & set(subset)


# --- k-shot on every task: examples from the training pool, never from the test set ----------

def _multihop_file(tmp_path: Path) -> str:
    p = tmp_path / "mh.jsonl"
    rows = [{"id": f"q{i}", "question": f"Who is person {i}?", "answer": f"P{i}",
             "split": "train" if i % 2 else "test"} for i in range(12)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(p)


def _train_data(tmp_path: Path) -> str:
    p = tmp_path / "instr.jsonl"
    p.write_text("".join(json.dumps({"id": f"tr{i}", "instruction": f"Say {i} twice.",
                                     "output": f"{i} {i}"}) + "\n" for i in range(10)))
    return str(p)


TASKS = [("gsm8k", {}), ("toy-math", {}), ("toy-multihop", {}), ("toy-code", {}),
         ("toy-instruct", {}), ("toy-knowledge", {}), ("fanoutqa", {"n_train": 40}),
         ("multihop-file", "file"), ("humaneval", "train_data"), ("humaneval+", "train_data"),
         ("ifeval", "train_data")]


@pytest.mark.parametrize("name,opts", TASKS, ids=[t[0] for t in TASKS])
def test_every_task_draws_its_context_from_the_training_pool_never_the_test_set(
        tmp_path, name, opts):
    from sftscale.tasks.taskdata import study_task

    if opts == "file":
        opts = {"path": _multihop_file(tmp_path)}
    elif opts == "train_data":
        opts = {"train_data": _train_data(tmp_path)}
    task = study_task(name, dict(opts))
    tests = task.test_items()[:6]
    pool_ids = {it.id for it in task.fewshot_pool()}
    test_ids = {it.id for it in task.test_items()}
    test_prompts = {task.prompt_text(it) for it in task.test_items()}
    draws = task.fewshot_draw(tests, 3, seed=5)
    prompts = task.fewshot_prompts(tests, 3, seed=5)
    for it, shots, prompt in zip(tests, draws, prompts):
        assert len(shots) == 3 and len({s.id for s in shots}) == 3
        assert {s.id for s in shots} <= pool_ids and not {s.id for s in shots} & test_ids
        assert not any(task.prompt_text(s) in test_prompts for s in shots)
        context = "".join(task.fewshot_example(s) + task.fewshot_delimiter for s in shots)
        assert prompt == context + task.prompt_text(it)
    if not task.fewshot_per_item:  # one shared draw: a common prefix, nested over k, seeded
        assert len({tuple(s.id for s in d) for d in draws}) == 1
        assert [s.id for s in task.fewshot_draw(tests, 2, seed=5)[0]] == [s.id for s in draws[0][:2]]
        assert task.fewshot_draw(tests, 3, seed=6)[0] != draws[0]
    if name == "toy-math":  # the example is exactly what finetuning shows the model
        ex = task.fewshot_pool()[0]
        assert task.fewshot_example(ex) == "".join(task.training_pair(ex))


def test_a_k_that_does_not_fit_the_toy_context_is_refused_naming_the_longest_that_fits():
    with pytest.raises(InputError) as ei:
        evaluate("toy-S", "toy-math", limit=3, num_fewshot=12)
    msg = str(ei.value)
    assert "'toy-math'" in msg and "512-token context" in msg and ei.value.field == "num_fewshot"
    longest = int(msg.rsplit("longest k that fits is ", 1)[1].split()[0])
    assert 1 <= longest < 12
    # ... and that k does run: the context is the examples, then the test prompt
    task = get_task("toy-math", limit=3)
    task.gen = dataclasses.replace(task.gen, max_new_tokens=2)
    res = evaluate("toy-S", task, limit=3, num_fewshot=longest)
    assert [s["prompt"] for s in res["samples"]] == task.fewshot_prompts(task.test_items()[:3], longest)


# --- few-shot in a study ---------------------------------------------------------------------

STUDY = """models: [{{ref: toy-S}}]
tasks: [{{name: toy-math, limit: 4, max_new_tokens: 6}}]
n: [0]
fewshot: {ks}
output: {out}
executor: {{workers: 1, threads: 1}}
"""


def test_a_study_with_fewshot_runs_resumes_and_exports_the_k_column(tmp_path):
    import pandas as pd
    from cli import run

    from sftscale.fit.run import load_fit_inputs
    from sftscale.rundir import Store, layout

    out = tmp_path / "run"
    study = tmp_path / "s.yaml"
    study.write_text(STUDY.format(ks="[1, 2]", out=out))
    r = run("run", study)
    assert r.exit_code == 0, r.output
    with Store(layout.store_path(out), readonly=True) as st:
        done = {c["key"]: c["finished_at"] for c in st.cells("done")}
    assert sorted(done) == ["toy-S__toy-math__n0", "toy-S__toy-math__n0__k1", "toy-S__toy-math__n0__k2"]
    samples = sorted((out / "cells" / "toy-S__toy-math__n0__k2" / "eval").glob("samples_*.jsonl"))
    prompt = json.loads(samples[0].read_text().splitlines()[0])["prompt"]
    assert prompt.count("\n#### ") == 2  # two worked examples before the test question

    r = run("run", study)  # resumes: nothing is computed again
    assert r.exit_code == 0, r.output
    with Store(layout.store_path(out), readonly=True) as st:
        assert {c["key"]: c["finished_at"] for c in st.cells("done")} == done

    export = pd.read_csv(out / "export.csv")
    assert {"k", "fewshot_seed"} <= set(export.columns)
    acc = export[export.metric == "accuracy"].set_index("k")
    assert sorted(acc.index) == [0, 1, 2] and set(acc["n"]) == {0}
    items = pd.read_json(out / "items.jsonl", lines=True)
    assert items.groupby("k").size().to_dict() == {0: 4, 1: 4, 2: 4}

    # the fit never puts a k-shot row on an N curve: only the plain N = 0 cell is left
    inputs = load_fit_inputs(out)
    assert len(inputs.long[inputs.long.metric == "accuracy"]) == 1
    assert float(inputs.long[inputs.long.metric == "accuracy"]["value"].iloc[0]) == acc.loc[0, "value"]
    assert len(inputs.items) == 4
    csv_only = load_fit_inputs(out / "export.csv")
    assert len(csv_only.long[csv_only.long.metric == "accuracy"]) == 1


def test_a_study_refuses_a_k_that_does_not_fit_with_exit_2(tmp_path):
    from cli import run, user_error

    study = tmp_path / "s.yaml"
    study.write_text(STUDY.format(ks="[2, 12]", out=tmp_path / "run").replace("max_new_tokens: 6",
                                                                              "max_new_tokens: 80"))
    for cmd in ("plan", "run"):
        user_error(run(cmd, study), "'toy-math'", "longest k that fits is")


def test_fewshot_cells_keep_the_other_keys_and_specs():
    from sftscale.config import parse_study
    from sftscale.grid.cells import expand_cells

    base = "models: [{ref: toy-S}]\ntasks: [{name: toy-math}, {name: toy-code, n: [4]}]\nn: [0, 4]\n"
    plain = {c.key: c.spec_hash for c in expand_cells(parse_study(base))}
    cells = expand_cells(parse_study(base + "fewshot: [1, 4]\nfewshot_seeds: [7]\n"
                                            "fewshot_on_finetuned: true\n"))
    assert {c.key: c.spec_hash for c in cells if not c.kshot} == plain
    assert sorted(c.key for c in cells if c.kshot) == [
        "toy-S__toy-code__n0__k1__fs7", "toy-S__toy-code__n0__k4__fs7",
        "toy-S__toy-code__n4__s0__k1__fs7", "toy-S__toy-code__n4__s0__k4__fs7",
        "toy-S__toy-math__n0__k1__fs7", "toy-S__toy-math__n0__k4__fs7",
        "toy-S__toy-math__n4__s0__k1__fs7", "toy-S__toy-math__n4__s0__k4__fs7"]
    assert all(c.num_fewshot == c.kshot and c.fewshot_seed == 7 for c in cells if c.kshot)


# --- speed: the shared context's KV cache, computed once ---------------------------------------

@pytest.mark.parametrize("batch_size", [3, 16])
def test_the_shared_prefix_cache_gives_the_same_generations_as_recomputing(batch_size):
    from sftscale.generation import Generator
    from sftscale.tasks.base import GenSpec

    task = get_task("toy-math", limit=10)
    prompts = task.fewshot_prompts(task.test_items(), 2, seed=3)
    spec = GenSpec(max_new_tokens=24, stop=("Question:",))
    gen = Generator("toy-S", batch_size=batch_size)
    out = {}
    for share in (True, False):
        gen.backend.share_prefix = share
        before = gen.stats["prefix_tokens_reused"]
        out[share] = gen.generate(prompts, spec)
        reused = gen.stats["prefix_tokens_reused"] - before
        assert (reused > 0) == share
    assert out[True] == out[False]
    assert any(r.strip() for r in out[True])
    # sampling draws from the same logits too
    hot = GenSpec(max_new_tokens=12, temperature=0.8, seed=1)
    gen.backend.share_prefix = True
    a = gen.generate(prompts[:5], hot)
    gen.backend.share_prefix = False
    assert gen.generate(prompts[:5], hot) == a


# --- the report and the demo's terminal lines ----------------------------------------------------

def test_the_report_draws_kshot_points_and_states_the_crossover(tmp_path):
    from rich.console import Console
    from study_helpers import RUNNER

    from sftscale.config import parse_study
    from sftscale.demo import print_kshot
    from sftscale.fit.kshot import kshot_table
    from sftscale.fit.run import load_fit_inputs
    from sftscale.report import write_report
    from sftscale.report.data import load_report_data
    from sftscale.study.runner import run_study

    cfg = parse_study("models: [{name: m1, ref: toy-S}]\ntasks: [{name: toy-math, limit: 60}]\n"
                      "n: [0, 8, 16, 32, 64, 128]\nseeds: [0, 1]\nfewshot: [1, 2, 4]\n"
                      "fewshot_seeds: [0, 1]\n")
    run = tmp_path / "run"
    run_study(cfg, out=run, runner=RUNNER, progress=False, check=False)
    d = load_report_data(run, n_boot=50)
    assert set(d.metrics["k"]) == {0} and set(d.items["k"]) == {0}  # the other sections: no k rows
    (row,) = d.kshot
    assert [p["k"] for p in row["points"]] == [1, 2, 4] and all(p["draws"] == 2 for p in row["points"])
    for p in row["points"]:  # format and substance, each with its interval
        for m in ("accuracy", "format_rate"):
            assert p[m]["lo"] <= p[m]["mid"] <= p[m]["hi"] and p[m]["n"] == 2
    c = row["crossover"]
    best = row["best"]["accuracy"]["mid"]
    assert best == max(p["accuracy"]["mid"] for p in row["points"])
    # cheap_eval's accuracy rises with N: finetuning beats the k-shot best within the grid
    assert c["n"] is not None and 8 <= c["n"] <= 128
    assert c["lo"] is not None and c["lo"] <= c["n"] and (c["hi"] is None or c["hi"] >= c["n"])
    fc = d.fits["forecasts"]["curves"][0]  # the fitted, backtested curve when it forecasts
    assert c["source"] == ("fitted curve (fits.json forecast)" if fc["status"] == "ok"
                           else "measured points")
    curve = load_fit_inputs(run).long  # the fit's curve: the k-shot rows are not on it
    assert len(curve[(curve.metric == "accuracy") & (curve.n == 0)]) == 1
    # the measured points alone give a crossover too (no fits.json)
    plain = kshot_table(_all_rows(run), None, {"toy-math": "accuracy"})
    assert plain[0]["crossover"]["source"] == "measured points" and plain[0]["crossover"]["n"]

    page = write_report(run, n_boot=50).read_text()
    assert "Examples in the prompt or in the weights" in page and "Crossover:" in page
    assert (run / "report" / "kshot_vs_finetuning.png").exists()
    assert "format_rate" in page.split("Examples in the prompt or in the weights")[1]

    con = Console(record=True, width=200)
    print_kshot(run, con)
    text = con.export_text()
    assert "toy-math: best k-shot k=" in text and "finetuning beats it from N " in text


def _all_rows(run):
    from sftscale.rundir.export import load_tables

    return load_tables(run)[0]


def test_fewshot_on_finetuned_evaluates_the_plain_cells_checkpoint_without_its_subset(tmp_path):
    from cli import run

    from sftscale.rundir import Store, layout

    out = tmp_path / "run"
    study = tmp_path / "s.yaml"
    study.write_text(STUDY.format(ks="[2]", out=out).replace("n: [0]", "n: [4]") +
                     "fewshot_on_finetuned: true\nrecipe: {max_steps: 2, min_steps: 2, early_stopping: false}\n")
    r = run("run", study)
    assert r.exit_code == 0, r.output
    with Store(layout.store_path(out), readonly=True) as st:
        keys = sorted(c["key"] for c in st.cells("done"))
    assert keys == ["toy-S__toy-math__n0__k2", "toy-S__toy-math__n4__s0",
                    "toy-S__toy-math__n4__s0__k2"]
    plain, kcell = (out / "cells" / k / "train" for k in keys[1:])
    meta = json.loads((kcell / "train_meta.json").read_text())
    assert meta == json.loads((plain / "train_meta.json").read_text())  # the same training
    rec = json.loads(next((kcell.parent / "eval").glob("samples_*.jsonl")).read_text().splitlines()[0])
    task = get_task("toy-math")
    by_prompt = {task.fewshot_example(it): it.id for it in task.train_items()}
    shots = [by_prompt[b] for b in rec["prompt"].split("\n\n")[:-1]]
    assert len(shots) == 2 and not set(shots) & set(meta["subset_ids"])


def test_the_demo_study_runs_k_1_2_4_on_the_four_toy_tasks_and_they_fit():
    from sftscale.config import load_study
    from sftscale.demo import study_file
    from sftscale.grid.cells import expand_cells
    from sftscale.models import resolve_model
    from sftscale.plan.fewshot import fewshot_problems

    cfg = load_study(study_file())
    kcells = [c for c in expand_cells(cfg) if c.kshot]
    assert sorted((c.task, c.kshot) for c in kcells) == sorted(
        (t, k) for t in ("toy-math", "toy-multihop", "toy-code", "toy-instruct") for k in (1, 2, 4))
    assert all(c.n == 0 and c.fewshot_seed is None for c in kcells)  # one draw
    assert fewshot_problems(cfg, {m.label: resolve_model(m.ref) for m in cfg.models}) == []
