"""Helpers shared by command modules."""

from __future__ import annotations

import sys
from typing import NoReturn

from ..io import InputError


def fail(err: Exception | str, code: int = 2) -> NoReturn:
    """Print one error line to stderr and exit with ``code`` (2 for bad input)."""
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(code)


__all__ = ["InputError", "fail"]
