"""The recipe-search spec a cell carries, and its summaries: pure data, no running.

``cell_search(cfg)``: the ``Cell.search`` dict (grid with values typed as the Recipe holds
them, validation split, keep_checkpoints); ``search_spec``: its part in the cell's spec hash;
``candidates``: the grid's combinations in the order written; ``cand_id``: a candidate's
directory name; ``check_search``: a grid value the Recipe refuses; ``store_summary`` and
``describe_choice``: the store's ``search`` column and its one-line form (status, report);
``grid_edges``: the searched fields whose chosen value is the lowest or highest of the grid (the
search did not bracket its optimum: extend the grid that way). Running the search is search.py's.

Not handled: grids over fields that are not Recipe fields (``check_search`` refuses them).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from ..config import StudyConfig
from ..io import sha256_json

# --- the spec a cell carries ---------------------------------------------------------------

def cell_search(cfg: StudyConfig) -> dict[str, Any]:
    """The ``Cell.search`` dict of a study's N > 0 cells ({} without ``recipe_search``)."""
    rs = cfg.recipe_search
    if rs is None:
        return {}
    grid = {k: [_typed(k, v) for v in vals] for k, vals in rs.grid().items()}
    return {"grid": grid, "validation": {"n": rs.validation.n, "seed": rs.validation.seed},
            "keep_checkpoints": rs.keep_checkpoints}


def _typed(field: str, value: Any) -> Any:
    """``value`` as the Recipe field holds it (YAML reads ``1e-3`` as a string); unchanged
    when it is not valid there (``check_search`` reports it)."""
    from pydantic import ValidationError

    from ..train.recipe import Recipe

    if field not in Recipe.model_fields:
        return value
    try:
        return Recipe.model_validate({field: value}).model_dump(mode="json")[field]
    except ValidationError:
        return value


def search_spec(search: dict[str, Any]) -> dict[str, Any]:
    """What of the search determines a cell's outputs (for its spec hash)."""
    return {"grid": search["grid"], "validation": search["validation"]}


def candidates(search: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in the order written."""
    grid = search["grid"]
    keys = list(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]


def cand_id(values: dict[str, Any]) -> str:
    """The candidate's directory name: readable for one short field, else a hash."""
    text = ",".join(f"{k}={v}" for k, v in values.items())
    safe = all(c.isalnum() or c in "=.,-+_" for c in text)
    return text if safe and len(text) <= 60 else "c" + sha256_json(values)[:12]


def check_search(cfg: StudyConfig, model_ref: str, base_overrides: dict) -> str | None:
    """Why the grid is invalid on top of ``base_overrides`` for this model (None: valid)."""
    from ..io import InputError
    from ..train.recipe import recipe_with

    for values in candidates(cell_search(cfg)):
        try:
            recipe_with(model_ref, {**base_overrides, **values}, where="recipe_search")
        except InputError as e:
            return f"{e.field or 'recipe_search'}: {e.reason}"
    return None


def grid_edges(grid: dict[str, Any], chosen: dict[str, Any]) -> dict[str, str]:
    """``{field: "low" | "high"}`` for each numeric field of three or more grid values whose
    chosen value is the grid's smallest or largest: the best value may lie beyond the grid.
    (With two values the choice is always an edge, so they are not flagged.)"""
    out: dict[str, str] = {}
    for k, vals in (grid or {}).items():
        nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
        v = (chosen or {}).get(k)
        if len(set(nums)) < 3 or len(nums) != len(vals) or v not in nums:
            continue
        if v == min(nums):
            out[k] = "low"
        elif v == max(nums):
            out[k] = "high"
    return out


def store_summary(meta: dict[str, Any]) -> str | None:
    """The store's ``search`` column (JSON) from a train_meta: chosen values, metric, the
    fields chosen at an edge of the grid (``grid_edges``), and each candidate's values,
    validation score and loss; None without a search."""
    s = meta.get("recipe_search")
    if not isinstance(s, dict):
        return None
    m = s.get("metric")
    return json.dumps({"chosen": s.get("chosen"), "metric": m,
                       "edges": grid_edges(s.get("grid") or {}, s.get("chosen") or {}),
                       "validation_n": (s.get("validation") or {}).get("n"),
                       "candidates": [{"values": c.get("values"),
                                       "score": (c.get("metrics") or {}).get(m),
                                       "val_loss": c.get("val_loss")}
                                      for c in s.get("candidates", [])]}, sort_keys=True)


def describe_choice(search_json: str | None) -> str:
    """``lr=0.001 (val 0.62 of 0.41/0.62/0.55)`` for status and the report, with ``; lowest
    lr in the grid`` when the choice is at an edge (``grid_edges``); '' without."""
    if not search_json:
        return ""
    s = json.loads(search_json)
    chosen = ",".join(f"{k}={v}" for k, v in (s.get("chosen") or {}).items())
    scores = [c.get("score") for c in s.get("candidates", [])]
    best = next((c.get("score") for c in s.get("candidates", [])
                 if c.get("values") == s.get("chosen")), None)
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    edges = "".join(f"; {'lowest' if e == 'low' else 'highest'} {k} in the grid"
                    for k, e in (s.get("edges") or {}).items())
    return f"{chosen} (val {fmt(best)} of {'/'.join(fmt(v) for v in scores)}{edges})"


__all__ = ["cand_id", "candidates", "cell_search", "check_search", "describe_choice",
           "grid_edges", "search_spec", "store_summary"]
