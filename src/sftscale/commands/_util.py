"""Helpers shared by command modules."""

from __future__ import annotations

import sys
from typing import NoReturn

from ..io import InputError


def fail(err: Exception | str, code: int = 2) -> NoReturn:
    """Print one error line to stderr and exit with ``code`` (2 for bad input)."""
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(code)


def parse_task_options(pairs: list[str] | None) -> dict:
    """``--task-option KEY=VALUE`` pairs -> dict; values are JSON when they parse (numbers,
    true/false, null, quoted strings), else plain strings."""
    import json

    out: dict = {}
    for p in pairs or []:
        key, sep, raw = p.partition("=")
        if not sep or not key:
            raise InputError(None, f"expects KEY=VALUE, got {p!r}", field="--task-option")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


__all__ = ["InputError", "fail", "parse_task_options"]
