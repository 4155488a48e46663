"""Error taxonomies: the paper's two classes for every task, and a finer one per task.

Every fine label belongs to one of the paper's two classes, ``format`` (formatting / style:
the answer cannot be read as the task asks) or ``reasoning`` (reasoning / substance: the
answer is readable but wrong). docs/judge.md lists each task's labels with the definitions
the judge is shown (the same strings as here).

``taxonomy(task)`` picks by task name: gsm8k and toy-math share one, multihop, toy-multihop
and toy-knowledge one, humaneval and toy-code one, ifeval and toy-instruct one; any other
task gets the generic one. Not handled: a user-registered taxonomy for a plug-in task (it
gets the generic labels).
"""

from __future__ import annotations

from dataclasses import dataclass

FORMAT, REASONING = "format", "reasoning"
COARSE = (FORMAT, REASONING)


@dataclass(frozen=True)
class Taxonomy:
    name: str
    labels: tuple[tuple[str, str, str], ...]  # (fine label, coarse class, definition)

    @property
    def fine(self) -> tuple[str, ...]:
        return tuple(f for f, _, _ in self.labels)

    def coarse(self, fine: str) -> str:
        """The paper class of a fine label (KeyError for a label not in this taxonomy)."""
        return {f: c for f, c, _ in self.labels}[fine]


_FMT = ("format", FORMAT, "the answer is not given in the required form (missing or malformed "
        "final-answer line, wrong layout, no answer at all), whatever its content")
_MISREAD = ("misread", REASONING, "the response answers a different question: it copies a wrong "
            "number, name or condition from the question, or answers something not asked")

MATH = Taxonomy("math", (
    ("calculation", REASONING, "the plan is right but an arithmetic step is computed wrongly"),
    ("plan", REASONING, "the steps combine the quantities wrongly (wrong operation, missing or "
                        "extra step), even if each computation is right"),
    _MISREAD, _FMT))
MULTIHOP = Taxonomy("multihop", (
    ("first_hop", REASONING, "the first fact (the bridge entity, e.g. the person's employer or "
                             "birth city) is wrong or missing"),
    ("second_hop", REASONING, "the bridge entity is right but the fact about it (the final "
                              "answer) is wrong: a broken composition"),
    _MISREAD, _FMT))
CODE = Taxonomy("code", (
    ("syntax", FORMAT, "the code does not parse or does not define the requested function"),
    ("logic", REASONING, "the code runs but computes the wrong result"),
    ("format", FORMAT, "no code block, or code written outside the required layout")))
INSTRUCT = Taxonomy("instruct", (
    ("missed_instruction", REASONING, "the content is right but a stated instruction (length, "
                                      "case, a phrase to end with, ...) is not followed"),
    ("wrong_content", REASONING, "the instructions are followed but the content (the fact "
                                 "asked for) is wrong"),
    ("format", FORMAT, "the response is empty, cut off or not a response to the task at all")))
GENERIC = Taxonomy("generic", (
    ("reasoning", REASONING, "the answer is readable but its substance is wrong"),
    _MISREAD, _FMT))

_BY_TASK = {"gsm8k": MATH, "toy-math": MATH, "multihop": MULTIHOP, "toy-multihop": MULTIHOP,
            "toy-knowledge": MULTIHOP, "humaneval": CODE, "toy-code": CODE, "ifeval": INSTRUCT,
            "toy-instruct": INSTRUCT}


def taxonomy(task: str) -> Taxonomy:
    """The taxonomy for a task name (the generic one for tasks not listed above)."""
    return _BY_TASK.get(task, GENERIC)


__all__ = ["CODE", "COARSE", "FORMAT", "GENERIC", "INSTRUCT", "MATH", "MULTIHOP", "REASONING",
           "Taxonomy", "taxonomy"]
