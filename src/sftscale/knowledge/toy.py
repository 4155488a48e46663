"""The toy facts source (v2): new people, their bios, QA on part of them, tests on the others.

New people are people the pretraining corpus never mentions: the world's held-out people
(``World.heldout_people``, 48 for the default world) first, then, when ``people`` asks for
more, people drawn here with names of the same pools that no world person has (two-token
names, ``born_in``/``lives_in`` a uniform city, ``works_for`` a uniform company, as the world
draws its own). Each new person has three facts (born_in, lives_in, works_for).

The new people are split by a seeded shuffle (``knowledge-qa-<world_seed>``): a share
``qa_share`` are QA people, whose direct and two-hop question/answer pairs go into the facts
stage (Allen-Zhu & Li's "QA on half the people"; Jiang et al. 2024's pre-instruction-tuning);
the others are TEST people, the only ones asked questions in the evaluation. Every new person
(QA and test) gets bios in the facts stage.

- A bio (``Source.fact_documents``) states all three facts of one person, each in one of the
  world's 4 paraphrase templates (``world.TEMPLATES``), in a random order, with the full name
  in every sentence: 4^3 x 3! = 384 variants per person.
- Direct questions: "Where was X born?" -> ``"X was born in C.\\nAnswer: C"``; two-hop
  questions join the new fact with a pretrained one (``world.CHAINS``: X -> birth city ->
  its country; X -> home city -> its country; X -> employer -> its country of founding),
  the bridge entity written out: ``"X was born in C. C is a city in K.\\nAnswer: K"``. Test
  questions: one random wording per (test person, relation or chain), no wrapper; QA pairs:
  every wording and wrapper (``toyworld.tasks.direct_item`` / ``multihop_item``).
- Format examples (``format_examples``): direct and two-hop questions about corpus POOL
  people, alternating (answer formats with facts the model already knows).

Not handled: inverse questions ("who was born in C?": Allen-Zhu & Li report them near 0 at any
scale), two-hop questions through two NEW facts (the two-hop curse), new facts about corpus
people (updates).
"""

from __future__ import annotations

import random

from ..tasks.base import Item
from .sources import QTYPES, Fact, Source


def new_people(world, n: int | None = None) -> list:
    """The world's held-out people, then drawn people with unused names up to ``n`` in all."""
    from ..toyworld.world import CITIES, COMPANIES, FIRST_NAMES, LAST_NAMES, Person

    held = list(world.heldout_people)
    if n is None or n <= len(held):
        return held if n is None else held[:n]
    used = {p.name for p in world.people}
    names = [f"{f} {last}" for f in FIRST_NAMES for last in LAST_NAMES if f"{f} {last}" not in used]
    rng = random.Random(f"knowledge-new-people-{world.seed}")
    rng.shuffle(names)
    if n - len(held) > len(names):
        raise ValueError(f"at most {len(held) + len(names)} new people")
    extra = [Person(name=nm, born_in=rng.choice(CITIES), lives_in=rng.choice(CITIES),
                    works_for=rng.choice(COMPANIES), group="new") for nm in names[:n - len(held)]]
    return held + extra


def toy_source(world_seed: int = 0, people: int | None = None, qa_share: float = 0.0,
               limit: int | None = None, recall: int = 150) -> Source:
    """New people as facts, QA pairs about a ``qa_share`` of them, questions about the rest.

    ``limit``: only the first ``ceil(limit / 3)`` new people (tests)."""
    from ..toyworld.pretrain import recall_sets
    from ..toyworld.tasks import ToyKnowledge, direct_item, multihop_item
    from ..toyworld.world import (
        CHAINS,
        DIRECT_QUESTIONS,
        MULTIHOP_QUESTIONS,
        PERSON_RELATIONS,
        QUESTION_WRAPPERS,
        TEMPLATES,
        World,
        render_fact,
    )

    world = World.generate(world_seed)
    ppl = new_people(world, people)
    if limit is not None:
        ppl = ppl[:max(1, -(-limit // len(PERSON_RELATIONS)))]
    order = list(ppl)
    random.Random(f"knowledge-qa-{world_seed}").shuffle(order)
    n_qa = int(round(qa_share * len(order)))
    if qa_share > 0 and len(order) > 1:
        n_qa = min(max(n_qa, 1), len(order) - 1)  # at least one QA and one test person
    qa_names = {p.name for p in order[:n_qa]}

    facts, units = [], []
    for p in ppl:
        fs = [Fact(id=f"{p.name}|{r}", triple=(p.name, r, p.obj(r)),
                   statements=[render_fact(p.name, r, p.obj(r), t) for t in range(len(TEMPLATES[r]))])
              for r in PERSON_RELATIONS]
        facts += fs
        units.append((p.name.replace(" ", "_"), fs))

    questions: dict[str, list[Item]] = {qt: [] for qt in QTYPES}
    qa_pool: dict[str, list[tuple[str, str]]] = {}
    rng = random.Random(f"knowledge-questions-{world_seed}")
    for p in ppl:
        for r, chain in zip(PERSON_RELATIONS, CHAINS):
            assert CHAINS[chain][0] == r
            nd, nm = len(DIRECT_QUESTIONS[r]), len(MULTIHOP_QUESTIONS[chain])
            if p.name in qa_names:
                for key, its in ((f"direct/{p.name}|{r}", [direct_item(p, r, t, w, "qa")
                                  for t in range(nd) for w in range(len(QUESTION_WRAPPERS))]),
                                 (f"multihop/{p.name}|{r}", [multihop_item(world, p, chain, t, w, "qa",
                                  prefix="toy-knowledge") for t in range(nm)
                                  for w in range(len(QUESTION_WRAPPERS))])):
                    qa_pool[key] = [(f"Question: {it.question}\n", it.completion or "") for it in its]
                continue
            d = direct_item(p, r, rng.randrange(nd), 0, "direct")
            m = multihop_item(world, p, chain, rng.randrange(nm), 0, "multihop", prefix="toy-knowledge")
            for qt, it in (("direct", d), ("multihop", m)):
                questions[qt].append(Item(id=it.id, question=it.question, target=it.target,
                                          completion=it.completion,
                                          meta={**it.meta, "fact_ids": [f"{p.name}|{r}"]}))
    per = []
    for qt in QTYPES:
        t = ToyKnowledge(split=qt, seed=world_seed)
        per.append([(f"format/{it.id}", *t.training_pair(it)) for it in t.train_items()])
    fmt = [x for pair in zip(*per) for x in pair]
    corpus = recall_sets(world, n=recall)["corpus"] if recall else []
    return Source(kind="toy", facts=facts, questions=questions, gen=ToyKnowledge.gen,
                  format_pairs=fmt, corpus_recall=corpus, world=world, units=units,
                  qa_pool=qa_pool, qa_people=sorted(qa_names))


__all__ = ["new_people", "toy_source"]
