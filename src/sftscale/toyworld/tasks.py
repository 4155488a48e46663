"""The toy tasks, scored by the SAME scorers as the real benchmarks.

Each class registers itself (``@register_task``); this module is listed in the
``sftscale.tasks`` entry-point group, so ``sftscale.tasks.get_task`` finds the toy tasks
without the tasks package naming the toy world.

``toy-math`` (``ToyMath``, v2): word problems with 2-3 steps of + and - (operands 1..9, every
value 0..50; ``toyworld.arith``). Prompt ``"Question: {q}\\nAnswer:"``; completion ``" "`` + the
story retold with each step's equation (``"Ada had 12 apples. Ada bought 7 more. 12 + 7 = 19.
..."``) + ``"\\n#### N"`` (the GSM8K task's format); scored with
``sftscale.tasks.gsm8k.score_response``. Options: ``n_train`` (pool size,
default 10,000), ``n_test`` (default 200, at most 1,000), ``seed`` (0), ``limit``. Test problems
are a reserved sequence kept out of the pretraining corpus and out of the pool.

``toy-multihop`` (``ToyMultihop``): two-hop questions about corpus people, e.g. "In which country
was the employer of X founded?", whose two facts the corpus states separately (the composed
fact never). Prompt ``"Question: {q}\\n"``; completion writes both hops then the answer line:
``"X works for C. C was founded in K.\\nAnswer: K"`` (``reasoning=False``: ``"Answer: K"`` only,
a negative control). Scored with ``sftscale.tasks.multihop.score_answer``. The pool (>= 10,000
items) is every (pool person, chain, question wording, wrapper); the test set (default 200)
asks one wording per (test person, chain), test people never appearing in the pool.

``toy-knowledge`` (``ToyKnowledge``): the held-out people (never in the corpus), for the
knowledge-injection experiment. ``split`` selects:

- ``"facts"``: test = cloze prompts (``"X was born in"``), correct when the first word of the
  response is the object; train = fact STATEMENTS of the held-out people (4 paraphrases per
  fact, empty prompt, loss on the whole statement). ``fact_pairs()`` gives them as
  ``(prompt, completion)`` pairs, ``facts()`` as (subject, relation, object) triples;
- ``"direct"``: test = direct questions about held-out people ("Where was X born?" ->
  ``"X was born in C.\\nAnswer: C"``); train = the same kind of questions about corpus POOL
  people (format training without the new facts);
- ``"multihop"``: test = two-hop questions combining a new fact with a known one ("In which
  country was X born?" needs X's new birth city and that city's corpus-known country); train =
  the ``toy-multihop`` pool (corpus pool people).

All three splits score ``"Answer:"`` style responses with the multihop scorer (facts: first word).
``n_test`` default: every (held-out person, relation/chain) pair once (144).

Out-of-distribution twins (evaluation only: ``train_items`` raises ``NotImplementedError``
like any task without a training pool; docs/toy-models.md, "Out-of-distribution twins"):

- ``toy-math-ood`` (``ToyMathOOD``): toy-math's format and number ranges, but every problem
  has ``arith.OOD_STEPS`` = 4 operations, one more than any toy-math item (2-3).
- ``toy-multihop-ood`` (``ToyMultihopOOD``): toy-multihop's format and test people, but
  three-hop chains that end at the capital (``OOD_CHAINS``: "What is the capital of the
  country where X was born?" -> ``"X was born in C. C is located in K. The capital city of K
  is Z.\nAnswer: Z"``); the corpus states every hop, no finetuning item composes a capital.

toy-code and toy-instruct (and their twins) live in ``toyworld.code`` and ``toyworld.instruct``.

Not handled: chat-specific prompts beyond
the base-class chat template (the user turn is the plain prompt without its trailing cue).
"""

from __future__ import annotations

import random
from functools import cached_property, lru_cache
from typing import Any

from ..tasks import register_task
from ..tasks.base import GenSpec, Item, Task, first_n
from ..tasks.gsm8k import GSM8KFormat
from .world import (
    CHAINS,
    DIRECT_QUESTIONS,
    MULTIHOP_QUESTIONS,
    PERSON_RELATIONS,
    QUESTION_WRAPPERS,
    TEMPLATES,
    Person,
    World,
    render_fact,
)

_STOP = ("Question:", "<|endoftext|>")


def _pid(name: str) -> str:
    return name.replace(" ", "_")


def hop_text(world: World, p: Person, chain: str) -> tuple[str, str]:
    """(reasoning sentences, final answer) of a chain for person ``p``."""
    r1, r2 = CHAINS[chain]
    mid = p.obj(r1)
    ans = world.city_country[mid] if r2 == "located_in" else world.company_country[mid]
    return f"{render_fact(p.name, r1, mid, 0)} {render_fact(mid, r2, ans, 0)}", ans


def multihop_item(world: World, p: Person, chain: str, t: int, w: int, split: str,
                  reasoning: bool = True, prefix: str = "toy-multihop") -> Item:
    q = QUESTION_WRAPPERS[w] + MULTIHOP_QUESTIONS[chain][t].format(p=p.name)
    hops, ans = hop_text(world, p, chain)
    completion = f"{hops}\nAnswer: {ans}" if reasoning else f"Answer: {ans}"
    return Item(id=f"{prefix}/{split}/{_pid(p.name)}/{chain}/{t}/{w}", question=q, target=[ans],
                completion=completion,
                meta={"person": p.name, "chain": chain, "bridge": p.obj(CHAINS[chain][0])})


def direct_item(p: Person, rel: str, t: int, w: int, split: str, prefix: str = "toy-knowledge") -> Item:
    q = QUESTION_WRAPPERS[w] + DIRECT_QUESTIONS[rel][t].format(p=p.name)
    o = p.obj(rel)
    return Item(id=f"{prefix}/{split}/{_pid(p.name)}/{rel}/{t}/{w}", question=q, target=[o],
                completion=f"{render_fact(p.name, rel, o, 0)}\nAnswer: {o}",
                meta={"person": p.name, "relation": rel})


class _Pools:
    """``test_items``/``train_items`` from a task's cached ``_test``/``_train`` lists and ``limit``."""

    limit: int | None

    @property
    def _test(self) -> list[Item]:  # each task's cached_property
        raise NotImplementedError

    @property
    def _train(self) -> list[Item]:
        raise NotImplementedError

    def test_items(self) -> list[Item]:
        return first_n(self._test, self.limit)

    def train_items(self) -> list[Item]:
        return self._train


class _ToyQA(_Pools, Task):
    """Prompt ``Question: q\\n``; completion ends with an ``Answer: X`` line."""

    license = "Apache-2.0 (generated)"
    gen = GenSpec(max_new_tokens=48, stop=_STOP)

    def prompt_text(self, item: Item) -> str:
        return f"Question: {item.question}\n"

    def user_message(self, item: Item) -> str:
        return item.question

    def score(self, item: Item, response: str) -> dict:
        from ..tasks.multihop import score_answer

        return score_answer(response, item.target)

    role_scheme = "toy-qa"

    def role_spans(self, item: Item, response: str) -> tuple[list[tuple[int, int, str]], str]:
        """The ``Answer:`` template format; the hops (facts, entities) and the answer content."""
        from ..tasks.roles import CONTENT, answer_line_spans

        return answer_line_spans(response), CONTENT


@register_task("toy-math")
class ToyMath(_Pools, GSM8KFormat):
    name = "toy-math"
    version = "2"
    primary_metric = "accuracy"
    license = "Apache-2.0 (generated)"
    gen = GenSpec(max_new_tokens=80, stop=_STOP)
    role_scheme = "toy-math"  # gsm8k's rule, with the equations' operators as content

    def __init__(self, n_train: int = 10_000, n_test: int = 200, seed: int = 0, limit: int | None = None):
        from .arith import MATH_TEST_RESERVE

        if not 1 <= n_test <= MATH_TEST_RESERVE:
            raise ValueError(f"toy-math n_test must be in 1..{MATH_TEST_RESERVE}")
        self.n_train, self.n_test, self.seed, self.limit = n_train, n_test, seed, limit

    @cached_property
    def _test(self) -> list[Item]:
        return list(_math_items("test", self.n_test, self.seed))

    @cached_property
    def _train(self) -> list[Item]:
        return list(_math_items("train", self.n_train, self.seed))


@lru_cache(maxsize=8)
def _math_items(split: str, n: int, seed: int) -> tuple[Item, ...]:
    """toy-math items, cached here rather than per task instance (``get_task`` builds a fresh
    instance every call; the 10,000-item pool takes ~0.2 s to draw)."""
    from .arith import math_pool_problems, math_test_problems

    problems = math_test_problems(n, seed) if split == "test" else math_pool_problems(n, seed)
    return tuple(Item(id=f"toy-math/{split}/{i}", question=p.question(), target=str(p.answer),
                      completion=p.solution(), meta={"steps": p.n_steps})
                 for i, p in enumerate(problems))


@register_task("toy-multihop")
class ToyMultihop(_ToyQA):
    name = "toy-multihop"
    version = "3"  # v3: test people split from pool people by first name
    primary_metric = "accuracy"

    def score(self, item: Item, response: str) -> dict:
        """Multihop scorer fields plus ``bridge_ok``: the first hop's entity ends the first sentence."""
        rec = super().score(item, response)
        first = response.strip().split(".")[0].split()
        rec["bridge_ok"] = bool(first) and first[-1] == item.meta.get("bridge")
        return rec

    def __init__(self, n_test: int = 200, seed: int = 0, limit: int | None = None, reasoning: bool = True):
        self.n_test, self.seed, self.limit, self.reasoning = n_test, seed, limit, reasoning
        self.world = World.generate(seed)

    @cached_property
    def _train(self) -> list[Item]:
        items = [multihop_item(self.world, p, c, t, w, "train", self.reasoning)
                 for p in self.world.group("pool") for c in CHAINS
                 for t in range(len(MULTIHOP_QUESTIONS[c])) for w in range(len(QUESTION_WRAPPERS))]
        random.Random(f"toy-multihop-train-{self.seed}").shuffle(items)
        return items

    @cached_property
    def _test(self) -> list[Item]:
        rng = random.Random(f"toy-multihop-test-{self.seed}")
        pairs = [(p, c) for p in self.world.group("test") for c in CHAINS]
        rng.shuffle(pairs)
        out: list[Item] = []
        r = 0
        while len(out) < self.n_test:  # more than one wording per pair only past all pairs
            for p, c in pairs:
                if len(out) >= self.n_test:
                    break
                t = (rng.randrange(len(MULTIHOP_QUESTIONS[c])) + r) % len(MULTIHOP_QUESTIONS[c])
                out.append(multihop_item(self.world, p, c, t, 0, "test", self.reasoning))
            r += 1
        return out


def no_training_pool(name: str, twin: str) -> NotImplementedError:
    """The error of an OOD twin's ``train_items`` (``Task.has_train`` reads it as "no pool")."""
    return NotImplementedError(f"task {name!r} has no training pool: it is an "
                               f"out-of-distribution evaluation set; finetune on {twin!r} and "
                               f"name {name!r} in that task's eval_tasks")


@register_task("toy-math-ood")
class ToyMathOOD(ToyMath):
    """toy-math with one more step than any toy-math item (module docstring). Options:
    ``n_test`` (default 200, at most 1,000), ``seed``, ``limit``."""

    name = "toy-math-ood"
    version = "1"

    def __init__(self, n_test: int = 200, seed: int = 0, limit: int | None = None):
        super().__init__(n_train=0, n_test=n_test, seed=seed, limit=limit)

    @cached_property
    def _test(self) -> list[Item]:
        from .arith import math_ood_problems

        return [Item(id=f"toy-math-ood/test/{i}", question=p.question(), target=str(p.answer),
                     completion=p.solution(), meta={"steps": p.n_steps})
                for i, p in enumerate(math_ood_problems(self.n_test, self.seed))]

    def train_items(self) -> list[Item]:
        raise no_training_pool(self.name, "toy-math")


# three hops: person -> city/company -> country -> its capital (toy-multihop-ood)
OOD_CHAINS: dict[str, tuple[str, str]] = {
    "birth_capital": ("born_in", "located_in"),
    "home_capital": ("lives_in", "located_in"),
    "employer_capital": ("works_for", "founded_in"),
}
OOD_QUESTIONS: dict[str, str] = {
    "birth_capital": "What is the capital of the country where {p} was born?",
    "home_capital": "What is the capital of the country where {p} lives?",
    "employer_capital": "What is the capital of the country where the employer of {p} was founded?",
}


def capital_item(world: World, p: Person, chain: str) -> Item:
    """A three-hop toy-multihop-ood item: the two hops of the chain, then the capital."""
    base = {"birth_capital": "birth_country", "home_capital": "home_country",
            "employer_capital": "employer_country"}[chain]
    hops, country = hop_text(world, p, base)
    cap = world.capitals[country]
    third = render_fact(cap, "capital_of", country, 1)  # "The capital city of K is Z."
    return Item(id=f"toy-multihop-ood/test/{_pid(p.name)}/{chain}",
                question=OOD_QUESTIONS[chain].format(p=p.name), target=[cap],
                completion=f"{hops} {third}\nAnswer: {cap}",
                meta={"person": p.name, "chain": chain, "bridge": p.obj(OOD_CHAINS[chain][0]),
                      "hops": 3})


@register_task("toy-multihop-ood")
class ToyMultihopOOD(ToyMultihop):
    """toy-multihop's format on three-hop capital chains (module docstring). Options:
    ``n_test`` (default: every (test person, chain), 201), ``seed``, ``limit``."""

    name = "toy-multihop-ood"
    version = "1"

    def __init__(self, n_test: int | None = None, seed: int = 0, limit: int | None = None):
        super().__init__(n_test=0, seed=seed, limit=limit)
        self.n_test_ood = n_test

    @cached_property
    def _test(self) -> list[Item]:
        items = [capital_item(self.world, p, c) for p in self.world.group("test") for c in OOD_CHAINS]
        random.Random(f"toy-multihop-ood-test-{self.seed}").shuffle(items)
        return items if self.n_test_ood is None else items[:self.n_test_ood]

    def train_items(self) -> list[Item]:
        raise no_training_pool(self.name, "toy-multihop")


@register_task("toy-knowledge")
class ToyKnowledge(_ToyQA):
    name = "toy-knowledge"
    version = "3"  # v3: test people split from pool people by first name
    primary_metric = "accuracy"

    def __init__(self, split: str = "direct", n_test: int | None = None, seed: int = 0,
                 limit: int | None = None):
        if split not in ("facts", "direct", "multihop"):
            raise ValueError(f"toy-knowledge split must be facts, direct or multihop, not {split!r}")
        self.split, self.n_test, self.seed, self.limit = split, n_test, seed, limit
        self.world = World.generate(seed)
        if split == "facts":
            self.gen = GenSpec(max_new_tokens=4, stop=(".", "\n"))

    def facts(self) -> list[tuple[str, str, str]]:
        """(subject, relation, object) of every held-out person fact."""
        return self.world.person_facts(self.world.heldout_people)

    def fact_pairs(self) -> list[tuple[str, str]]:
        """Fact statements as (prompt, completion) training pairs: empty prompt, 4 paraphrases each."""
        return [("", render_fact(s, r, o, t)) for s, r, o in self.facts() for t in range(len(TEMPLATES[r]))]

    @cached_property
    def _test(self) -> list[Item]:
        held = self.world.heldout_people
        if self.split == "facts":
            from .world import cloze

            items = [Item(id=f"toy-knowledge/facts/{_pid(p.name)}/{r}", question=cloze(p.name, r),
                          target=[p.obj(r)], meta={"person": p.name, "relation": r})
                     for p in held for r in PERSON_RELATIONS]
        elif self.split == "direct":
            rng = random.Random(f"toy-knowledge-direct-{self.seed}")
            items = [direct_item(p, r, rng.randrange(len(DIRECT_QUESTIONS[r])), 0, "direct")
                     for p in held for r in PERSON_RELATIONS]
        else:
            rng = random.Random(f"toy-knowledge-multihop-{self.seed}")
            items = [multihop_item(self.world, p, c, rng.randrange(len(MULTIHOP_QUESTIONS[c])), 0,
                                   "multihop", prefix="toy-knowledge") for p in held for c in CHAINS]
        return items if self.n_test is None else items[:self.n_test]

    @cached_property
    def _train(self) -> list[Item]:
        if self.split == "facts":
            return [Item(id=f"toy-knowledge/facts-train/{i}", question="", completion=c, target=[o],
                         meta={"subject": s, "relation": r})
                    for i, ((_, c), (s, r, o)) in enumerate(zip(self.fact_pairs(),
                                                                 [f for f in self.facts() for _ in range(4)]))]
        if self.split == "direct":
            items = [direct_item(p, r, t, w, "direct-train") for p in self.world.group("pool")
                     for r in PERSON_RELATIONS for t in range(len(DIRECT_QUESTIONS[r]))
                     for w in range(len(QUESTION_WRAPPERS))]
        else:
            items = [multihop_item(self.world, p, c, t, w, "multihop-train", prefix="toy-knowledge")
                     for p in self.world.group("pool") for c in CHAINS
                     for t in range(len(MULTIHOP_QUESTIONS[c])) for w in range(len(QUESTION_WRAPPERS))]
        random.Random(f"toy-knowledge-{self.split}-{self.seed}").shuffle(items)
        return items

    def prompt_text(self, item: Item) -> str:
        if self.split == "facts":
            return item.question
        return super().prompt_text(item)

    def training_pair(self, item: Item, tokenizer: Any = None, chat: bool = False) -> tuple[str, str]:
        if self.split == "facts":
            return "", item.completion or ""
        return super().training_pair(item, tokenizer, chat)

    def score(self, item: Item, response: str) -> dict:
        if self.split != "facts":
            return super().score(item, response)
        words = response.strip().split()
        first = words[0].strip(".,") if words else ""
        ok = first == item.target[0]
        return {"correct": ok, "format_ok": bool(first), "extracted": first or None}
