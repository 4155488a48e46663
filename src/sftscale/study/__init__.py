"""The study runner: config → cells → train/evaluate → store → tables.

Public API (imports are lazy so that ``import sftscale.study`` stays cheap)::

    from sftscale.config import load_study, StudyConfig
    from sftscale.study import expand_cells, Store, run_study, load_tables

Not handled here: fitting and reporting (``fit.py``, ``report/``), which read the tables.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "Cell": "cells", "expand_cells": "cells",
    "Store": "store",
    "CellRunner": "runner", "StageContext": "runner", "run_study": "runner",
    "StudyResult": "runner",
    "LocalExecutor": "executors", "RayExecutor": "executors",
    "load_tables": "export",
    "plan_study": "plan", "check_study": "plan",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(name)


__all__ = list(_LAZY)
