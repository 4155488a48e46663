"""The pretraining corpus of the toy world (v2).

Documents (plain text, joined by the tokenizer's end-of-text token when packed):

- person bios: 1-3 facts of one corpus person, each in a random paraphrase, in random order;
- entity notes: 1-3 facts about cities (country, capital) and companies (country of founding);
- arithmetic (toy-math v2, ``arith``): worked stories (each step's sentence then its equation,
  "Ada bought 7 more. 12 + 7 = 19.") and equation drills ("23 + 8 = 31. 40 - 6 = 34."), never
  in the Question/#### task format;
- code and instruction documents from ``toyworld.code`` / ``toyworld.instruct``
  (``corpus_documents(world, rng, n)``, owned by those modules);
- on ``header_share`` of documents a short header line that contains the task formats' tokens
  outside the task format ("Answer key:", "Part Q:", "Entry #12:"), so that no format token is
  unseen in pretraining (prototype pitfall 1).

Composed facts (person -> country) are never stated; held-out people never appear.
The mix is controlled by token share (``shares``); the corpus is generated for a token
budget, so a longer pretraining sees fresh stories and fresh bio combinations, not repeats.

Not handled: any other domain text; checking that code/instruct documents avoid the task
formats (their modules own that); the token count uses the tokenizer's pre-tokenizer regex
(``pieces.PIECE_RE``, the tokenizer's own pattern), which matches the tokenizer exactly for in-vocabulary text.
"""

from __future__ import annotations

import random

from .arith import MATH_TEST_RESERVE, MathProblem, drill, math_pool_problems, math_test_problems, random_problem  # noqa: F401
from .pieces import count_tokens
from .world import TEMPLATES, World, render_fact

HEADERS: tuple[str, ...] = ("Part A:", "Part B:", "Part Q:", "Answer key:", "Entry #{n}:",
                            "Note #{n}", "Q and A notes:", "Section {n}:", "Answer sheet #{n}",
                            "A short note:", "Question set {n}:",
                            # v2: the tokens of toy-code's and toy-instruct's formats
                            "Task list {n}:", "Solution sheet #{n}", "Response key:",
                            "From the ```python``` notes:", "Python notes, page {n}:")


def header(rng: random.Random) -> str:
    return rng.choice(HEADERS).format(n=rng.randint(1, 99))


def person_bio(world: World, person, rng: random.Random) -> str:
    rels = rng.sample(("born_in", "lives_in", "works_for"), rng.randint(1, 3))
    return " ".join(render_fact(person.name, r, person.obj(r), rng=rng) for r in rels)


def entity_note(facts: list[tuple[str, str, str]], rng: random.Random) -> str:
    chosen = rng.sample(facts, rng.randint(1, 3))
    return " ".join(render_fact(s, r, o, rng=rng) for s, r, o in chosen)


# Default token shares of the v2 corpus (bios take the rest). "code" and "instruct" are the
# documents of ``toyworld.code`` / ``toyworld.instruct`` (their ``corpus_documents``).
SHARES: dict[str, float] = {"story": 0.22, "drill": 0.1, "entity": 0.12, "code": 0.12, "instruct": 0.08}
DOMAIN_MODULES = ("code", "instruct")


def domain_module(kind: str):
    """``toyworld.code`` or ``toyworld.instruct``; None when that module is not there."""
    import importlib

    name = {"code": "sftscale.toyworld.code", "instruct": "sftscale.toyworld.instruct"}[kind]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name == name:
            return None
        raise


def available_shares(shares: dict | None = None) -> dict[str, float]:
    """``shares`` (default ``SHARES``) without the code/instruct kinds whose module is absent."""
    shares = dict(SHARES if shares is None else shares)
    return {k: v for k, v in shares.items() if k not in DOMAIN_MODULES or domain_module(k) is not None}


def build_corpus(world: World, n_tokens: int, seed: int = 0, shares: dict | None = None,
                 header_share: float = 0.15, exclude_math: set | None = None,
                 math_share: float | None = None, entity_share: float = 0.15) -> tuple[list[str], dict]:
    """Documents totalling about ``n_tokens`` tokens, and counts by kind.

    Kinds are chosen so each kind's token share tracks its target (``shares``, default
    ``SHARES``; person bios take the rest). ``exclude_math`` holds ``MathProblem.key()`` values
    that must not be told as stories (the toy-math test set). A ``code``/``instruct`` share whose
    module is absent raises ValueError. ``math_share`` (v1 callers, e.g. knowledge replay) selects
    the bios + entities + arithmetic mix instead: ``entity_share`` entities, ``math_share``
    arithmetic (2/3 stories, 1/3 drills), the rest bios.
    """
    if math_share is not None:
        shares = {"story": math_share * 2 / 3, "drill": math_share / 3, "entity": entity_share}
    rng = random.Random(f"corpus-{world.seed}-{seed}")
    people = world.corpus_people
    efacts = world.entity_facts()
    target = {k: v for k, v in (SHARES if shares is None else shares).items() if v > 0}
    target["bio"] = 1.0 - sum(target.values())
    mods = {k: domain_module(k) for k in DOMAIN_MODULES if k in target}
    missing = [k for k, m in mods.items() if m is None]
    if missing:
        raise ValueError(f"corpus share for {missing} but toyworld has no such module")
    buffers: dict[str, list[str]] = {k: [] for k in mods}
    counts = {k: 0 for k in target}
    docs_by = {k: 0 for k in target}
    docs: list[str] = []
    total = 0
    exclude_math = exclude_math or set()
    while total < n_tokens:
        kind = min(target, key=lambda k: counts[k] / max(total, 1) - target[k])
        if kind == "story":
            p = random_problem(rng)
            if p.key() in exclude_math:
                continue
            text = p.story(rng)
        elif kind == "drill":
            text = drill(rng)
        elif kind == "entity":
            text = entity_note(efacts, rng)
        elif kind in mods:
            if not buffers[kind]:
                buffers[kind] = list(mods[kind].corpus_documents(world, rng, 64))[::-1]
            text = buffers[kind].pop()
        else:
            text = person_bio(world, rng.choice(people), rng)
        if rng.random() < header_share:
            text = header(rng) + "\n" + text
        n = count_tokens(text) + 1  # + end-of-text
        counts[kind] += n
        docs_by[kind] += 1
        total += n
        docs.append(text)
    stats = {"tokens": total, "tokens_by_kind": counts, "docs_by_kind": docs_by, "docs": len(docs),
             "shares": target, "corpus_people": len(people),
             "templates_per_relation": {r: len(t) for r, t in TEMPLATES.items()}}
    return docs, stats

