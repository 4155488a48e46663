"""The pretraining corpus of the toy world, and the arithmetic word problems it shares with toy-math.

Documents (plain text, joined by the tokenizer's end-of-text token when packed):

- person bios: 1-3 facts of one corpus person, each in a random paraphrase, in random order;
- entity notes: 1-3 facts about cities (country, capital) and companies (country of founding);
- arithmetic stories: a 2-4 step word problem told in past-tense free prose with the
  arithmetic written inline ("so Mia had 4 * 3 = 12 pens"), never in the Q/A/#### task format;
- on ``header_share`` of documents a short header line that contains the task formats' tokens
  outside the task format ("Answer key:", "Part Q:", "Entry #12:"), so that no format token is
  unseen in pretraining (prototype pitfall 1).

Composed facts (person -> country) are never stated; held-out people never appear.
The mix is controlled by token share (``math_share``); the corpus is generated for a token
budget, so a longer pretraining sees fresh stories and fresh bio combinations, not repeats.

Not handled: any other domain text; the token count uses the tokenizer's pre-tokenizer regex
(``pieces.PIECE_RE``, the tokenizer's own pattern), which matches the tokenizer exactly for in-vocabulary text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .pieces import count_tokens
from .world import FIRST_NAMES, TEMPLATES, World, render_fact

ITEMS: tuple[str, ...] = ("apples", "pens", "books", "coins", "cards", "eggs", "stamps", "marbles",
                          "shells", "cookies", "stickers", "candles")
CONTAINERS: tuple[str, ...] = ("boxes", "bags", "baskets", "jars")
MAX_VALUE = 99


@dataclass(frozen=True)
class MathProblem:
    """A chain of 2-4 arithmetic steps on one quantity.

    ``start`` is ``(a,)`` (has a items) or ``(a, b)`` (a containers of b items: a * b).
    ``ops`` are ``("add"|"sub"|"div", n)``; "div" only last (shares equally among n friends).
    """

    name: str
    item: str
    container: str
    start: tuple[int, ...]
    ops: tuple[tuple[str, int], ...]

    def values(self) -> list[tuple[int, str, int, int]]:
        """(left, op symbol, right, result) for every step."""
        out = []
        if len(self.start) == 2:
            a, b = self.start
            x = a * b
            out.append((a, "*", b, x))
        else:
            x = self.start[0]
        for kind, n in self.ops:
            if kind == "add":
                y, sym = x + n, "+"
            elif kind == "sub":
                y, sym = x - n, "-"
            else:
                y, sym = x // n, "/"
            out.append((x, sym, n, y))
            x = y
        return out

    @property
    def answer(self) -> int:
        v = self.values()
        return v[-1][3]

    @property
    def n_steps(self) -> int:
        return len(self.values())

    def key(self) -> tuple:
        return (self.item, self.container, self.start, self.ops)

    # --- task format (toy-math) ------------------------------------------------------
    def question(self) -> str:
        n, it = self.name, self.item
        parts = ([f"{n} has {self.start[0]} {self.container} with {self.start[1]} {it} in each."]
                 if len(self.start) == 2 else [f"{n} has {self.start[0]} {it}."])
        for kind, k in self.ops:
            if kind == "add":
                parts.append(f"{n} gets {k} more {it}.")
            elif kind == "sub":
                parts.append(f"{n} gives away {k} {it}.")
            else:
                parts.append(f"{n} shares the {it} equally among {k} friends.")
        if self.ops and self.ops[-1][0] == "div":
            parts.append(f"How many {it} does each friend get?")
        else:
            parts.append(f"How many {it} does {n} have now?")
        return " ".join(parts)

    def solution(self) -> str:
        """Step lines then ``#### N`` (GSM8k style)."""
        lines = []
        ops = ([("mul", 0)] if len(self.start) == 2 else []) + list(self.ops)
        for (a, sym, b, c), (kind, _) in zip(self.values(), ops):
            if kind == "mul":
                lines.append(f"{self.name} has {a} {sym} {b} = {c} {self.item}.")
            elif kind == "div":
                lines.append(f"Each friend gets {a} {sym} {b} = {c} {self.item}.")
            else:
                lines.append(f"Then {self.name} has {a} {sym} {b} = {c} {self.item}.")
        lines.append(f"#### {self.answer}")
        return "\n".join(lines)

    # --- corpus format (free prose) ----------------------------------------------------
    def story(self, rng: random.Random) -> str:
        n, it = self.name, self.item
        if len(self.start) == 2:
            a, b = self.start
            s = rng.choice([f"{n} had {a} {self.container} with {b} {it} in each, so {n} had {a} * {b} = {a * b} {it}.",
                            f"There were {a} {self.container} and each held {b} {it}. That is {a} * {b} = {a * b} {it} for {n}."])
            parts = [s]
            x = a * b
        else:
            x = self.start[0]
            parts = [rng.choice([f"{n} had {x} {it}.", f"At first {n} owned {x} {it}."])]
        for kind, k in self.ops:
            if kind == "add":
                y = x + k
                parts.append(rng.choice([f"{n} bought {k} more, which made {x} + {k} = {y} {it}.",
                                         f"Later {n} found {k} more {it}, so the total was {x} + {k} = {y}.",
                                         f"A friend gave {n} {k} {it}; now {n} had {x} + {k} = {y}."]))
            elif kind == "sub":
                y = x - k
                parts.append(rng.choice([f"{n} gave {k} {it} to a friend and kept {x} - {k} = {y}.",
                                         f"Then {n} lost {k} {it}, leaving {x} - {k} = {y} {it}.",
                                         f"{n} sold {k} of them, so {x} - {k} = {y} were left."]))
            else:
                y = x // k
                parts.append(rng.choice([f"{n} split the {it} among {k} friends, so each got {x} / {k} = {y}.",
                                         f"Shared equally by {k} friends, the {x} {it} gave {x} / {k} = {y} each."]))
            x = y
        parts.append(rng.choice([f"In the end the answer was {x}.", f"So the final count was {x} {it}.", ""]))
        return " ".join(p for p in parts if p)


def random_problem(rng: random.Random, n_steps: int | None = None) -> MathProblem:
    """A random problem with 2-4 steps, every intermediate value in 0..MAX_VALUE."""
    n_steps = n_steps or rng.choice((2, 3, 4))
    while True:
        mult = rng.random() < 0.5
        start: tuple[int, ...] = (rng.randint(2, 9), rng.randint(2, 9)) if mult else (rng.randint(2, 30),)
        x = start[0] * start[1] if mult else start[0]
        ops: list[tuple[str, int]] = []
        for i in range(n_steps - (1 if mult else 0)):
            last = i == n_steps - (1 if mult else 0) - 1
            divisors = [d for d in (2, 3, 4, 5) if x % d == 0 and x > 0]
            if last and divisors and rng.random() < 0.25:
                k = rng.choice(divisors)
                ops.append(("div", k))
                x //= k
            elif rng.random() < 0.5 and x > 1:
                k = rng.randint(1, min(x, 20))
                ops.append(("sub", k))
                x -= k
            else:
                k = rng.randint(1, 20)
                ops.append(("add", k))
                x += k
        p = MathProblem(name=rng.choice(FIRST_NAMES), item=rng.choice(ITEMS),
                        container=rng.choice(CONTAINERS), start=start, ops=tuple(ops))
        if all(0 <= v[3] <= MAX_VALUE for v in p.values()):
            return p


HEADERS: tuple[str, ...] = ("Part A:", "Part B:", "Part Q:", "Answer key:", "Entry #{n}:",
                            "Note #{n}", "Q and A notes:", "Section {n}:", "Answer sheet #{n}",
                            "A short note:", "Question set {n}:")


def header(rng: random.Random) -> str:
    return rng.choice(HEADERS).format(n=rng.randint(1, 99))


def person_bio(world: World, person, rng: random.Random) -> str:
    rels = rng.sample(("born_in", "lives_in", "works_for"), rng.randint(1, 3))
    return " ".join(render_fact(person.name, r, person.obj(r), rng=rng) for r in rels)


def entity_note(facts: list[tuple[str, str, str]], rng: random.Random) -> str:
    chosen = rng.sample(facts, rng.randint(1, 3))
    return " ".join(render_fact(s, r, o, rng=rng) for s, r, o in chosen)


def build_corpus(world: World, n_tokens: int, seed: int = 0, math_share: float = 0.4,
                 entity_share: float = 0.15, header_share: float = 0.15,
                 exclude_math: set | None = None) -> tuple[list[str], dict]:
    """Documents totalling about ``n_tokens`` tokens, and counts by kind.

    Kinds are chosen so each kind's token share tracks its target (``math_share``,
    ``entity_share``, the rest person bios). ``exclude_math`` holds ``MathProblem.key()`` values
    that must not be told as stories (the toy-math test set).
    """
    rng = random.Random(f"corpus-{world.seed}-{seed}")
    people = world.corpus_people
    efacts = world.entity_facts()
    target = {"math": math_share, "entity": entity_share, "bio": 1.0 - math_share - entity_share}
    counts = {k: 0 for k in target}
    docs_by = {k: 0 for k in target}
    docs: list[str] = []
    total = 0
    exclude_math = exclude_math or set()
    while total < n_tokens:
        kind = min(target, key=lambda k: counts[k] / max(total, 1) - target[k])
        if kind == "math":
            p = random_problem(rng)
            if p.key() in exclude_math:
                continue
            text = p.story(rng)
        elif kind == "entity":
            text = entity_note(efacts, rng)
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
             "corpus_people": len(people), "templates_per_relation": {r: len(t) for r, t in TEMPLATES.items()}}
    return docs, stats


MATH_TEST_RESERVE = 1000  # the toy-math test set is a prefix of this many reserved problems


def math_test_problems(n: int = MATH_TEST_RESERVE, seed: int = 0) -> list[MathProblem]:
    """The first ``n`` problems of the reserved toy-math test sequence (unique by ``key()``)."""
    rng = random.Random(f"toymath-test-{seed}")
    out: list[MathProblem] = []
    seen: set = set()
    while len(out) < n:
        p = random_problem(rng)
        if p.key() not in seen:
            seen.add(p.key())
            out.append(p)
    return out


def math_pool_problems(n: int, seed: int = 0) -> list[MathProblem]:
    """``n`` unique training problems, disjoint (by ``key()``) from the reserved test sequence."""
    reserved = {p.key() for p in math_test_problems(max(MATH_TEST_RESERVE, 0), seed)}
    rng = random.Random(f"toymath-train-{seed}")
    out: list[MathProblem] = []
    seen = set(reserved)
    while len(out) < n:
        p = random_problem(rng)
        if p.key() not in seen:
            seen.add(p.key())
            out.append(p)
    return out
