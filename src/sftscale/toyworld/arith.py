"""toy-math v2: word problems with + and - only, every step an explicit equation.

A ``MathProblem`` is a start amount and 2-3 operations (``("add"|"sub", k)``), every value in
``0..MAX_VALUE`` and every operand ``k`` in ``1..MAX_OPERAND``. It renders as

- ``question()`` (the task prompt, present tense): ``"Ada has 12 apples. Ada buys 7 more apples.
  Ada gives away 5 apples. How many apples does Ada have now?"``;
- ``solution()`` (the task completion): the story retold in the past tense with the equation
  of each step right after its sentence, then GSM8k's answer line::

      Ada had 12 apples. Ada bought 7 more. 12 + 7 = 19. Ada gave away 5. 19 - 5 = 14.
      #### 14

- ``story(rng)`` (pretraining): the same worked chain in the past tense, with varied verbs and an
  optional closing sentence, half of the time after the present-tense telling and a linking line
  ("Let us count."), NEVER with ``Question:``, the question sentence or ``####`` (the task format);
- ``drill(rng)`` (pretraining): 4-8 bare equations ``"23 + 8 = 31."`` under a short line.

So pretraining teaches the arithmetic, the shape of a worked chain and copying a telling into it;
finetuning has to teach the task's format (``Question:`` ... ``Answer:``, the ``#### N`` line) and
to apply the chain to a question reliably.

Not handled: multiplication, division, negative numbers, numbers above ``MAX_VALUE``, several
quantities per story (one person, one kind of item).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .world import FIRST_NAMES

ITEMS: tuple[str, ...] = ("apples", "pens", "books", "coins", "cards", "eggs", "stamps", "marbles",
                          "shells", "cookies", "stickers", "candles")
MAX_VALUE = 50
MAX_OPERAND = 9

# (question sentence, worked sentence) per operation; {n} name, {k} operand, {it} item.
ADD_PHRASES: tuple[tuple[str, str], ...] = (
    ("{n} buys {k} more {it}.", "{n} bought {k} more."),
    ("{n} finds {k} more {it}.", "{n} found {k} more."),
    ("A friend gives {n} {k} {it}.", "A friend gave {n} {k} more."),
)
SUB_PHRASES: tuple[tuple[str, str], ...] = (
    ("{n} gives away {k} {it}.", "{n} gave away {k}."),
    ("{n} loses {k} {it}.", "{n} lost {k}."),
    ("{n} sells {k} {it}.", "{n} sold {k}."),
)
# Past-tense variants only the corpus uses (the worked shape stays "sentence. a op b = c.").
STORY_ADD = ("{n} got {k} more.", "{n} was given {k} more.", "{n} picked up {k} more.")
STORY_SUB = ("{n} used {k}.", "{n} gave {k} to a friend.", "{n} dropped {k}.")
STORY_END = ("In the end {n} had {x} {it}.", "So {n} had {x} {it} left.", "That left {x} {it}.", "")
PAIR_SHARE = 0.5
PAIR_LINKS = ("Worked out step by step:", "Let us count.", "Step by step:", "Working it out:",
              "In the past tense, with the sums:")
DRILL_HEADS = ("Sums to practise:", "Some equations:", "Adding and taking away:", "Check these:",
               "Mental arithmetic.", "")


@dataclass(frozen=True)
class MathProblem:
    """A start amount and 2-3 ``("add"|"sub", k, phrase)`` operations on one quantity."""

    name: str
    item: str
    start: int
    ops: tuple[tuple[str, int, int], ...]

    def values(self) -> list[tuple[int, str, int, int]]:
        """(left, op symbol, right, result) for every step."""
        out, x = [], self.start
        for kind, k, _ in self.ops:
            y = x + k if kind == "add" else x - k
            out.append((x, "+" if kind == "add" else "-", k, y))
            x = y
        return out

    @property
    def answer(self) -> int:
        return self.values()[-1][3] if self.ops else self.start

    @property
    def n_steps(self) -> int:
        return len(self.ops)

    def key(self) -> tuple:
        """Identity for train/test disjointness: the numbers and the operations (not the wording)."""
        return (self.start, tuple((kind, k) for kind, k, _ in self.ops))

    def _phrase(self, kind: str, p: int) -> tuple[str, str]:
        return (ADD_PHRASES if kind == "add" else SUB_PHRASES)[p]

    def telling(self) -> str:
        """The story in the present tense, without a question."""
        n, it = self.name, self.item
        parts = [f"{n} has {self.start} {it}."]
        parts += [self._phrase(kind, p)[0].format(n=n, k=k, it=it) for kind, k, p in self.ops]
        return " ".join(parts)

    def question(self) -> str:
        return f"{self.telling()} How many {self.item} does {self.name} have now?"

    def worked(self, rng: random.Random | None = None) -> str:
        """The chain: start sentence, then each step's sentence and its equation."""
        n, it = self.name, self.item
        parts = [f"{n} had {self.start} {it}."]
        for (kind, k, p), (a, sym, b, c) in zip(self.ops, self.values()):
            s = self._phrase(kind, p)[1]
            if rng is not None and rng.random() < 0.3:
                s = rng.choice(STORY_ADD if kind == "add" else STORY_SUB)
            parts.append(f"{s.format(n=n, k=k, it=it)} {a} {sym} {b} = {c}.")
        return " ".join(parts)

    def solution(self) -> str:
        """The worked chain then ``#### N`` on its own line (GSM8k style)."""
        return f"{self.worked()}\n#### {self.answer}"

    def story(self, rng: random.Random) -> str:
        """Corpus form: the worked chain with varied verbs and an optional closing sentence; on
        ``PAIR_SHARE`` of stories preceded by the present-tense telling and a linking line
        (so pretraining holds stories worked out from their telling, never in the task format)."""
        end = rng.choice(STORY_END).format(n=self.name, x=self.answer, it=self.item)
        text = f"{self.worked(rng)} {end}".strip()
        if rng.random() < PAIR_SHARE:
            text = f"{self.telling()}\n{rng.choice(PAIR_LINKS)}\n{text}"
        return text


def equation(rng: random.Random) -> str:
    """One bare equation within the bounds, carries and borrows balanced by uniform draws."""
    if rng.random() < 0.5:
        a = rng.randint(0, MAX_VALUE - 1)
        b = rng.randint(1, min(MAX_OPERAND, MAX_VALUE - a))
        return f"{a} + {b} = {a + b}."
    a = rng.randint(1, MAX_VALUE)
    b = rng.randint(1, min(MAX_OPERAND, a))
    return f"{a} - {b} = {a - b}."


def drill(rng: random.Random) -> str:
    head = rng.choice(DRILL_HEADS)
    eqs = " ".join(equation(rng) for _ in range(rng.randint(4, 8)))
    return f"{head} {eqs}".strip()


def random_problem(rng: random.Random, n_steps: int | None = None) -> MathProblem:
    """A random problem with 2-3 operations, every value in 0..MAX_VALUE."""
    n_steps = n_steps or rng.choice((2, 3))
    while True:
        x = start = rng.randint(2, 40)
        ops = []
        for _ in range(n_steps):
            if rng.random() < 0.5 and x > 1:
                k = rng.randint(1, min(x, MAX_OPERAND))
                ops.append(("sub", k, rng.randrange(len(SUB_PHRASES))))
                x -= k
            else:
                k = rng.randint(1, MAX_OPERAND)
                ops.append(("add", k, rng.randrange(len(ADD_PHRASES))))
                x += k
        if all(0 <= v[3] <= MAX_VALUE for v in MathProblem("", "", start, tuple(ops)).values()):
            return MathProblem(name=rng.choice(FIRST_NAMES), item=rng.choice(ITEMS), start=start,
                               ops=tuple(ops))


MATH_TEST_RESERVE = 1000  # the toy-math test set is a prefix of this many reserved problems


def _unique(rng: random.Random, n: int, seen: set) -> list[MathProblem]:
    out: list[MathProblem] = []
    while len(out) < n:
        p = random_problem(rng)
        if p.key() not in seen:
            seen.add(p.key())
            out.append(p)
    return out


def math_test_problems(n: int = MATH_TEST_RESERVE, seed: int = 0) -> list[MathProblem]:
    """The first ``n`` problems of the reserved toy-math test sequence (unique by ``key()``)."""
    return _unique(random.Random(f"toymath2-test-{seed}"), n, set())


OOD_STEPS = 4  # toy-math-ood: one step more than any pool or test problem (2-3)


def math_ood_problems(n: int, seed: int = 0) -> list[MathProblem]:
    """``n`` unique problems of ``OOD_STEPS`` operations (toy-math-ood), every value still in
    0..MAX_VALUE and every operand in 1..MAX_OPERAND: only the chain's length is new."""
    rng = random.Random(f"toymath2-ood-{seed}")
    out: list[MathProblem] = []
    seen: set = set()
    while len(out) < n:
        p = random_problem(rng, OOD_STEPS)
        if p.key() not in seen:
            seen.add(p.key())
            out.append(p)
    return out


def math_pool_problems(n: int, seed: int = 0) -> list[MathProblem]:
    """``n`` unique training problems, disjoint (by ``key()``) from the reserved test sequence."""
    seen = {p.key() for p in math_test_problems(MATH_TEST_RESERVE, seed)}
    return _unique(random.Random(f"toymath2-train-{seed}"), n, seen)


__all__ = ["ITEMS", "MATH_TEST_RESERVE", "MAX_OPERAND", "MAX_VALUE", "OOD_STEPS", "MathProblem",
           "drill", "equation", "math_ood_problems", "math_pool_problems", "math_test_problems",
           "random_problem"]
