"""Running a study: cells through their stages, in executors, recorded in the run directory.

``runner.py`` (``run_study``, ``CellRunner``), ``executors.py`` (local worker processes, Ray),
``signals.py`` (SIGTERM as Ctrl-C), ``progress.py`` (the live display), ``status.py``
(``sftscale status``), ``search.py`` (recipe search), ``tracking.py`` (MLflow, W&B).
What to run is ``grid/``, the run directory ``rundir/``, planning ``plan/``.

Public API (imports are lazy so that ``import sftscale.study`` stays cheap)::

    from sftscale.config import load_study, StudyConfig
    from sftscale.study import run_study, CellRunner
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "CellRunner": "runner", "StageContext": "runner", "run_study": "runner",
    "StudyResult": "runner",
    "LocalExecutor": "executors", "RayExecutor": "executors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(name)


__all__ = list(_LAZY)
