"""The run directory: its file names, its store, and what a finished cell left in it.

``layout.py`` (every path name in a run directory), ``store.py`` (``DIR/study.sqlite``),
``stagespec.py`` (``StageSpec``: what a per-cell stage writes, when it is done, what is
hashed), ``outputs.py`` (a finished cell's files → the store's row), ``integrity.py`` (content
checks of reused cells), ``repair.py`` (rebuilding a damaged or lost store), ``lock.py`` (one
writer per run directory) and ``export.py`` (``load_tables``, ``export.csv``, ``items.jsonl``).
The stages downstream of the runner (``fit/``, ``report/``) read run directories through this
package, never through ``study/``.

Public API (imports are lazy so that ``import sftscale.rundir`` stays cheap)::

    from sftscale.rundir import Store, RunLock, load_tables
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "Store": "store", "StoreDamaged": "store",
    "RunLock": "lock", "RunDirBusy": "lock",
    "load_tables": "export", "export": "export",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(name)


__all__ = list(_LAZY)
