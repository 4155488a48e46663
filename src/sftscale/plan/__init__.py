"""Before and around a run: is the study runnable, what will it cost, how long is left.

``check.py`` (``check_study``, ``plan_study``, ``format_plan``) with ``estimate.py`` (the
``Plan`` they return), ``memory.py`` (per-rank memory), ``calibrate.py`` (costs measured on
this machine), ``gpucal.py`` (GPU constants, ``gpu_calibration.json``), ``offline.py``
(``--no-check`` plans), ``problems.py`` (every problem at once), ``runplan.py`` (the plan saved
in a run directory, recalibration after a run) and ``eta.py`` (cost-weighted ETA).

Public API (imports are lazy so that ``import sftscale.plan`` stays cheap)::

    from sftscale.plan import check_study, plan_study
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "check_study": "check", "plan_study": "check", "format_plan": "check",
    "plan_offline": "offline", "CheckProblems": "problems",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(name)


__all__ = list(_LAZY)
