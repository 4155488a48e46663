"""``CheckProblems``: every problem of a study's check in one InputError (``plan.check_study``
collects them; the CLI prints the list and exits 2).

Not handled: problems found only while running (a cell's own failure is recorded per cell).
"""

from __future__ import annotations

from ..config import StudyConfig
from ..io import InputError


class CheckProblems(InputError):
    """Every problem of a study at once; ``.problems`` holds each one's InputError."""

    def __init__(self, cfg: StudyConfig, problems: list[InputError]):
        self.problems = problems
        lines = "\n".join(f"  - {_where(e)}: {e.reason}" for e in problems)
        one = problems[0] if len(problems) == 1 else None
        super().__init__(cfg.path, f"{len(problems)} problem(s) (`sftscale plan --no-check` "
                         f"estimates without them):\n{lines}", line=one.line if one else None,
                         field=one.field if one else None)


def _where(e: InputError) -> str:
    s = f"line {e.line}" if e.line is not None else str(e.path or "")
    return s + (f", {e.field}" if e.field else "")


__all__ = ["CheckProblems"]
