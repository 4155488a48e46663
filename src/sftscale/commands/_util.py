"""Helpers shared by command modules.

Errors are not printed here: commands raise (``InputError`` for bad input) and ``cli.main``
reports every exception once. ``as_flag`` renames a library's field (``seed``) to the
command's flag (``--seed``). ``fail`` remains for commands that print and exit themselves.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from ..io import InputError


def fail(err: Exception | str, code: int = 2) -> NoReturn:
    """Print one error line to stderr and exit with ``code`` (2 for bad input)."""
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(code)


#: field names the library stages use -> the flags of the commands that pass them
FLAGS = {"task": "--task", "task options": "--task-option", "n": "--n", "seed": "--seed",
         "device": "--device", "out": "--out", "model": "--model", "adapter": "--adapter",
         "limit": "--limit", "chat": "--chat", "batch-size": "--batch-size"}


def as_flag(e: InputError) -> InputError:
    """``e`` with its field renamed to the command-line flag (``seed`` -> ``--seed``) when it
    is about an argument; an error about a file keeps its file and line."""
    if e.field in FLAGS and (e.path is None or e.field in ("out", "adapter", "model")):
        return InputError(e.path, e.reason, line=e.line, field=FLAGS[e.field])
    return e


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


__all__ = ["FLAGS", "InputError", "as_flag", "fail", "parse_task_options"]
