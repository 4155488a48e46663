"""Knowledge injection: config errors, the paired bootstrap, the facts file, one tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sftscale.io import InputError
from sftscale.knowledge import file_source, paired_difference, parse_config
from sftscale.knowledge.stats import bootstrap_rows, paired_contrast

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- config
def _err(text: str) -> InputError:
    with pytest.raises(InputError) as ei:
        parse_config(text, "k.yaml")
    return ei.value


def test_config_unknown_field_names_line_and_field():
    e = _err("name: k\nmodel: toy-S\nstage:\n  epochs: 2\n  lrr: 0.1\n")
    assert (e.path, e.line, e.field) == ("k.yaml", 5, "stage.lrr")
    assert "allowed" in e.reason and "lr" in e.reason


def test_config_bad_value_and_missing_field():
    e = _err("model: toy-S\nreasoning:\n  n: [64, 0]\n")
    assert e.line == 3 and e.field == "reasoning.n" and "N must be >= 1" in e.reason
    e = _err("facts: toy\n")
    assert e.field == "model" and "missing" in e.reason
    e = _err("model: toy-S\nbootstrap: {level: 1.5}\n")
    assert e.line == 2 and e.field == "bootstrap.level"
    e = _err("model: toy-S\nbase: false\n")
    assert "no starting point" in e.reason


def test_config_defaults_and_shipped_configs_parse():
    c = parse_config("model: toy-S\nreasoning: {n: [256, 16]}\n")
    assert c.reasoning.n == [16, 256] and c.stage.seeds == [0] and c.eval.retrieval
    from sftscale.knowledge import load_config

    for name in ("knowledge-toy.yaml", "knowledge-toy-full.yaml", "knowledge-real.yaml"):
        cfg = load_config(ROOT / "studies" / name)
        assert cfg.name.startswith("knowledge")


# --------------------------------------------------------------------------- toy source v2
def test_toy_source_tests_only_people_whose_qa_it_never_trains():
    from sftscale.knowledge import toy_source
    from sftscale.toyworld.world import CHAINS, World

    src = toy_source(0, people=96, qa_share=0.5, recall=0)
    world = World.generate(0)
    corpus = {p.name for p in world.corpus_people}
    people = {f.triple[0] for f in src.facts}
    assert len(people) == 96 and not people & corpus
    assert {p.name for p in world.heldout_people} < people  # held-out first, then drawn names
    qa = set(src.qa_people)
    tested = {it.meta["person"] for qt in ("direct", "multihop") for it in src.questions[qt]}
    assert len(qa) == 48 and len(tested) == 48 and not qa & tested and qa | tested == people
    assert len(src.questions["direct"]) == len(src.questions["multihop"]) == 144
    # no QA pair of the stage names a test person; every QA person has both question types
    pairs = src.qa_examples(4, seed=0)
    assert all(not any(t in p + c for t in tested) for _, p, c in pairs)
    assert {k.split("/", 1)[1].split("|")[0] for k in src.qa_pool} == qa
    # two-hop: the new fact's object (bridge) is written out, then the pretrained hop
    for it in src.questions["multihop"]:
        r1, r2 = CHAINS[it.meta["chain"]]
        fact = next(f for f in src.facts if f.id == it.meta["fact_ids"][0])
        assert fact.triple[1] == r1 and fact.triple[2] == it.meta["bridge"]
        country = (world.city_country if r2 == "located_in" else world.company_country)[it.meta["bridge"]]
        verb = "is a city in" if r2 == "located_in" else "was founded in"
        assert it.target == [country]
        assert it.completion.endswith(f"{it.meta['bridge']} {verb} {country}.\nAnswer: {country}")
    assert {f.id for f in src.test_facts()} == {i for it in src.questions["direct"] for i in it.meta["fact_ids"]}


def test_fact_documents_paraphrases_orders_and_exposures():
    from sftscale.knowledge import toy_source

    src = toy_source(0, limit=6, recall=0)  # two people
    docs = src.fact_documents(paraphrases=5, exposures=40, seed=3)
    assert len(docs) == 2 * 40
    for uid, facts in src.units:
        mine = [d for i, _, d in docs if i.startswith(f"fact/{uid}/")]
        assert len(mine) == 40 and len(set(mine)) == 5
        name = facts[0].triple[0]
        for d in mine:  # all three facts, each with the full name, objects in the text
            assert d.count(name) == 3 and all(f.triple[2] in d for f in facts)
        orders = {tuple(sorted((f.triple[1] for f in facts), key=lambda r: d.index(
            next(f.triple[2] for f in facts if f.triple[1] == r)))) for d in mine}
        assert len(orders) >= 2  # the facts come in different orders
    assert docs == src.fact_documents(paraphrases=5, exposures=40, seed=3)
    assert docs != src.fact_documents(paraphrases=5, exposures=40, seed=4)
    fresh = src.fact_documents(paraphrases=None, exposures=40, seed=3)
    assert len(fresh) == 80 and len({d for _, _, d in fresh}) > 10


def test_facts_mix_composition():
    from sftscale.knowledge import toy_source
    from sftscale.knowledge.run import Start, facts_mix

    cfg = parse_config("model: toy-S\nstage: {people: 4, qa_share: 0.5, paraphrases: 3, exposures: 10, "
                       "qa_examples: 2, replay: 0.5, replay_own: 0.5, format_examples: 6}\n")
    src = toy_source(0, people=4, qa_share=0.5, recall=0)
    own = [(f"own/{i}", "Question: q\n", "a") for i in range(3)]
    mix = facts_mix(src, cfg, Start("reasoning-3", "reasoning", "toy-S", n=3, own=own), seed=0)
    kinds = [i.split("/")[0].split("#")[0] for i, _, _ in mix]
    assert kinds.count("fact") == 4 * 10 and kinds.count("qa") == 2 * 3 * 2 * 2
    assert kinds.count("own") == 10 and kinds.count("corpus") == 10 and kinds.count("format") == 6
    assert len({i for i, _, _ in mix}) == len(mix)  # unique ids (the training pool needs them)
    base = facts_mix(src, cfg, Start("base", "base", "toy-S"), seed=0)
    assert [i for i, _, _ in base].count("own") == 0 and sum(i.startswith("corpus/") for i, _, _ in base) == 20


# --------------------------------------------------------------------------- bootstrap
def test_pairing_narrows_interval_on_correlated_rows():
    rng = np.random.default_rng(1)
    difficulty = rng.random(300)
    a = (difficulty < 0.55).astype(float)  # model a solves the easier 55%
    b = (difficulty < 0.45).astype(float)  # model b the easier 45%: a superset relation
    p = paired_difference(a, b, n_boot=2000, seed=0)
    u = paired_difference(a, b, n_boot=2000, seed=0, paired=False)
    assert p["diff"] == pytest.approx(a.mean() - b.mean())
    assert (p["hi"] - p["lo"]) < 0.6 * (u["hi"] - u["lo"])
    assert p["lo"] > 0 and p["p_le_0"] == 0.0
    assert u["lo"] < p["lo"]


def test_gain_contrast_removes_a_closed_book_head_start():
    """Start a answers 12% closed book and 20% after injection; start b 0% and 10%. a leads
    after injection (+10 pts), yet it gained less from the facts (8 vs 10 pts): the contrast
    of gains is -2 pts, with the same paired draws as the plain difference."""
    i = np.arange(200)
    a_inj, a_bef = (i < 40).astype(float), (i < 24).astype(float)
    b_inj, b_bef = ((i >= 100) & (i < 120)).astype(float), np.zeros(200)
    d = paired_contrast([a_inj, b_inj], [1, -1], n_boot=500, seed=0)
    assert d == paired_difference(a_inj, b_inj, n_boot=500, seed=0)
    assert d["diff"] == pytest.approx(0.10) and d["lo"] > 0
    g = paired_contrast([a_inj, a_bef, b_inj, b_bef], [1, -1, -1, 1], n_boot=500, seed=0)
    assert g["diff"] == pytest.approx(-0.02) and g["lo"] < 0 < g["hi"] and g["p_le_0"] > 0.5


def test_bootstrap_rows_seeds_and_identical_rows():
    rng = np.random.default_rng(0)
    x = (rng.random((2, 50)) < 0.5).astype(float)
    point, reps = bootstrap_rows([x, x], n_boot=300, seed=0)
    assert point[0] == point[1] == pytest.approx(x.mean())
    assert np.allclose(reps[:, 0], reps[:, 1])  # same draws for every row
    with pytest.raises(ValueError):
        bootstrap_rows([x, x[:, :10]], n_boot=100)


# --------------------------------------------------------------------------- facts file
def test_shipped_recent_events_file():
    src = file_source(ROOT / "examples" / "knowledge" / "recent_events.jsonl")
    assert len(src.facts) >= 18
    assert len(src.questions["direct"]) == len(src.questions["multihop"]) == len(src.facts)
    item = src.questions["multihop"][0]
    assert src.context(item) in src.prompt(item, retrieval=True)
    assert src.prompt(item).endswith("Answer:")
    assert src.score(item, " " + item.target[0])["em"]


def test_facts_file_errors(tmp_path):
    p = tmp_path / "f.jsonl"
    p.write_text('{"type": "fact", "id": "a", "text": "A is B."}\n'
                 '{"type": "direct", "question": "What is A?", "answer": "B", "fact_ids": ["zz"]}\n')
    with pytest.raises(InputError) as ei:
        file_source(p)
    assert ei.value.line == 2 and ei.value.field == "fact_ids"
    p.write_text('{"type": "fact", "id": "a", "text": "A is B."}\n\n'
                 '{"type": "multihop", "question": "Q?", "answer": 3, "fact_ids": ["a"]}\n')
    with pytest.raises(InputError) as ei:
        file_source(p)
    assert ei.value.line == 3 and ei.value.field == "answer"
    j = tmp_path / "f.json"
    j.write_text(json.dumps({"facts": [{"id": "a", "text": "A is B."}],
                             "direct": [{"question": "What is A?", "answer": "B"}]}))
    with pytest.raises(InputError) as ei:
        file_source(j)
    assert ei.value.field == "direct[0].fact_ids"
    assert file_source(j, need_fact_ids=False).questions["direct"][0].target == ["B"]


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_tiny_end_to_end(tmp_path, tiny_model):
    from sftscale.knowledge import run_knowledge

    model = tiny_model("toy")  # random-init 2-layer Llama with the toy tokenizer, marked toy
    # 40 facts-stage epochs: the cloze check below reads 3 new facts, and with 20 epochs one
    # start recalled none of the v3 world's (1 and 0 of 3; 40 epochs: 2 and 2)
    cfg = parse_config(f"""
name: tiny
model: {model}
facts: toy
reasoning: {{n: [8], recipe: {{min_steps: 4, max_steps: 4}}}}
stage: {{limit: 6, paraphrases: 4, exposures: 48, qa_examples: 2, epochs: 40, lr: 1.0e-2,
         batch_size: 8, packing: false, replay: 0.25, format_examples: 2, recipe: {{min_steps: 0}}}}
eval: {{recall: 6, batch_size: 8}}
bootstrap: {{n_boot: 200}}
""")
    out = tmp_path / "run"
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # much faster than 2 threads on a busy 2-core machine
    try:
        table = run_knowledge(cfg, out)
        mtimes = sorted(p.stat().st_mtime for p in out.rglob("train_meta.json"))
        again = run_knowledge(cfg, out)
    finally:
        torch.set_num_threads(threads)
    assert (out / "knowledge" / "table.json").is_file() and (out / "knowledge" / "table.md").is_file()
    assert json.loads((out / "knowledge" / "table.json").read_text())["rows"] == table["rows"]
    conds = {(r["start"], r["condition"]) for r in table["rows"]}
    assert conds == {(s, c) for s in ("base", "reasoning-8") for c in ("injected", "before", "retrieval")}
    assert table["n_facts"] == 6 and table["n_items"]["direct"] == 3  # 1 QA + 1 test person
    for r in table["rows"]:
        for qt in ("direct", "multihop"):
            for m in ("em", "f1", "contains", "format_ok"):
                c = r[qt][m]
                assert c["lo"] <= c["mean"] <= c["hi"]
    diffs = {(d["condition"], d["question_type"], d["metric"]) for d in table["differences"]}
    assert ("injected", "multihop", "em") in diffs and len(diffs) == 4 * 2 * 3
    # the gain contrast is the difference of the rows' own gains over closed book
    mean = {(r["start"], r["condition"]): r["multihop"]["em"]["mean"] for r in table["rows"]}
    g = next(d for d in table["differences"] if d["condition"] == "gain"
             and d["question_type"] == "multihop" and d["metric"] == "em")
    assert (g["a"], g["b"]) == ("reasoning-8", "base")
    assert g["diff"] == pytest.approx((mean[("reasoning-8", "injected")] - mean[("reasoning-8", "before")])
                                      - (mean[("base", "injected")] - mean[("base", "before")]))
    assert g["lo"] <= g["diff"] <= g["hi"]
    # the facts stage taught the new facts: cloze recall of the new facts rises from 0
    rec = {(r["start"], r["condition"]): r["recall"] for r in table["rows"] if r["recall"]}
    for s in ("base", "reasoning-8"):
        assert rec[(s, "injected")]["new"] > rec[(s, "before")]["new"]
    # a rerun reuses every cell and evaluation: same table, no new checkpoints
    assert again["rows"] == table["rows"]
    assert sorted(p.stat().st_mtime for p in out.rglob("train_meta.json")) == mtimes
    # facts stages trained in two spawned processes give the same table; the start (trained in
    # this process) with the same one torch thread as above: 2 threads round differently, and
    # 670 facts steps at lr 1e-2 turn that into another table
    # ... and a study run directory holding the same reasoning cell (and, first in order, a
    # cell of another task) serves as the start: linked, not trained again
    from sftscale.io import link_tree

    study = tmp_path / "study"
    link_tree(next((out / "facts" / "base").iterdir()), study / "cells" / "a" / "train")
    link_tree(out / "starts" / "reasoning-8" / "cell", study / "cells" / "x" / "train")
    said: list[str] = []
    torch.set_num_threads(1)
    try:
        par = run_knowledge(cfg.model_copy(update={"stage": cfg.stage.model_copy(update={"workers": 2})}),
                            tmp_path / "par", log=said.append, reuse=[study])
    finally:
        torch.set_num_threads(threads)
    ckpt = sorted((tmp_path / "par" / "starts" / "reasoning-8" / "cell" / "ckpt").iterdir())
    assert ckpt and all(f.stat().st_ino == (study / "cells" / "x" / "train" / "ckpt" / f.name).stat().st_ino
                        for f in ckpt)
    assert any("reasoning-8: the study's finished cell x (linked" in m for m in said)
    def scores(t):  # everything but where and how fast the facts stages ran
        return [{k: v for k, v in r.items() if k != "facts_stage"} for r in t["rows"]]

    def losses(t):
        return [[f["final_loss"] for f in r.get("facts_stage") or []] for r in t["rows"]]

    assert scores(par) == scores(table) and par["differences"] == table["differences"]
    assert losses(par) == losses(table) and any(losses(table))
    # more facts in the same directory: every evaluation is redone for the new questions
    # (not the answers to the old questions read back from the old directories)
    # (2 epochs from here on: what follows checks what is redone, not what is learnt)
    more = cfg.model_copy(update={"stage": cfg.stage.model_copy(update={"limit": 12, "epochs": 2})})
    t2 = run_knowledge(more, out)
    assert t2["n_items"]["direct"] > table["n_items"]["direct"]
    files = sorted((out / "eval").rglob("samples_*.jsonl"))
    assert len(files) == 2 * 3 * 2  # starts x conditions x question types
    for f in files:
        assert len(f.read_text().splitlines()) == t2["n_items"][f.parent.name], f
    for r in t2["rows"]:
        assert all(r[qt]["em"]["mean"] is not None for qt in ("direct", "multihop"))
    # another reasoning recipe (as after an upgrade that changes a task's version or a model's
    # defaults): the starting point and its facts cells are trained again, not refused
    other = more.model_copy(update={"reasoning": more.reasoning.model_copy(
        update={"recipe": {"min_steps": 5, "max_steps": 5}})})
    t3 = run_knowledge(other, out)
    start = json.loads((out / "starts" / "reasoning-8" / "cell" / "train_meta.json").read_text())
    assert start["steps"] == 5
    from sftscale.models import weights_hash

    now = weights_hash(out / "starts" / "reasoning-8" / "cell" / "ckpt")
    used = [f["dir"] for r in t3["rows"] if r["start"] == "reasoning-8" for f in r.get("facts_stage") or []]
    metas = [json.loads((Path(d) / "train_meta.json").read_text()) for d in used]
    assert metas and all(m["weights_hash"] == now for m in metas)  # stale ones were replaced


def test_report_states_knowledge_result_with_intervals():
    from sftscale.report.findings import knowledge_finding
    from sftscale.report.html import _knowledge

    em = lambda m, lo, hi: {"em": {"mean": m, "lo": lo, "hi": hi}}  # noqa: E731
    table = {"facts": "toy", "model": "toy-S", "n_facts": 288, "n_items": {"direct": 144, "multihop": 144},
             "config": {"stage": {"qa_share": 0.5, "seeds": [0, 1, 2]}},
             "rows": [{"start": "base", "condition": "injected", "direct": em(0.903, 0.854, 0.951),
                       "multihop": em(0.861, 0.802, 0.917), "recall": {"corpus": 0.967, "new": 0.958}}],
             "differences": [{"condition": "gain", "metric": "em", "question_type": "multihop", "a": "reasoning-256",
                              "b": "base", "diff": -0.031, "lo": -0.094, "hi": 0.028}]}
    f = knowledge_finding(table)
    assert "90.3" in f and "85.4" in f and "95.1" in f and "86.1" in f
    assert "never trained on" in f and "3 facts-stage seeds" in f
    assert "multihop" in f and ("−3.1 pts" in f or "-3.1 pts" in f)
    assert "96.7" in _knowledge(table, None)  # corpus recall after injection, in %
    assert "not training randomness" not in f
    table["config"]["stage"]["seeds"] = [0]
    assert "not training randomness" in knowledge_finding(table)
