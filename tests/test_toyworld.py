"""Tests of the toy world: determinism, corpus hygiene, splits, tokenizer, scoring, shipped models."""

from __future__ import annotations

import json
import re
import time

import pytest

from sftscale.tasks import get_task
from sftscale.toyworld import TOY_MODELS, TOY_SFT_DEFAULTS, toy_model_path
from sftscale.toyworld.corpus import build_corpus, math_pool_problems, math_test_problems
from sftscale.toyworld.world import CHAINS, COUNTRIES, World


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(0)


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(toy_model_path("toy-S")))


def test_world_deterministic_per_seed():
    a, b, c = World.generate(3), World.generate(3), World.generate(4)
    assert a.people == b.people and a.company_country == b.company_country
    assert a.people != c.people
    assert len({p.name for p in a.people}) == len(a.people)
    groups = {g: len(a.group(g)) for g in ("heldout", "test", "pool")}
    assert groups["heldout"] == round(0.2 * len(a.people)) and min(groups.values()) > 0


def test_corpus_hygiene(world):
    docs, stats = build_corpus(world, 40_000, seed=1)
    text = "\n".join(docs)
    assert stats["tokens"] >= 40_000 and all(v > 0 for v in stats["tokens_by_kind"].values())
    for p in world.heldout_people:  # held-out people never appear
        assert p.name not in text
    corpus_names = [p.name for p in world.corpus_people]
    assert sum(n in text for n in corpus_names) > 0.9 * len(corpus_names)
    country_re = re.compile(r"\b(" + "|".join(COUNTRIES) + r")\b")
    for d in docs:  # composed facts (person -> country) never stated: no bio names a country
        if any(n in d for n in corpus_names):
            assert not country_re.search(d), d
    # no task formats in the corpus
    assert "####" not in text and "\nAnswer:" not in text and "Question:" not in text
    assert "Answer key:" in text or "Part Q:" in text  # the format tokens are seen elsewhere


def test_math_v2_chains_are_explicit_and_bounded():
    """Every step of a toy-math answer is a correct equation within 0..MAX_VALUE; stories and drills
    carry the same equations without the task format."""
    import random

    from sftscale.toyworld.arith import MAX_OPERAND, MAX_VALUE, drill, random_problem

    eq = re.compile(r"(\d+) ([+-]) (\d+) = (\d+)\.")
    rng = random.Random(3)
    for p in math_test_problems(200) + [random_problem(rng) for _ in range(200)]:
        sol = p.solution()
        steps = eq.findall(sol)
        assert len(steps) == p.n_steps in (2, 3) and sol.endswith(f"\n#### {p.answer}")
        x = p.start
        for a, sym, b, c in steps:  # a chain: each step starts from the previous result
            a, b, c = int(a), int(b), int(c)
            assert a == x and 1 <= b <= MAX_OPERAND and 0 <= c <= MAX_VALUE
            assert c == (a + b if sym == "+" else a - b)
            x = c
        assert x == p.answer and str(p.start) in p.question() and "=" not in p.question()
        story = p.story(rng)
        assert eq.findall(story) == steps and "#" not in story and "How many" not in story
    for _ in range(50):
        for a, sym, b, c in eq.findall(drill(rng)):
            assert int(c) == (int(a) + int(b) if sym == "+" else int(a) - int(b))


def test_splits_disjoint(world):
    test_keys = {p.key() for p in math_test_problems(200)}
    assert len(test_keys) == 200
    assert not test_keys & {p.key() for p in math_pool_problems(2000)}
    mh = get_task("toy-multihop")
    tr, te = mh.train_items(), mh.test_items()
    assert len(tr) >= 10_000 and len(te) == 200
    train_people = {i.meta["person"] for i in tr}
    test_people = {i.meta["person"] for i in te}
    assert not train_people & test_people
    assert test_people <= {p.name for p in world.group("test")}
    assert len({(i.meta["person"], i.meta["chain"]) for i in te}) == 200
    held = {p.name for p in world.heldout_people}
    for split in ("facts", "direct", "multihop"):
        kt = get_task("toy-knowledge", split=split)
        assert {i.meta["person"] for i in kt.test_items()} <= held
        if split != "facts":
            assert not {i.meta["person"] for i in kt.train_items()} & held
    assert len(get_task("toy-math").train_items()) >= 10_000


def test_tokenizer_round_trip_and_chat(tok):
    for s in ("#### 12", "Answer: Veloria", "Then Mia has 12 + 5 = 17 pens.\n#### 17",
              "Question: In which country was Ada Baker born?\n"):
        ids = tok(s, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == s
    assert len(tok("1234", add_special_tokens=False)["input_ids"]) == 4  # one token per digit
    held = World.generate(0).heldout_people[0].name  # held-out names are tokenisable
    assert tok.unk_token_id not in tok(held, add_special_tokens=False)["input_ids"]
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert chat == "<|user|>\nHi\n<|assistant|>\n"
    assert tok.eos_token_id is not None and tok.pad_token_id is not None
    assert tok.pad_token_id != tok.eos_token_id


def test_shipped_tokenizer_is_reproducible(tok):
    from sftscale.toyworld.tokenizer import build_tokenizer

    assert build_tokenizer().get_vocab() == tok.get_vocab()


@pytest.mark.parametrize("name,opts", [("toy-math", {}), ("toy-multihop", {}),
                                       ("toy-multihop", {"reasoning": False}),
                                       ("toy-knowledge", {"split": "direct"}),
                                       ("toy-knowledge", {"split": "multihop"})])
def test_gold_completions_score_correct(name, opts, tok):
    task = get_task(name, **opts)
    items = task.test_items()[:40] + task.train_items()[:40]
    for it in items:
        prompt, completion = task.training_pair(it)
        ids = tok(prompt + completion, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids
        response = tok.decode(tok(completion, add_special_tokens=False)["input_ids"])
        rec = task.score(it, response)
        assert rec["format_ok"] and rec["correct"], (it.id, response, rec)
        wrong = task.score(it, response.rsplit(" ", 1)[0] + " Nowhere")
        assert not wrong["correct"]


def test_knowledge_facts_split():
    kt = get_task("toy-knowledge", split="facts")
    item = kt.test_items()[0]
    assert kt.score(item, " " + item.target[0] + ".")["correct"]
    assert not kt.score(item, " Nowhere.")["correct"]
    pairs = kt.fact_pairs()
    assert len(pairs) == 4 * len(kt.facts()) and all(p == "" for p, _ in pairs)


@pytest.mark.parametrize("name", TOY_MODELS)
def test_shipped_model_loads_and_recalls(name, world):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sftscale.toyworld.pretrain import fact_recall

    path = toy_model_path(name)
    AutoModelForCausalLM.from_pretrained(str(path))  # pays transformers' lazy imports once
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(path))
    tok = AutoTokenizer.from_pretrained(str(path))
    load_s = time.perf_counter() - t0
    assert load_s < 2  # 0.13 s measured here at load average ~15
    meta = json.loads((path / "toy_meta.json").read_text())
    assert model.config.tie_word_embeddings and model.config.model_type == "llama"
    import random

    rng = random.Random(7)
    corpus = rng.sample(world.person_facts(world.corpus_people), 50)
    held = rng.sample(world.person_facts(world.heldout_people), 50)
    rc, rh = fact_recall(model, tok, corpus), fact_recall(model, tok, held)
    # margin below the recall measured at the end of pretraining (toy_meta.json)
    assert rc >= meta["recall"]["corpus"] - 0.15, (rc, meta["recall"])
    assert rh <= 0.2, rh  # chance is about 1/48 (cities) to 1/40 (companies)


def test_sft_defaults_are_complete():
    for k in ("lr", "batch_size", "epochs", "min_steps"):
        assert k in TOY_SFT_DEFAULTS


def test_pretrain_smoke(tmp_path):
    """A few steps through the CLI path: output loads and carries its meta."""
    from transformers import AutoModelForCausalLM

    from sftscale.io import sha256_file
    from sftscale.toyworld.pretrain import pretrain_toy

    meta = pretrain_toy("S", tmp_path / "m", seed=1, steps=2, eval_every=2, log=lambda *_: None)
    assert meta["steps"] == 2 and meta["tokens"] == 2 * 16 * 128
    assert AutoModelForCausalLM.from_pretrained(str(tmp_path / "m")).num_parameters() == meta["parameters"]
    again = pretrain_toy("S", tmp_path / "m2", seed=1, steps=2, eval_every=2, log=lambda *_: None)
    assert again["final_loss"] == meta["final_loss"]  # reproducible from the seed
    assert sha256_file(tmp_path / "m" / "model.safetensors") == sha256_file(tmp_path / "m2" / "model.safetensors")
    assert set(CHAINS) == {"birth_country", "home_country", "employer_country"}


def test_demo_studies_cover_the_four_capabilities():
    from sftscale.config import load_study
    from sftscale.demo import study_file
    from sftscale.io import InputError

    four = {"toy-math", "toy-multihop", "toy-code", "toy-instruct"}
    names = {}
    for quick, full in ((False, False), (True, False), (False, True)):
        cfg = load_study(study_file(quick, full))
        assert {t.name for t in cfg.tasks} == four
        names[(quick, full)] = {m.ref for m in cfg.models}
    assert names[(False, True)] == {"toy-S", "toy-M"} and names[(False, False)] == {"toy-S"}
    check = load_study(study_file().parent / "toy-check.yaml")  # the learnability check's grid
    assert {t.name for t in check.tasks} == four and check.n == [0, 64, 1024] and check.seeds == [0, 1]
    assert all(t.limit == 60 for t in check.tasks)
    assert [m.ref for m in check.models] == ["toy-S", "toy-M"]  # toy-M is compared with toy-S at N = 1024
    with pytest.raises(InputError):
        study_file(quick=True, full=True)


def test_probe_finetunes_with_the_models_own_defaults(tmp_path):
    """toy-probe reads the model's ``sft_defaults`` (toy_meta.json); explicit options win."""
    import json
    import shutil

    from sftscale.toyworld.probe import probe

    d = tmp_path / "toy"
    shutil.copytree(toy_model_path("toy-S"), d)
    meta = json.loads((d / "toy_meta.json").read_text())
    meta["sft_defaults"] = {"min_steps": 2, "max_steps": 2}
    (d / "toy_meta.json").write_text(json.dumps(meta))
    rows = probe(str(d), "toy-math", [0, 4], limit=2)
    assert [r["n"] for r in rows] == [0, 4] and "steps" not in rows[0]
    assert rows[1]["steps"] == 2
    assert probe(str(d), "toy-math", [4], limit=2, min_steps=3, max_steps=3)[0]["steps"] == 3


def test_no_two_task_prompts_differ_only_in_words_the_models_cannot_tell_apart():
    """A word the corpus never shows collapses onto one shared vector in both shipped models
    (toy-code v1's "returns x plus 7" / "returns x minus 7": toy-M wrote ``x - 7`` for both).
    The check flags that pair on the shipped models, and no toy task has such a pair."""
    from sftscale.toyworld.probe import indistinct_pairs

    models = [toy_model_path(m) for m in TOY_MODELS]
    v1 = ["Task: Write a Python function solve(x) that returns x plus 7.\nSolution:\n",
          "Task: Write a Python function solve(x) that returns x minus 7.\nSolution:\n",
          "Task: Write a Python function solve(x) that returns x times 7.\nSolution:\n"]
    assert indistinct_pairs(v1, models) == {(" minus", " plus"): 1}  # " times" is in the corpus
    for name in ("toy-math", "toy-multihop", "toy-code", "toy-instruct", "toy-knowledge"):
        task = get_task(name)
        prompts = [task.prompt_text(it) for it in [*task.train_items(), *task.test_items()]]
        assert indistinct_pairs(prompts, models) == {}, name


def test_name_errors_counts_answers_that_rename_the_person():
    from sftscale.toyworld.probe import name_errors

    w = World.generate(0)
    first = {}
    for p in w.people:
        first.setdefault(p.name.split()[0], []).append(p.name)
    a, b = next(v for v in first.values() if len(v) >= 2)[:2]
    q = f"Question: Where does {a} live? Wrap your whole answer in double quotes.\nResponse:\n"
    rows = [{"prompt": q, "response": f'"{a} lives in X."', "correct": True},
            {"prompt": q, "response": f'"{b} lives in X."', "correct": False},  # renamed
            {"prompt": q, "response": f'"{a} lives in X."', "correct": False},  # wrong city only
            {"prompt": "Question: no one here\nResponse:\n", "response": "", "correct": False}]
    got = name_errors(rows, w)
    assert got == {"items": 3, "wrong": 2, "shared_first": 3, "wrong_shared_first": 2, "renamed": 1}


def test_no_test_person_shares_a_first_name_with_a_training_person():
    """Finetuning teaches the training people's names: a test namesake of one loses its last
    name to it (docs/footguns.md), so the split keeps first names on one side."""
    w = World.generate(0)
    pool = {p.name.split()[0] for p in w.group("pool")}
    test = {p.name.split()[0] for p in w.group("test")}
    assert not pool & test and len(w.group("test")) == 67 and len(w.group("pool")) == 125
