"""What to run: a study config expanded into cells, and a recipe search's grid.

``cells.py`` (``Cell``, ``expand_cells``: model × task × N × seed, nested seeded subsets) and
``searchspec.py`` (the candidates of a ``recipe_search``, ``grid_edges``). Pure functions of
the config: nothing here reads or writes a run directory (``rundir/``), plans (``plan/``) or
runs (``study/``).

Public API (imports are lazy so that ``import sftscale.grid`` stays cheap)::

    from sftscale.grid import Cell, expand_cells
"""

from __future__ import annotations

from typing import Any

_LAZY = {"Cell": "cells", "expand_cells": "cells"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(name)


__all__ = list(_LAZY)
