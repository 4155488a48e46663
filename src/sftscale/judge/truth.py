"""What the toy world knows about why a response is wrong: the truth a judge is checked against.

``truth(task, record, reference)`` -> ``(coarse, fine)`` for a wrong response of a toy task,
``(None, None)`` for other tasks (no truth is known). ``coarse`` is the rule-based flag
(``format_ok`` false -> ``format``, else ``reasoning``) for every toy task; ``fine`` is:

- toy-math: the first step (in chain order) that departs from the reference solution's
  equations: an equation whose arithmetic is wrong -> ``calculation``; another operator, a
  missing or an extra step -> ``plan``; another operand -> ``misread`` (a number copied wrong).
  The task's score record does not say which step failed, so this reads the equations
  (``a + b = c``) in the response and in the reference completion. None when every equation
  matches (the final line alone is wrong).
- toy-multihop: ``bridge_ok`` false -> ``first_hop``, true -> ``second_hop`` (the task
  records the first hop's entity). toy-knowledge has no ``bridge_ok``: fine is None.
- toy-code: a block that does not parse or define ``solve`` -> ``syntax``, no code block ->
  ``format``, tests failing -> ``logic``.
- toy-instruct: ``fact_ok`` false -> ``wrong_content``, else ``missed_instruction``.

Not handled: truth for real benchmarks (only the hand-checked set in tests/data has labels),
several wrong steps (the first one decides).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from .taxonomy import FORMAT, REASONING

_EQ = re.compile(r"(-?\d+)\s*([+\-*/x×])\s*(-?\d+)\s*=\s*(-?\d+)")
TOY_TASKS = ("toy-math", "toy-multihop", "toy-knowledge", "toy-code", "toy-instruct")


def equations(text: str) -> list[tuple[int, str, int, int]]:
    return [(int(a), op, int(b), int(c)) for a, op, b, c in _EQ.findall(text or "")]


def _value(a: int, op: str, b: int) -> int | None:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op in "*x×":
        return a * b
    return a // b if b and a % b == 0 else None


def math_step(response: str, reference: str) -> str | None:
    got, ref = equations(response), equations(reference)
    for i, (a, op, b, c) in enumerate(got):
        if _value(a, op, b) != c:
            return "calculation"
        if i >= len(ref) or op != ref[i][1]:
            return "plan"
        if a != ref[i][0] or b != ref[i][2]:
            return "misread"
    return "plan" if len(got) != len(ref) else None


def truth(task: str, rec: Mapping[str, Any], reference: str = "") -> tuple[str | None, str | None]:
    """(coarse, fine) truth of a wrong response (module docstring); (None, None) if unknown."""
    if task not in TOY_TASKS or rec.get("format_ok") is None:
        return None, None
    if task == "toy-code":
        info = str(rec.get("info") or "")
        if "syntax" in info or "not defined" in info:
            return FORMAT, "syntax"
        return (FORMAT, "format") if not rec.get("format_ok") else (REASONING, "logic")
    if not rec.get("format_ok"):
        return FORMAT, "format"
    if task == "toy-math":
        return REASONING, math_step(str(rec.get("response") or ""), reference)
    if task == "toy-multihop" and rec.get("bridge_ok") is not None:
        return REASONING, "first_hop" if not rec["bridge_ok"] else "second_hop"
    if task == "toy-instruct":
        return REASONING, "wrong_content" if not rec.get("fact_ok") else "missed_instruction"
    return REASONING, None


__all__ = ["TOY_TASKS", "equations", "math_step", "truth"]
